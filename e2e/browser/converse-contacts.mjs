// A user logs in to Converse.js in headless Chromium; the backend's roster
// changes and roster-sidecar is asked to refresh through its admin API; the
// contact list in the open page must show the change without a reload.
// Then FRIEND, online in another client, becomes a friend, in ROUNDS: after
// the refreshes that make them friends the page must show FRIEND online
// (Converse's presence indicator) or as each round expects, then away when
// FRIEND changes status (last round), and after an unfriend refresh no
// longer show FRIEND; still without a reload.
//
// Run by e2e/browser_test.go (go test -tags 'e2e browser' -run Browser ./e2e/),
// which starts the XMPP server with WebSocket, the backend, roster-sidecar,
// FRIEND's client and the page, and passes everything in the environment:
//
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
//   PAGE_URL        the Converse.js page
//   XMPP_JID        XMPP_PASSWORD      the user who logs in
//   ADMIN_URL       ADMIN_TOKEN        roster-sidecar's admin API
//   BEFORE          AFTER              JSON lists of {jid, name, groups}: the
//                                      contact list before and after the refresh
//   FRIEND          {jid, name, groups}: the user who becomes a friend
//   ROUNDS          JSON list of {name, refresh, expect}: each round makes
//                   the user and FRIEND friends with the refreshes listed
//                   (refresh: a list of lists of usernames, one request each,
//                   in turn) and expects the page to show FRIEND "online"
//                   (at once), "offline" (listed, still offline QUIET_MS
//                   later) or "any" (logged); then one refresh of both
//                   unfriends them
//   STEP_URL        POST STEP_URL/NAME asks the test for a step of the
//                   presence scenario: "friends?round=R" (the backend makes
//                   the user and FRIEND friends), "away" (FRIEND changes
//                   status; last round), "unfriend?round=R" (the backend
//                   unfriends them)
//   SCREENSHOT_DIR  where converse-before.png, converse-contacts.png,
//                   converse-presence-ROUND.png, converse-presence-away.png
//                   and converse-presence-unfriended.png go
//   TIMEOUT_MS      how long each wait may take (default 20000)
//   QUIET_MS        how long "offline" and "any" rounds watch (default 2000)
//   BROWSER_DEBUG   not empty: print every console message, not only errors
//                   and warnings (with PAGE_URL's loglevel=debug: every stanza)
//
// Exit status 0 when the page showed each step; 1 with the reason otherwise.
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
const friend = JSON.parse(env('FRIEND'));
const stepURL = env('STEP_URL');
const rounds = JSON.parse(env('ROUNDS'));
const quietMs = Number(env('QUIET_MS', '2000'));
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
 * The contact list as rendered: [{group, jid, name, subscribed, status,
 * indicator}]. Converse.js shows a presence icon on the avatar only for
 * subscription "both" or "to": subscribed says whether it is there, and
 * indicator is its colour (e.g. "var(--chat-status-online)", a green dot).
 * status is the contact's status as the list item states it (its
 * data-status: "online", "away", "dnd", "xa" or "offline").
 */
const readRoster = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('.roster-group')].flatMap((g) =>
      [...g.querySelectorAll('a.open-chat[data-jid]')].map((a) => {
        const icon = a.querySelector('.chat-status--avatar');
        return {
          group: g.getAttribute('data-group'),
          jid: a.getAttribute('data-jid'),
          name: (a.querySelector('.contact-name')?.textContent ?? '').replace(/\s+/g, ' ').trim(),
          subscribed: icon !== null,
          status: a.closest('li')?.getAttribute('data-status') ?? '',
          indicator: icon?.getAttribute('color') ?? '',
        };
      }),
    ),
  );

/** The colour of Converse.js's presence icon for a status. */
const indicatorFor = (status) =>
  ({ online: 'var(--chat-status-online)', away: 'var(--chat-status-away)', dnd: 'var(--chat-status-busy)' })[status] ??
  'var(--chat-status-offline)';

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
      if (c.status && r.status !== c.status) problems.push(`${c.jid} is shown ${r.status || 'without a status'}, want ${c.status}`);
      if (c.status && r.subscribed && r.indicator !== indicatorFor(c.status)) {
        problems.push(`${c.jid}'s presence icon is ${r.indicator || 'uncoloured'}, want ${indicatorFor(c.status)}`);
      }
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
  rendered.length ? rendered.map((r) => `[${r.group}] ${r.name} <${r.jid}> ${r.status}`).join(', ') : '(empty)';

/**
 * Polls the page until it shows want, or fails after timeout; returns how
 * long it took, in ms, from since (default: now).
 */
const waitForRoster = async (page, want, what, since = Date.now()) => {
  const deadline = Date.now() + timeout;
  let rendered = [];
  let why = '';
  while (Date.now() < deadline) {
    rendered = await readRoster(page);
    why = mismatch(rendered, want);
    if (!why) {
      const took = Date.now() - since;
      log(`${what} (${took} ms): ${format(rendered)}`);
      return took;
    }
    await page.waitForTimeout(50);
  }
  throw new Error(`${what}: not shown within ${timeout} ms: ${why}\n  rendered: ${format(rendered)}`);
};

/** POST /roster_admin/refresh for users; fails unless every one is ok. */
const refresh = async (users) => {
  const res = await fetch(`${adminURL}/roster_admin/refresh`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(adminToken ? { Authorization: `Bearer ${adminToken}` } : {}),
    },
    body: JSON.stringify(users),
  });
  const body = await res.text();
  log(`POST /roster_admin/refresh ${JSON.stringify(users)} -> ${res.status} ${body}`);
  if (res.status !== 200 || JSON.parse(body).status !== 'ok') throw new Error('the refresh failed');
};

/** Asks the test for a step of the presence scenario. */
const step = async (name) => {
  const res = await fetch(`${stepURL}/${name}`, { method: 'POST' });
  const body = (await res.text()).trim();
  log(`step ${name}: ${res.status} ${body}`);
  if (res.status !== 200) throw new Error(`step ${name} failed: ${res.status} ${body}`);
};

const screenshot = async (page, name) => {
  const shot = path.join(screenshotDir, name);
  await page.screenshot({ path: shot });
  log(`screenshot ${shot}`);
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

  const notReloaded = async () => {
    const marker = await page.evaluate(() => window.rosterSidecarMarker);
    if (marker !== 'no reload' || loads() !== loadsBefore) {
      throw new Error(`the page was reloaded (marker ${marker}, loads ${loadsBefore} -> ${loads()})`);
    }
  };

  const user = jid.split('@')[0];
  await refresh([user]);
  await waitForRoster(page, after, 'contact list after the refresh');
  await notReloaded();
  await screenshot(page, 'converse-contacts.png');

  // Presence: FRIEND is online in another client, not a contact yet. Each
  // round makes them friends through the refreshes it lists, checks how the
  // page shows FRIEND, and unfriends them with one refresh of both; the last
  // round also has FRIEND change status first.
  const friendUser = friend.jid.split('@')[0];
  const withFriend = (status) => [...after, { ...friend, ...(status ? { status } : {}) }];
  const summary = [];
  for (const [i, round] of rounds.entries()) {
    const last = i === rounds.length - 1;
    const what = `round ${round.name} (${round.refresh.map((r) => JSON.stringify(r)).join(' then ')})`;
    await step(`friends?round=${round.name}`);
    const since = Date.now();
    for (const users of round.refresh) await refresh(users);
    let shown;
    if (round.expect === 'online') {
      const took = await waitForRoster(page, withFriend('online'), `${what}: ${friend.jid} online`, since);
      shown = `online ${took} ms after the first refresh was asked`;
    } else {
      // Listed first (the roster push), then watched for quietMs.
      const took = await waitForRoster(page, withFriend(), `${what}: ${friend.jid} listed`, since);
      const until = Date.now() + quietMs;
      let status = '';
      while (Date.now() < until) {
        status = (await readRoster(page)).find((r) => r.jid === friend.jid)?.status ?? '';
        if (status === 'online') break;
        await page.waitForTimeout(50);
      }
      if (round.expect === 'offline' && status !== 'offline') {
        throw new Error(`${what}: ${friend.jid} is shown ${status}; measured before: offline (update docs/compatibility.md)`);
      }
      shown = status === 'online' ? `online within ${Date.now() - since} ms` : `${status} (listed after ${took} ms, still ${status} ${quietMs} ms later)`;
      log(`${what}: ${friend.jid} shown ${shown}`);
    }
    summary.push(`${round.name}: ${shown}`);
    await notReloaded();
    await screenshot(page, `converse-presence-${round.name}.png`);

    if (last) {
      const t0 = Date.now();
      await step('away');
      await waitForRoster(page, withFriend('away'), `${friend.jid}'s status change`, t0);
      await screenshot(page, 'converse-presence-away.png');
    }

    await step(`unfriend?round=${round.name}`);
    const t1 = Date.now();
    await refresh([user, friendUser]);
    const gone = await waitForRoster(page, after, `${what}: ${friend.jid} gone after one unfriend refresh of both`, t1);
    await notReloaded();
    if (last) await screenshot(page, 'converse-presence-unfriended.png');
    summary.push(`${round.name}: gone ${gone} ms after the unfriend refresh was asked`);
  }
  log(`presence of ${friend.jid} on the page: ${summary.join('; ')}`);
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
      if (msg.type() === 'error' || msg.type() === 'warning' || process.env.BROWSER_DEBUG) log(`console ${msg.type()}:`, text);
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
    log('ok: the new contacts, then the friend online, away and gone, without a reload');
  } finally {
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
};

main().catch((err) => {
  console.error('browser: FAIL:', err.message);
  process.exitCode = 1;
});
