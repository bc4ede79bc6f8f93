//go:build e2e && browser

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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
// client, in headless Chromium, over Prosody's WebSocket endpoint) sees the
// contacts that a refresh through the admin API adds, renames, moves and
// removes, without reloading the page. The script is
// e2e/browser/converse-contacts.mjs; it saves screenshots.
//
// It needs chromium, node and e2e/browser/node_modules: run
// e2e/browser/install.sh (as root) first. Anything missing fails the test.
// It runs on Prosody only (TestBrowserConverseContacts/prosody), started
// with e2e/testdata/prosody-web.cfg.lua.
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
	// Prosody with its WebSocket endpoint on a loopback HTTP port.
	httpPort := harness.FreePorts(t, 1)[0]
	web := servers{only: []string{"prosody"}, start: harness.ServerOptions{
		ProsodyOverlay: harness.RepoFile(t, "e2e", "testdata", "prosody-web.cfg.lua"),
		Env:            []string{"PROSODY_HTTP_PORT=" + strconv.Itoa(httpPort)},
	}}
	runPerServer(t, web, func(t *testing.T, e *Env) {
		srv := e.Server
		wsURL := "ws://127.0.0.1:" + strconv.Itoa(httpPort) + "/xmpp-websocket"
		if err := harness.WaitFor(context.Background(), srv.Process, 20*time.Second, "prosody HTTP on port "+strconv.Itoa(httpPort),
			harness.DialCheck("127.0.0.1:"+strconv.Itoa(httpPort))); err != nil {
			t.Fatal(err)
		}
		const user = "web_alice"
		srv.CreateUsers(t, user, "web_bob", "web_carol", "web_dave")

		backend := e.Backend
		opts := sidecarOptions(mainPing)
		// The refresh at login must not apply the "after" roster before the
		// page has shown the "before" one: the user was synced just before.
		opts.Env = append(opts.Env, "ROSTER_SIDECAR_SYNC_LOGIN_MIN_INTERVAL=1h")
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

		// The page: index.html and Converse.js's dist/ files, from loopback.
		mux := http.NewServeMux()
		mux.Handle("GET /dist/", http.StripPrefix("/dist/", http.FileServer(http.Dir(dist))))
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			http.ServeFile(w, r, filepath.Join(browserDir, "index.html"))
		})
		page := httptest.NewServer(mux)
		t.Cleanup(page.Close)
		pageURL := page.URL + "/?" + url.Values{"ws": {wsURL}, "domain": {harness.UserDomain}}.Encode()

		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, filepath.Join(browserDir, "converse-contacts.mjs"))
		cmd.Dir = browserDir
		cmd.Env = append(os.Environ(),
			"CHROMIUM="+chromium,
			"PAGE_URL="+pageURL,
			"XMPP_JID="+user+"@"+harness.UserDomain,
			"XMPP_PASSWORD="+harness.UserPassword,
			"ADMIN_URL="+sc.Admin.BaseURL,
			"ADMIN_TOKEN="+sc.Admin.Token,
			"BEFORE="+browserContacts(before),
			"AFTER="+browserContacts(after),
			"SCREENSHOT_DIR="+shots,
		)
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		t.Logf("converse-contacts.mjs:\n%s", out)
		if err != nil {
			t.Fatalf("the browser test failed: %v", err)
		}
		t.Logf("screenshot: %s", filepath.Join(shots, "converse-contacts.png"))
	})
}
