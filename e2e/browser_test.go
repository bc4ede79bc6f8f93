//go:build e2e && browser

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/e2e/harness"
)

// Environment of the browser test.
const (
	// envChromium names the Chromium binary; default defaultChromium.
	envChromium     = "ROSTER_SIDECAR_CHROMIUM"
	defaultChromium = "/usr/bin/chromium"
	// envScreenshots names the directory for the screenshots; default
	// e2e/browser/out.
	envScreenshots = "ROSTER_SIDECAR_SCREENSHOTS"
)

// browserContact is a contact as the browser script expects to see it.
type browserContact struct {
	JID    string   `json:"jid"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
}

func browserContacts(cs []harness.Contact) string {
	out := make([]browserContact, len(cs))
	for i, c := range cs {
		out[i] = browserContact{JID: c.JID, Name: c.Name, Groups: c.Groups}
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestBrowserConverseContacts: a user logged in to Converse.js (a web
// client, in headless Chromium, over the server's WebSocket endpoint)
// sees, without reloading the page:
//   - the contacts that a refresh through the admin API adds, renames,
//     moves and removes;
//   - a second user, online in another client (the suite's Client), appear
//     as a contact with Converse's presence indicator showing online once
//     refreshes make the two friends, in three orders (browserRounds): one
//     request for both, the friend's roster first, the page user's first;
//     then away when that user changes status; and disappear after one
//     refresh that unfriends them. The other client receives the page
//     user's available presence, then its unavailable, in every round.
//
// The script is e2e/browser/converse-contacts.mjs; it saves screenshots in
// e2e/browser/out/<server>/.
//
// It needs chromium, node and e2e/browser/node_modules: run
// e2e/browser/install.sh (as root) first. Anything missing fails the test.
// It runs where friends see each other online at once:
// TestBrowserConverseContacts/prosody, with the helper (started with
// e2e/testdata/prosody-web.cfg.lua, which keeps it), and
// TestBrowserConverseContacts/ejabberd, in API mode, with a WebSocket
// listener added to the running node (ejabberdWebSocket); browserRounds
// says why the friend shows online in every round on both. The servers run one after the other
// (two browsers at once are slow on small CI machines).
func TestBrowserConverseContacts(t *testing.T) {
	browserDir := harness.RepoFile(t, "e2e", "browser")
	chromium := os.Getenv(envChromium)
	if chromium == "" {
		chromium = defaultChromium
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium is missing (%v): run e2e/browser/install.sh as root, or set %s", err, envChromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is missing (%v): install Node.js >= 18", err)
	}
	dist := filepath.Join(browserDir, "node_modules", "converse.js", "dist")
	for _, p := range []string{
		filepath.Join(dist, "converse.min.js"),
		filepath.Join(browserDir, "node_modules", "playwright-core", "package.json"),
	} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: run e2e/browser/install.sh (npm ci in e2e/browser)", err)
		}
	}
	shots := os.Getenv(envScreenshots)
	if shots == "" {
		shots = filepath.Join(browserDir, "out")
	}
	// Prosody with its WebSocket endpoint on a loopback HTTP port (the
	// overlay and the variable mean nothing to ejabberd).
	prosodyHTTP := harness.FreePorts(t, 1)[0]
	web := servers{only: []string{"prosody", "ejabberd"}, inTurn: true, start: harness.ServerOptions{
		ProsodyOverlay: harness.RepoFile(t, "e2e", "testdata", "prosody-web.cfg.lua"),
		Env:            []string{"PROSODY_HTTP_PORT=" + strconv.Itoa(prosodyHTTP)},
	}}
	runPerServer(t, web, func(t *testing.T, e *Env) {
		srv := e.Server
		opts := sidecarOptions(mainPing)
		// The refresh at login must not apply the "after" roster before the
		// page has shown the "before" one: the user was synced just before.
		opts.Env = append(opts.Env, "ROSTER_SIDECAR_SYNC_LOGIN_MIN_INTERVAL=1h")
		var wsURL string
		switch srv.Name {
		case "prosody":
			if !srv.PresenceHelper {
				t.Fatal("the Prosody runner did not load the helper")
			}
			wsURL = "ws://127.0.0.1:" + strconv.Itoa(prosodyHTTP) + "/xmpp-websocket"
			if err := harness.WaitFor(context.Background(), srv.Process, 20*time.Second, "prosody HTTP on port "+strconv.Itoa(prosodyHTTP),
				harness.DialCheck("127.0.0.1:"+strconv.Itoa(prosodyHTTP))); err != nil {
				t.Fatal(err)
			}
		case "ejabberd":
			wsURL = ejabberdWebSocket(t, srv)
			// API mode: subscriptions are stored and ejabberd sends the
			// presence they allow (TestEjabberdAPIMode).
			ensureAPIAccount(t, srv)
			opts.Env = append(opts.Env,
				"ROSTER_SIDECAR_EJABBERD_API_URL="+srv.APIURL,
				"ROSTER_SIDECAR_EJABBERD_API_USER="+apiAccount+"@"+srv.Domain,
				"ROSTER_SIDECAR_EJABBERD_API_PASSWORD="+apiPassword)
		default:
			t.Fatalf("no WebSocket endpoint for %s", srv.Name)
		}
		const user, friendUser = "web_alice", "web_erin"
		srv.CreateUsers(t, user, "web_bob", "web_carol", "web_dave", friendUser)

		backend := e.Backend
		backend.SetRoster(friendUser)
		sc := e.StartSidecar(t, opts)
		logOnFailure(t, sc.Process, srv.Process)

		// The roster the user has when logging in ...
		before := []harness.Contact{
			{JID: "web_bob@example.test", Name: "Bob", Groups: []string{"Friends"}},
			{JID: "web_dave@example.test", Name: "Dave", Groups: []string{"Friends"}},
		}
		backend.SetRoster(user, before...)
		expectCounts(t, sc.Admin.RefreshOK(t, user), user, 2, 0, 0)
		// ... and what the backend says next: Bob renamed, Carol added in a
		// new group, Dave removed. The browser script asks for the refresh.
		after := []harness.Contact{
			{JID: "web_bob@example.test", Name: "Bob Builder", Groups: []string{"Friends"}},
			{JID: "web_carol@example.test", Name: "Carol", Groups: []string{"Work"}},
		}
		backend.SetRoster(user, after...)

		// Erin is online in another client (not a contact yet). The script
		// asks for each step of the presence scenario in turn (POST
		// /step/NAME?round=R on the page's server): "friends" makes the two
		// friends in the backend, "away" changes Erin's status, "unfriend"
		// makes them strangers again; the script asks for the refreshes of
		// each round (browserRounds), and one refresh of both after
		// "unfriend".
		friend := Login(t, srv, friendUser)
		userJID := jid.MustParse(user + "@" + harness.UserDomain)
		friendContact := harness.Contact{JID: friend.JID.String(), Name: "Erin", Groups: []string{"Friends"}}
		rounds := browserRounds(user, friendUser)
		var (
			mu    sync.Mutex
			marks = map[string]int{} // step?round -> Erin's presence count then
			steps = map[string]func(ctx context.Context) error{
				"friends": func(context.Context) error {
					backend.SetRoster(user, slices.Concat(after, []harness.Contact{friendContact})...)
					backend.SetRoster(friendUser, harness.Contact{JID: userJID.String(), Name: "Alice", Groups: []string{"Friends"}})
					return nil
				},
				"away": func(ctx context.Context) error {
					return friend.Send(ctx, `<presence><show>away</show><status>back soon</status></presence>`)
				},
				"unfriend": func(context.Context) error {
					backend.SetRoster(user, after...)
					backend.SetRoster(friendUser)
					return nil
				},
			}
		)

		// The page: index.html and Converse.js's dist/ files, from loopback.
		mux := http.NewServeMux()
		mux.Handle("GET /dist/", http.StripPrefix("/dist/", http.FileServer(http.Dir(dist))))
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(browserDir, "index.html"))
		})
		mux.HandleFunc("POST /step/{name}", func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			step, ok := steps[name]
			if !ok {
				http.Error(w, "no step "+name, http.StatusNotFound)
				return
			}
			mu.Lock()
			marks[name+"?"+r.URL.Query().Get("round")] = friend.PresenceCount()
			mu.Unlock()
			if err := step(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "step %s done\n", name)
		})
		page := httptest.NewServer(mux)
		t.Cleanup(page.Close)
		query := url.Values{"ws": {wsURL}, "domain": {harness.UserDomain}}
		if harness.Debug() {
			// Converse.js logs every stanza; the script prints the console.
			query.Set("loglevel", "debug")
		}
		pageURL := page.URL + "/?" + query.Encode()
		dir := filepath.Join(shots, srv.Name)

		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join(browserDir, "converse-contacts.mjs"))
		cmd.Dir = browserDir
		cmd.Env = append(os.Environ(),
			"CHROMIUM="+chromium,
			"PAGE_URL="+pageURL,
			"STEP_URL="+page.URL+"/step",
			"XMPP_JID="+userJID.String(),
			"XMPP_PASSWORD="+harness.UserPassword,
			"ADMIN_URL="+sc.Admin.BaseURL,
			"ADMIN_TOKEN="+sc.Admin.Token,
			"BEFORE="+browserContacts(before),
			"AFTER="+browserContacts(after),
			"FRIEND="+strings.TrimSuffix(strings.TrimPrefix(browserContacts([]harness.Contact{friendContact}), "["), "]"),
			"ROUNDS="+mustJSON(rounds),
			"SCREENSHOT_DIR="+dir,
			"TIMEOUT_MS=30000",
		)
		if harness.Debug() {
			cmd.Env = append(cmd.Env, "BROWSER_DEBUG=1")
		}
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		t.Logf("converse-contacts.mjs:\n%s", out)
		if err != nil {
			t.Fatalf("the browser test failed: %v", err)
		}

		// The other way: in each round Erin's client received the page
		// user's presence when they became friends, and its unavailable
		// when unfriended.
		shotNames := []string{"converse-contacts.png"}
		for _, r := range rounds {
			mu.Lock()
			nFriends, okF := marks["friends?"+r.Name]
			nUnfriend, okU := marks["unfriend?"+r.Name]
			mu.Unlock()
			if !okF || !okU {
				t.Fatalf("round %s: the script did not ask for its steps", r.Name)
			}
			p := friend.WaitForPresence(t, nFriends, userJID, "", pushWait)
			q := friend.WaitForPresence(t, nUnfriend, userJID, "unavailable", pushWait)
			t.Logf("round %s: %s's client received %s after the friends step, %s after the unfriend step", r.Name, friendUser, p, q)
			shotNames = append(shotNames, "converse-presence-"+r.Name+".png")
		}
		for _, name := range append(shotNames, "converse-presence-away.png", "converse-presence-unfriended.png") {
			t.Logf("screenshot: %s", filepath.Join(dir, name))
		}
	})
}

// browserRound is one way of making the page's user and the friend friends,
// and what the page must show then (see ROUNDS in converse-contacts.mjs).
type browserRound struct {
	Name    string     `json:"name"`
	Refresh [][]string `json:"refresh"`
	// Expect is "online" (every round now); the script also knows
	// "offline" and "any", for a server where presence is known to be
	// missed.
	Expect string `json:"expect"`
}

// browserRounds: one refresh of both users; the friend's roster first,
// then the page user's; the page user's first, then the friend's. The page
// must show the friend online at once in each, on both servers. With the
// Prosody helper the helper sends the presence the subscriptions allow. On
// ejabberd (API mode) mod_roster sends presence on a gained "from" only: a
// user's write sends the user's presence to the contact, which Converse.js
// drops while the contact's roster does not list the user yet (friend
// first), and a user gaining "to" is sent no presence of the contact. So
// after the writes the sidecar probes the presence of every contact whose
// item gained "to" (ejabberdapi.Client.ProbePresence): the contact's
// sessions answer once its own roster has "from" for the user, after the
// user's roster push. Before the probes the page showed the friend offline
// in friend-first and either way in one-request (measured).
func browserRounds(user, friend string) []browserRound {
	return []browserRound{
		{Name: "one-request", Refresh: [][]string{{user, friend}}, Expect: "online"},
		{Name: "friend-first", Refresh: [][]string{{friend}, {user}}, Expect: "online"},
		{Name: "user-first", Refresh: [][]string{{user}, {friend}}, Expect: "online"},
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// ejabberdWebSocket gives the running ejabberd a WebSocket endpoint for
// Converse.js and returns its URL: deploy/ejabberd/ejabberd.yml has none,
// and the harness runs that file unchanged, so the test adds a listener to
// the node instead (ejabberd_listener:add_listener, through ejabberdEval):
// an ejabberd_http listener with the options of the file's HTTP API
// listener (loopback), on a free port, serving only ejabberd_http_ws at
// /ws (loaded first: ejabberd_http looks for the handler's socket_handoff
// among loaded modules only, which the configuration check does for the
// file's handlers). It goes away with the server.
func ejabberdWebSocket(t *testing.T, srv *harness.Server) string {
	t.Helper()
	port := harness.FreePorts(t, 1)[0]
	out := ejabberdEval(t, srv, fmt.Sprintf(`{module, _} = code:ensure_loaded(ejabberd_http_ws),
[Opts | _] = [O || {_, ejabberd_http, O} <- ejabberd_option:listen()],
ejabberd_listener:add_listener({%d, maps:get(ip, Opts), tcp}, ejabberd_http,
	Opts#{request_handlers => [{[<<"ws">>], ejabberd_http_ws}]})`, port))
	if out != "ok" {
		t.Fatalf("adding a WebSocket listener to ejabberd: %s", out)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := harness.WaitFor(context.Background(), srv.Process, 20*time.Second, "ejabberd WebSocket on "+addr, harness.DialCheck(addr)); err != nil {
		t.Fatal(err)
	}
	return "ws://" + addr + "/ws"
}
