package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
)

// cli runs commands in-process against a fake XMPP server and a backend
// whose rosters the test sets.
type cli struct {
	xmpp    *componenttest.Server
	backend *httptest.Server
	fetches atomic.Int64
	// adminListen is --admin.listen: where the commands look for a running
	// serve (by default a free port, where none runs).
	adminListen string

	mu      sync.Mutex
	rosters map[string]any // username -> answer; missing: {}
	status  map[string]int // username -> status code to answer instead
	delay   time.Duration
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	c := &cli{xmpp: componenttest.NewServer(t), rosters: map[string]any{}, status: map[string]int{}, adminListen: componenttest.FreeAddr(t)}
	c.backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fetches.Add(1)
		user := strings.TrimPrefix(r.URL.Path, "/roster/")
		c.mu.Lock()
		roster, code, delay := c.rosters[user], c.status[user], c.delay
		c.mu.Unlock()
		time.Sleep(delay)
		if code != 0 {
			http.Error(w, "nope", code)
			return
		}
		if roster == nil {
			roster = map[string]any{}
		}
		_ = json.NewEncoder(w).Encode(roster)
	}))
	t.Cleanup(c.backend.Close)
	t.Setenv("ROSTER_SIDECAR_XMPP_SECRET", componenttest.Secret)
	t.Setenv("ROSTER_SIDECAR_XMPP_PRIVILEGE_WAIT", "200ms")
	return c
}

func (c *cli) setRoster(user string, roster any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rosters[user] = roster
}

func (c *cli) setStatus(user string, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[user] = code
}

// run runs the command args[0] with the flags that point it at the fake
// servers, then the rest of args (whose flags win), and returns the exit
// status and output.
func (c *cli) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	full := []string{args[0], "--xmpp.address", c.xmpp.Addr(), "--xmpp.domain", componenttest.Domain,
		"--xmpp.user_domain", componenttest.UserDomain, "--http_roster_url", c.backend.URL + "/roster/%s",
		"--xmpp.connect_timeout", "1s", "--wait", "3s", "--admin.listen", c.adminListen}
	full = append(full, args[1:]...)
	var out, errOut bytes.Buffer
	code = run(context.Background(), full, &out, &errOut)
	t.Logf("roster-sidecar %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args[:min(len(args), 4)], " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// roster is a backend answer of contacts by JID: name and groups.
func backendRoster(kv ...string) map[string]any {
	r := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		r[kv[i]] = map[string]any{"name": kv[i+1], "groups": []string{"G"}}
	}
	return r
}

// expect checks the exit status and that out holds every want.
func expect(t *testing.T, code, wantCode int, out string, wants ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit %d, want %d", code, wantCode)
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestSyncUsersFromArgumentsAndFile(t *testing.T) {
	c := newCLI(t)
	for _, u := range []string{"john", "aaron", "mary"} {
		c.setRoster(u, backendRoster("c1@example.test", "One", "c2@example.test", "Two"))
	}
	file := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(file, []byte("# first population\naaron\n\n  mary  \njohn\n# john again is synced once\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := c.run(t, "sync", "john", "--from-file", file)
	expect(t, code, 0, out, "syncing 3 users, 8 at once\n", "synced 3 of 3 users in ", ": 0 failed\n",
		"roster items: 6 added, 0 updated, 0 removed; 0 contacts skipped\n")
	want := []string{"c1@example.test|One|both|G", "c2@example.test|Two|both|G"}
	for _, u := range []string{"john", "aaron", "mary"} {
		if got := c.xmpp.Roster(u + "@example.test"); !slices.Equal(got, want) {
			t.Errorf("roster of %s = %v", u, got)
		}
	}
	if n := c.fetches.Load(); n != 3 {
		t.Errorf("%d backend fetches, want 3", n)
	}
}

// With the server helper, each user's changes are one request.
func TestSyncThroughHelper(t *testing.T) {
	c := newCLI(t)
	c.xmpp.SetHelper(true)
	for _, u := range []string{"john", "mary"} {
		c.setRoster(u, backendRoster("c1@example.test", "One", "c2@example.test", "Two"))
	}
	code, out, _ := c.run(t, "sync", "john", "mary")
	expect(t, code, 0, out, "synced 2 of 2 users in ", "roster items: 4 added, 0 updated, 0 removed; 0 contacts skipped\n")
	if n := c.xmpp.Counts(); n.Sets != 2 || n.Batches != 2 {
		t.Errorf("server saw %+v, want one batch request per user", n)
	}
	if got := c.xmpp.Roster("mary@example.test"); !slices.Equal(got, []string{"c1@example.test|One|both|G", "c2@example.test|Two|both|G"}) {
		t.Errorf("roster of mary = %v", got)
	}
}

func TestSyncReportsFailuresAndExitsNonZero(t *testing.T) {
	c := newCLI(t)
	c.setRoster("john", backendRoster("c1@example.test", "One", "not a jid", "Bad"))
	c.setStatus("bob", http.StatusInternalServerError)
	code, out, _ := c.run(t, "sync", "john", "bob")
	expect(t, code, 1, out,
		"failed: bob: fetch roster of bob@example.test: backend answered 500 Internal Server Error\n",
		`skipped: john: contact "not a jid": not a valid JID`,
		"synced 1 of 2 users in ", ": 1 failed\n",
		"roster items: 1 added, 0 updated, 0 removed; 1 contacts skipped\n",
	)
}

func TestSyncPrintsProgressLinesWhenNotATerminal(t *testing.T) {
	c := newCLI(t)
	c.delay = 40 * time.Millisecond
	code, out, _ := c.run(t, "sync", "u1", "u2", "u3", "u4", "u5", "--admin.concurrency", "1", "--progress-interval", "25ms")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	line := regexp.MustCompile(`^progress: (\d)/5 users, 0 errors, \d+\.\d users/s, ETA (\S+)$`)
	var seen []string
	for l := range strings.Lines(out) {
		if m := line.FindStringSubmatch(strings.TrimSuffix(l, "\n")); m != nil {
			seen = append(seen, m[1])
		} else if strings.HasPrefix(l, "progress") {
			t.Errorf("malformed progress line %q", l)
		}
	}
	if len(seen) < 2 {
		t.Fatalf("%d progress lines, want several", len(seen))
	}
	if !slices.IsSorted(seen) {
		t.Errorf("progress went backwards: %v", seen)
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b") {
		t.Error("terminal control characters in non-terminal output")
	}
}

func TestSyncRefusesInvalidUsernamesBeforeConnecting(t *testing.T) {
	c := newCLI(t)
	file := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(file, []byte("john\nbad user\n# ok\nx@other.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run(t, "sync", "--from-file", file)
	expect(t, code, 2, errOut, "2 invalid username(s), nothing done", "users.txt line 2: ", "users.txt line 4: ")
	if n := c.fetches.Load(); n != 0 || c.xmpp.Counts().Accepted != 0 {
		t.Errorf("%d fetches, %d connections before the usernames were valid", n, c.xmpp.Counts().Accepted)
	}
	if code, _, _ := c.run(t, "sync"); code != 2 {
		t.Errorf("sync without users: exit %d, want 2", code)
	}
}

func TestSyncExplainsUnusableServer(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		c := newCLI(t)
		t.Setenv("ROSTER_SIDECAR_XMPP_SECRET", "wrong")
		code, _, errOut := c.run(t, "sync", "john")
		if code != 1 || !strings.Contains(errOut, "refused the component secret") || !strings.Contains(errOut, "fix: xmpp.secret must equal") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("roster get only", func(t *testing.T) {
		c := newCLI(t)
		c.xmpp.SetPrivilege(`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/></privilege></message>`)
		code, _, errOut := c.run(t, "sync", "john")
		if code != 1 || !strings.Contains(errOut, "the server granted roster=get only") || !strings.Contains(errOut, `set roster = "both"`) {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
		if n := c.fetches.Load(); n != 0 {
			t.Errorf("%d fetches without the privilege", n)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		c := newCLI(t)
		addr := componenttest.FreeAddr(t)
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"sync", "john", "--xmpp.address", addr, "--xmpp.domain", componenttest.Domain,
			"--xmpp.user_domain", componenttest.UserDomain, "--http_roster_url", c.backend.URL + "/roster/%s", "--xmpp.connect_timeout", "1s",
			"--admin.listen", c.adminListen}, &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), "nothing accepts connections at "+addr+" (connection refused)") {
			t.Errorf("exit %d, stderr %q", code, errOut.String())
		}
	})
}

// TestDiffChangesNothing sets a roster that differs from the backend in
// every way and checks what diff prints, in each subscription mode, and
// that it never sends a SET.
func TestDiffChangesNothing(t *testing.T) {
	c := newCLI(t)
	c.setRoster("john", map[string]any{
		"new@example.test":     map[string]any{"name": "New", "groups": []string{"Friends"}},
		"renamed@example.test": map[string]any{"name": "Michael", "groups": []string{"Work"}},
		"subonly@example.test": map[string]any{"name": "Sub", "subscription": "both"},
		"same@example.test":    map[string]any{"name": "Same", "subscription": "none"},
		"not a jid":            map[string]any{},
	})
	c.setRoster("aaron", backendRoster("c1@example.test", "One"))
	c.xmpp.SetRoster("john@example.test", map[string]componenttest.Item{
		"renamed@example.test": {Name: "Mike", Subscription: "both"},
		"subonly@example.test": {Name: "Sub", Subscription: "none"},
		"same@example.test":    {Name: "Same", Subscription: "none"},
		"gone@example.test":    {Name: "Gone", Subscription: "both", Groups: []string{"Old"}},
	})
	c.xmpp.SetRoster("aaron@example.test", map[string]componenttest.Item{"c1@example.test": {Name: "One", Subscription: "both", Groups: []string{"G"}}})
	before := c.xmpp.Roster("john@example.test")

	code, out, _ := c.run(t, "diff", "john", "aaron")
	expect(t, code, 1, out,
		"john: 1 to add, 1 to change, 1 to remove, 1 differ only in subscription, 1 skipped\n",
		`  + new@example.test  name "New", groups [Friends], subscription both`+"\n",
		`  ~ renamed@example.test  name "Mike" -> "Michael"; groups [] -> [Work]`+"\n",
		"  ~? subonly@example.test  subscription none -> both (only where the server stores subscriptions",
		`  - gone@example.test  (was name "Gone", groups [Old], subscription both)`+"\n",
		`  ! "not a jid" skipped: not a valid JID`,
		"aaron: up to date\n",
		"2 users: 1 would change, 1 up to date, 0 could not be read\n",
	)
	if strings.Contains(out, "same@example.test") {
		t.Error("an equal item is listed")
	}

	_, out, _ = c.run(t, "diff", "john", "--xmpp.compare_subscription", "always")
	if !strings.Contains(out, "john: 1 to add, 2 to change, 1 to remove, 1 skipped\n") ||
		!strings.Contains(out, "  ~ subonly@example.test  subscription none -> both\n") {
		t.Error("compare_subscription always: the subscription-only item is not a change")
	}
	_, out, _ = c.run(t, "diff", "john", "--xmpp.compare_subscription", "never")
	if !strings.Contains(out, "john: 1 to add, 1 to change, 1 to remove, 1 skipped\n") || strings.Contains(out, "subonly") {
		t.Error("compare_subscription never: the subscription-only item is listed")
	}

	if n := c.xmpp.Counts().Sets; n != 0 {
		t.Fatalf("diff sent %d SETs", n)
	}
	if got := c.xmpp.Roster("john@example.test"); !slices.Equal(got, before) {
		t.Errorf("roster changed: %v, was %v", got, before)
	}
}

func TestDiffExitStatus(t *testing.T) {
	c := newCLI(t)
	if code, out, _ := c.run(t, "diff", "john"); code != 0 || !strings.Contains(out, "john: up to date\n") {
		t.Errorf("nothing to change: exit %d", code)
	}
	c.setStatus("bob", http.StatusBadGateway)
	code, out, _ := c.run(t, "diff", "john", "bob")
	if code != 2 || !strings.Contains(out, "bob: error: fetch roster of bob@example.test: backend answered 502 Bad Gateway\n") {
		t.Errorf("backend error: exit %d", code)
	}
	if code, _, _ := c.run(t, "diff", "bad user"); code != 2 {
		t.Errorf("invalid username: exit %d, want 2", code)
	}
}

func TestCheck(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		c := newCLI(t)
		c.setRoster("john", backendRoster("c1@example.test", "One", "not a jid", "Bad"))
		code, out, _ := c.run(t, "check", "--user", "john")
		expect(t, code, 0, out,
			"config:     ok (environment and flags)\n",
			"backend:    ok: roster of john: 1 contacts, 1 skipped, in ",
			`            skipped "not a jid": not a valid JID`,
			"xmpp:       ok: connected to "+c.xmpp.Addr()+" as roster.example.test\n",
			"privileges: example.test: roster=both message=outgoing presence=managed_entity\n",
			"ready:      ok: the component may read and write the rosters of example.test\n",
			"helper:     missing on example.test (optional; the Prosody module deploy/prosody/mod_roster_sidecar.lua, docs/deploy-prosody.md): "+
				"without it contacts see each other's presence only from their next status change or login, not at once, "+
				"and each roster item is a write of its own (slow for large rosters on Prosody)\n",
		)
		if n := c.xmpp.Counts(); n.Gets+n.Sets != 0 {
			t.Errorf("check sent roster IQs: %+v", n)
		}
	})
	t.Run("helper", func(t *testing.T) {
		c := newCLI(t)
		c.xmpp.SetHelper(true)
		code, out, _ := c.run(t, "check", "--user", "john")
		expect(t, code, 0, out,
			"helper:     ok: example.test answers urn:xmpp:roster-sidecar:0 (mod_roster_sidecar): contacts see each other's presence at once, and each user's roster changes are one request\n")
		c.xmpp.DropDisco(true) // as ejabberd does: no answer is no helper, and says ejabberd
		code, out, _ = c.run(t, "check", "--user", "john")
		expect(t, code, 0, out, "helper:     missing on example.test, and example.test did not answer disco#info, as ejabberd does\n",
			"presence:   on ejabberd in XEP-0356 mode contacts NEVER see each other's presence")
	})
	t.Run("roster get only", func(t *testing.T) {
		c := newCLI(t)
		c.xmpp.SetPrivilege(`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/><perm access='message' type='outgoing'/></privilege></message>`)
		code, out, _ := c.run(t, "check")
		expect(t, code, 1, out,
			"privileges: example.test: roster=get message=outgoing\n",
			"ready:      FAIL: the server granted roster=get only on example.test (need get and set)\n",
			`            fix: set roster = "both" for roster.example.test in privileged_entities of VirtualHost "example.test" (Prosody), or mod_privilege roster: both (ejabberd)`+"\n",
		)
	})
	t.Run("no privilege message", func(t *testing.T) {
		c := newCLI(t)
		c.xmpp.SetPrivilege("")
		code, out, _ := c.run(t, "check")
		if code != 1 || !strings.Contains(out, "privileges: none received\n") ||
			!strings.Contains(out, "ready:      FAIL: connected, but the server sent no privilege message for example.test: mod_privilege is not enabled for the component\n") {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("backend and secret", func(t *testing.T) {
		c := newCLI(t)
		c.setStatus(defaultProbeUser, http.StatusNotFound)
		t.Setenv("ROSTER_SIDECAR_XMPP_SECRET", "wrong")
		code, out, _ := c.run(t, "check")
		expect(t, code, 1, out,
			"backend:    FAIL: fetch roster of roster-sidecar-check@example.test: backend answered 404 Not Found\n",
			"            fix: check http_roster_url",
			"xmpp:       FAIL: the XMPP server at "+c.xmpp.Addr()+" refused the component secret for roster.example.test (not-authorized)\n",
		)
		if strings.Contains(out, "ready:") {
			t.Error("ready reported without a connection")
		}
	})
	t.Run("ejabberd api", func(t *testing.T) {
		c := newCLI(t)
		var mu sync.Mutex
		var calls []string
		sessionsAllowed := true
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			calls = append(calls, r.URL.Path+" "+string(body))
			allowed := sessionsAllowed
			mu.Unlock()
			if u, p, _ := r.BasicAuth(); u != "admin@example.test" || p != "right" {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"status":"error","code":31,"message":"Authentication failed"}`)
				return
			}
			if strings.HasSuffix(r.URL.Path, "/user_resources") {
				if !allowed {
					w.WriteHeader(http.StatusForbidden)
					_, _ = io.WriteString(w, `{"status":"error","code":32,"message":"AccessRules: Account does not have the right to perform the operation."}`)
					return
				}
				_, _ = io.WriteString(w, `["phone"]`)
				return
			}
			_, _ = io.WriteString(w, `[{"jid":"c1@example.test","nick":"One","subscription":"both","pending":"none","groups":["G"]}]`)
		}))
		defer api.Close()
		t.Setenv("ROSTER_SIDECAR_EJABBERD_API_URL", api.URL+"/api")
		t.Setenv("ROSTER_SIDECAR_EJABBERD_API_USER", "admin@example.test")
		t.Setenv("ROSTER_SIDECAR_EJABBERD_API_PASSWORD", "wrong")
		code, out, _ := c.run(t, "check", "--user", "john")
		expect(t, code, 1, out,
			"api:        FAIL: read roster of john@example.test: ejabberd API get_roster: HTTP 401: Authentication failed (check ejabberd_api.user/password and the api_permissions rule for the sidecar)\n",
			"ready:      ok: the component may read and write the rosters of example.test\n",
		)
		t.Setenv("ROSTER_SIDECAR_EJABBERD_API_PASSWORD", "right")
		code, out, _ = c.run(t, "check", "--user", "john")
		expect(t, code, 0, out, "api:        ok: get_roster of john@example.test answered through "+api.URL+"/api (1 items)\n",
			"presence:   ok: user_resources allowed")
		if strings.Contains(out, "helper:") {
			t.Error("helper reported in API mode, where rosters are not written over XEP-0356")
		}
		mu.Lock()
		want := []string{`/api/get_roster {"host":"example.test","user":"john"}`, `/api/user_resources {"host":"example.test","user":"john"}`}
		if len(calls) != 3 || calls[1] != want[0] || calls[2] != want[1] {
			t.Errorf("API calls %q, want get_roster once refused, then %q", calls, want)
		}
		sessionsAllowed = false
		mu.Unlock()
		// Without the permission presence probes need, rosters still sync:
		// check says so and passes.
		code, out, _ = c.run(t, "check", "--user", "john")
		expect(t, code, 0, out, "presence:   no probes: ejabberd API user_resources: HTTP 403: ",
			"            fix: allow user_resources and send_stanza for the API account")
		api.Close()
		code, out, _ = c.run(t, "check", "--user", "john")
		expect(t, code, 1, out, "api:        FAIL: read roster of john@example.test: ejabberd API get_roster: ", "            fix: check ejabberd_api.url and that ejabberd's mod_http_api listens there\n")
	})
	t.Run("invalid config", func(t *testing.T) {
		c := newCLI(t)
		code, out, _ := c.run(t, "check", "--xmpp.window", "0")
		if code != 1 || !strings.Contains(out, "config:     FAIL: xmpp.window must be at least 1") {
			t.Errorf("exit %d", code)
		}
		if c.xmpp.Counts().Accepted != 0 {
			t.Error("connected with an invalid config")
		}
	})
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for _, cmd := range []string{"serve", "sync", "diff", "check", "version"} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{cmd, "--help"}, &out, &out); code != 0 {
			t.Errorf("%s --help: exit %d", cmd, code)
		}
		if !strings.Contains(out.String(), "Examples:\n  roster-sidecar "+cmd) {
			t.Errorf("%s --help has no example:\n%s", cmd, out.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "roster-sidecar ") ||
		!strings.Contains(out.String(), runtime.Version()+")\n") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
	if code := run(context.Background(), []string{"sync", "--no-such-flag"}, &out, &out); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
}

// severalDomains configures the CLI for example.test (the default),
// other.test and nopriv.test, each with its own backend URL, and has the
// fake server grant the first two.
func severalDomains(t *testing.T, c *cli) {
	t.Helper()
	t.Setenv("ROSTER_SIDECAR_XMPP_USER_DOMAINS", "example.test, other.test,nopriv.test")
	t.Setenv("ROSTER_SIDECAR_BACKEND_DOMAIN_URLS", `{"other.test": "`+c.backend.URL+`/roster/other/%s", "nopriv.test": "`+c.backend.URL+`/roster/nopriv/%s"}`)
	c.xmpp.SetPrivilege(componenttest.PrivilegeBoth + strings.Replace(componenttest.PrivilegeBoth, "from='example.test'", "from='other.test'", 1))
}

func TestSyncSeveralDomains(t *testing.T) {
	c := newCLI(t)
	severalDomains(t, c)
	c.setRoster("john", backendRoster("c1@example.test", "One"))
	c.setRoster("other/john", backendRoster("c2@other.test", "Two"))
	code, out, _ := c.run(t, "sync", "john", "John@Other.Test", "john@example.test", "x@nopriv.test")
	expect(t, code, 1, out, "syncing 3 users, 8 at once\n",
		"failed: x@nopriv.test: roster privilege not granted: the server sent no privilege for nopriv.test",
		"synced 2 of 3 users in ")
	if got := c.xmpp.Roster("john@example.test"); !slices.Equal(got, []string{"c1@example.test|One|both|G"}) {
		t.Errorf("roster of john@example.test = %v", got)
	}
	if got := c.xmpp.Roster("john@other.test"); !slices.Equal(got, []string{"c2@other.test|Two|both|G"}) {
		t.Errorf("roster of john@other.test = %v", got)
	}
	// A domain not served is an invalid name: nothing is done.
	code, _, errOut := c.run(t, "sync", "john", "x@third.test")
	if code != 2 || !strings.Contains(errOut, `invalid username "x@third.test": its domain is not one of the domains served here (example.test, other.test, nopriv.test)`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	code, out, _ = c.run(t, "diff", "john@other.test")
	expect(t, code, 0, out, "john@other.test: up to date\n")
}

func TestCheckSeveralDomains(t *testing.T) {
	c := newCLI(t)
	severalDomains(t, c)
	code, out, _ := c.run(t, "check")
	expect(t, code, 1, out,
		"backend:    ok: roster of roster-sidecar-check: 0 contacts, 0 skipped, in ",
		"            ok: roster of roster-sidecar-check@other.test: 0 contacts, 0 skipped, in ",
		"            ok: roster of roster-sidecar-check@nopriv.test: 0 contacts, 0 skipped, in ",
		"privileges: example.test: roster=both message=outgoing presence=managed_entity\n"+
			"            other.test: roster=both message=outgoing presence=managed_entity\n",
		"ready:      ok: the component may read and write the rosters of example.test (the default domain)\n"+
			"            ok: the component may read and write the rosters of other.test\n"+
			"            FAIL: connected, but the server granted privileges only for example.test, other.test, not for the user domain nopriv.test\n"+
			"            fix: remove it from xmpp.user_domains, or grant the component roster access on nopriv.test: ",
		"helper:     missing on example.test (optional;",
		"            missing on other.test (optional;",
	)
	if n := c.fetches.Load(); n != 3 {
		t.Errorf("%d backend fetches, want one per domain", n)
	}
	// --user names its domain: that one only.
	c.fetches.Store(0)
	code, out, _ = c.run(t, "check", "--user", "john@other.test")
	expect(t, code, 1, out, "backend:    ok: roster of john@other.test: 0 contacts")
	if n := c.fetches.Load(); n != 1 {
		t.Errorf("%d backend fetches, want 1", n)
	}
}
