// A user logs in to Converse.js in headless Chromium; the backend's roster
// changes and roster-sidecar is asked to refresh through its admin API; the
// contact list in the open page must show the change without a reload.
//
// Run by e2e/browser_test.go (go test -tags 'e2e browser' -run Browser ./e2e/),
// which starts Prosody with WebSocket, the backend, roster-sidecar and the
// page, and passes everything in the environment:
//
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
//   PAGE_URL        the Converse.js page
//   XMPP_JID        XMPP_PASSWORD      the user who logs in
//   ADMIN_URL       ADMIN_TOKEN        roster-sidecar's admin API
//   BEFORE          AFTER              JSON lists of {jid, name, groups}: the
//                                      contact list before and after the refresh
//   SCREENSHOT_DIR  where converse-before.png and converse-contacts.png go
//   TIMEOUT_MS      how long each wait may take (default 20000)
//
// Exit status 0 when the page shows AFTER; 1 with the reason otherwise.
import { chromium } from 'playwright-core';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const env = (name, def) => {
  const v = process.env[name] ?? def;
  if (v === undefined || v === '') throw new Error(`environment variable ${name} is required`);
  return v;
};

const executablePath = env('CHROMIUM', '/usr/bin/chromium');
const pageURL = env('PAGE_URL');
const jid = env('XMPP_JID');
const password = env('XMPP_PASSWORD');
const adminURL = env('ADMIN_URL');
const adminToken = process.env.ADMIN_TOKEN ?? '';
const before = JSON.parse(env('BEFORE'));
const after = JSON.parse(env('AFTER'));
const screenshotDir = env('SCREENSHOT_DIR');
const timeout = Number(env('TIMEOUT_MS', '20000'));

// Flags for a quiet, local-only headless Chromium (as root in CI: no sandbox).
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage', // containers often have a small /dev/shm
  // Belt and braces besides the request routing below: no DNS prefetching,
  // and no name resolves except loopback's.
  '--dns-prefetch-disable',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1',
];

const log = (...a) => console.log('browser:', ...a);

const isLoopback = (url) => {
  const { protocol, hostname } = new URL(url);
  if (protocol === 'data:' || protocol === 'blob:' || protocol === 'about:') return true;
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
};

/**
 * The contact list as rendered: [{group, jid, name, subscribed}]. Converse.js
 * shows a presence icon only for subscription "both" or "to".
 */
const readRoster = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('.roster-group')].flatMap((g) =>
      [...g.querySelectorAll('a.open-chat[data-jid]')].map((a) => ({
        group: g.getAttribute('data-group'),
        jid: a.getAttribute('data-jid'),
        name: (a.querySelector('.contact-name')?.textContent ?? '').replace(/\s+/g, ' ').trim(),
        subscribed: a.querySelector('.chat-status--avatar') !== null,
      })),
    ),
  );

/** Why the rendered roster does not show want (empty string: it does). */
const mismatch = (rendered, want) => {
  const problems = [];
  for (const c of want) {
    const groups = c.groups?.length ? c.groups : null;
    const rows = rendered.filter((r) => r.jid === c.jid);
    if (rows.length === 0) {
      problems.push(`${c.jid} is not shown`);
      continue;
    }
    for (const r of rows) {
      if (r.name !== c.name) problems.push(`${c.jid} shows the name "${r.name}", want "${c.name}"`);
      if (!r.subscribed) problems.push(`${c.jid} has no presence subscription`);
    }
    if (groups) {
      const shown = [...new Set(rows.map((r) => r.group))].sort();
      if (JSON.stringify(shown) !== JSON.stringify([...groups].sort())) {
        problems.push(`${c.jid} is in groups ${JSON.stringify(shown)}, want ${JSON.stringify(groups)}`);
      }
    }
  }
  const wanted = new Set(want.map((c) => c.jid));
  for (const r of rendered) {
    if (!wanted.has(r.jid)) problems.push(`${r.jid} ("${r.name}", group ${r.group}) should not be shown`);
  }
  return problems.join('; ');
};

const format = (rendered) =>
  rendered.length ? rendered.map((r) => `[${r.group}] ${r.name} <${r.jid}>`).join(', ') : '(empty)';

/** Polls the page until it shows want, or fails after timeout. */
const waitForRoster = async (page, want, what) => {
  const deadline = Date.now() + timeout;
  let rendered = [];
  let why = '';
  while (Date.now() < deadline) {
    rendered = await readRoster(page);
    why = mismatch(rendered, want);
    if (!why) {
      log(`${what}: ${format(rendered)}`);
      return;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`${what}: not shown within ${timeout} ms: ${why}\n  rendered: ${format(rendered)}`);
};

/** The scenario, on a fresh page; loads() counts the page's load events. */
const run = async (page, loads) => {
  await page.goto(pageURL);
  await page.locator('#converse-login-jid').fill(jid);
  await page.locator('#converse-login-password').fill(password);
  await page.locator('form#converse-login button[type=submit]').click();
  log(`logged in as ${jid}`);

  await waitForRoster(page, before, 'contact list after login');
  await page.screenshot({ path: path.join(screenshotDir, 'converse-before.png') });
  // Survives only if the page is not reloaded.
  await page.evaluate(() => {
    window.rosterSidecarMarker = 'no reload';
  });
  const loadsBefore = loads();

  const user = jid.split('@')[0];
  const res = await fetch(`${adminURL}/roster_admin/refresh`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(adminToken ? { Authorization: `Bearer ${adminToken}` } : {}),
    },
    body: JSON.stringify([user]),
  });
  const body = await res.text();
  log(`POST /roster_admin/refresh ["${user}"] -> ${res.status} ${body}`);
  if (res.status !== 200 || JSON.parse(body).status !== 'ok') throw new Error('the refresh failed');

  await waitForRoster(page, after, 'contact list after the refresh');
  const marker = await page.evaluate(() => window.rosterSidecarMarker);
  if (marker !== 'no reload' || loads() !== loadsBefore) {
    throw new Error(`the page was reloaded (marker ${marker}, loads ${loadsBefore} -> ${loads()})`);
  }
  const shot = path.join(screenshotDir, 'converse-contacts.png');
  await page.screenshot({ path: shot });
  log(`screenshot ${shot}`);
};

const main = async () => {
  await mkdir(screenshotDir, { recursive: true });
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'roster-sidecar-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: FLAGS,
    viewport: { width: 1200, height: 760 },
    timeout,
  });
  const blocked = [];
  try {
    // Only this machine's loopback: anything else is refused and reported.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (isLoopback(url)) return route.continue();
      blocked.push(url);
      log(`refused a request to ${url}`);
      return route.abort('blockedbyclient');
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(timeout);
    page.on('pageerror', (err) => log('page error:', err.message));
    page.on('console', (msg) => {
      const text = msg.text();
      if (text.includes('ERR_BLOCKED_BY_CLIENT')) return; // reported by the route above
      if (msg.type() === 'error' || msg.type() === 'warning') log(`console ${msg.type()}:`, text);
    });
    let loads = 0;
    page.on('load', () => loads++);

    log(`chromium ${context.browser()?.version() ?? ''} (${executablePath})`);
    try {
      await run(page, () => loads);
    } catch (err) {
      const shot = path.join(screenshotDir, 'converse-failure.png');
      await page.screenshot({ path: shot }).catch(() => {});
      log(`screenshot of the failure: ${shot}`);
      throw err;
    }
    if (blocked.length) log(`refused ${blocked.length} non-loopback requests`);
    log('ok: the new contacts appeared without a reload');
  } finally {
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
};

main().catch((err) => {
  console.error('browser: FAIL:', err.message);
  process.exitCode = 1;
});
