package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"roster-sidecar/admin"
	"roster-sidecar/component/componenttest"
	"roster-sidecar/daemon"
)

// serve runs roster-sidecar serve in-process (daemon.Serve) against the
// cli's fake XMPP server and backend, listening on c.adminListen, with
// configure applied to its configuration; it stops at the end of the test.
// It returns once /readyz answers 200.
func (c *cli) serve(t *testing.T, configure func(*daemon.Config)) {
	t.Helper()
	cfg := daemon.Config{
		XMPPAddress: c.xmpp.Addr(), XMPPDomain: componenttest.Domain, XMPPSecret: componenttest.Secret,
		UserDomain: componenttest.UserDomain, ConnectTimeout: time.Second, IQTimeout: 5 * time.Second,
		PrivilegeWait: 2 * time.Second, PingInterval: time.Minute, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
		Window: 8, CompareSub: "auto",
		RosterURL: c.backend.URL + "/roster/%s", BackendTimeout: 5 * time.Second, BackendMaxBody: 1 << 20,
		AdminListen: c.adminListen, AdminMaxBody: 1 << 20, AdminMaxUsers: 10000, AdminConcurrency: 8,
		AdminTimeout: time.Minute, SyncTimeout: 30 * time.Second, MaxPending: 1024,
	}
	if configure != nil {
		configure(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Serve(ctx, cfg, slog.New(slog.DiscardHandler), "test-daemon") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	defer client.CloseIdleConnections()
	scheme := "http"
	if cfg.AdminTLSCert != "" {
		scheme = "https"
	}
	componenttest.WaitFor(t, "serve ready", func() bool {
		resp, err := client.Get(scheme + "://" + c.adminListen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// adminURL is the URL of the in-process serve's admin API.
func (c *cli) adminURL() string { return "http://" + c.adminListen }

// readyz returns the status code of the in-process serve's /readyz.
func (c *cli) readyz(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(c.adminURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// onlyTheDaemonConnected fails the test unless the fake XMPP server saw
// exactly one component connection: serve's.
func (c *cli) onlyTheDaemonConnected(t *testing.T) {
	t.Helper()
	if n := c.xmpp.Counts().Accepted; n != 1 {
		t.Errorf("the XMPP server accepted %d component connections, want only serve's", n)
	}
}

// usersFile writes the usernames to a file, one a line, and returns its
// path.
func usersFile(t *testing.T, users []string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(file, []byte("# bulk\n"+strings.Join(users, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// progressCounts returns the users done of each "progress:" line of out,
// failing the test on a malformed one.
func progressCounts(t *testing.T, out string, total int) []int {
	t.Helper()
	line := regexp.MustCompile(`^progress: (\d+)/` + strconv.Itoa(total) + ` users, \d+ errors, \d+\.\d users/s, ETA (\S+)$`)
	var seen []int
	for l := range strings.Lines(out) {
		if m := line.FindStringSubmatch(strings.TrimSuffix(l, "\n")); m != nil {
			n, _ := strconv.Atoi(m[1])
			seen = append(seen, n)
		} else if strings.HasPrefix(l, "progress") {
			t.Errorf("malformed progress line %q", l)
		}
	}
	return seen
}

// With serve running, sync refreshes through its admin API in batches,
// shows progress, and opens no connection of its own; a refresh the
// backend asks for meanwhile is answered.
func TestSyncThroughDaemon(t *testing.T) {
	c := newCLI(t)
	t.Setenv("ROSTER_SIDECAR_ADMIN_TOKEN", "bulk-token")
	c.serve(t, func(cfg *daemon.Config) { cfg.AdminToken = "bulk-token" })
	var users []string
	for i := range 250 {
		users = append(users, fmt.Sprintf("u%03d", i))
		c.setRoster(users[i], backendRoster("c1@example.test", "One"))
	}
	c.setRoster("other", backendRoster("c2@example.test", "Two"))
	c.delay = 5 * time.Millisecond

	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		code, out, _ := c.run(t, "sync", "--from-file", usersFile(t, users), "--batch-size", "40", "--progress-interval", "20ms")
		done <- result{code, out}
	}()
	componenttest.WaitFor(t, "the bulk sync under way", func() bool { return c.fetches.Load() > 20 })
	req, _ := http.NewRequest(http.MethodPost, c.adminURL()+"/roster_admin/refresh/other", nil)
	req.Header.Set("Authorization", "Bearer bulk-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a refresh during the bulk sync answered %d", resp.StatusCode)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("sync did not end within a minute")
	}
	expect(t, r.code, 0, r.out,
		"via daemon: roster-sidecar serve at "+c.adminURL()+" (version test-daemon), sharing its XMPP connection\n",
		"syncing 250 users through the daemon, 40 per request, 8 at once\n",
		"synced 250 of 250 users in ", ": 0 failed\n",
		"roster items: 250 added, 0 updated, 0 removed; 0 contacts skipped\n")
	if seen := progressCounts(t, r.out, 250); len(seen) < 2 || !slices.IsSorted(seen) {
		t.Errorf("progress lines %v: want several, never going back", seen)
	}
	for _, u := range []string{"u000", "u123", "u249"} {
		if got := c.xmpp.Roster(u + "@example.test"); !slices.Equal(got, []string{"c1@example.test|One|both|G"}) {
			t.Errorf("roster of %s = %v", u, got)
		}
	}
	if got := c.xmpp.Roster("other@example.test"); !slices.Equal(got, []string{"c2@example.test|Two|both|G"}) {
		t.Errorf("roster of other = %v", got)
	}
	c.onlyTheDaemonConnected(t)
	http.DefaultClient.CloseIdleConnections()
}

// Failures through the daemon are reported per user as without it.
func TestSyncThroughDaemonReportsFailures(t *testing.T) {
	c := newCLI(t)
	c.serve(t, nil)
	c.setRoster("john", backendRoster("c1@example.test", "One", "not a jid", "Bad"))
	c.setStatus("bob", http.StatusInternalServerError)
	code, out, _ := c.run(t, "sync", "john", "bob")
	expect(t, code, 1, out,
		"via daemon: roster-sidecar serve at ",
		"failed: bob: fetch roster of bob@example.test: backend answered 500 Internal Server Error\n",
		`skipped: john: contact "not a jid": not a valid JID`,
		"synced 1 of 2 users in ", ": 1 failed\n",
		"roster items: 1 added, 0 updated, 0 removed; 1 contacts skipped\n")
	c.onlyTheDaemonConnected(t)
}

// A daemon that lost its link answers 503: sync waits until it is ready
// again and sends the request again.
func TestSyncThroughDaemonWaitsForTheLink(t *testing.T) {
	c := newCLI(t)
	c.serve(t, nil)
	c.xmpp.RefuseHandshakes("conflict")
	c.xmpp.DropAll()
	componenttest.WaitFor(t, "serve not ready", func() bool { return c.readyz(t) == http.StatusServiceUnavailable })
	go func() {
		time.Sleep(300 * time.Millisecond)
		c.xmpp.RefuseHandshakes("")
	}()
	code, out, _ := c.run(t, "sync", "john", "mary", "--wait", "20s")
	expect(t, code, 0, out, "via daemon: ", "synced 2 of 2 users in ")
}

// A daemon that stays unready stops the job: nothing is synced, and the
// summary says why.
func TestSyncThroughDaemonGivesUp(t *testing.T) {
	c := newCLI(t)
	c.serve(t, nil)
	c.xmpp.RefuseHandshakes("conflict")
	c.xmpp.DropAll()
	componenttest.WaitFor(t, "serve not ready", func() bool { return c.readyz(t) == http.StatusServiceUnavailable })
	code, out, _ := c.run(t, "sync", "john", "mary", "ann", "--wait", "700ms", "--batch-size", "2")
	expect(t, code, 1, out, "via daemon: ",
		"synced 0 of 3 users in ", ": 0 failed, 3 not started (stopped: the daemon is not ready (not connected to the XMPP server) after --wait 700ms)\n")
	if strings.Contains(out, "failed: ") {
		t.Error("users the daemon never synced are listed as failed")
	}
	if c.fetches.Load() != 0 {
		t.Error("the backend was asked while the daemon was not ready")
	}
}

// diff through the daemon prints what diff prints on its own connection,
// and writes nothing.
func TestDiffThroughDaemon(t *testing.T) {
	c := newCLI(t)
	c.serve(t, nil)
	c.setRoster("john", map[string]any{
		"new@example.test":     map[string]any{"name": "New", "groups": []string{"Friends"}},
		"renamed@example.test": map[string]any{"name": "Michael", "groups": []string{"Work"}},
		"subonly@example.test": map[string]any{"name": "Sub", "subscription": "both"},
		"not a jid":            map[string]any{},
	})
	c.setRoster("aaron", backendRoster("c1@example.test", "One"))
	c.setStatus("bob", http.StatusBadGateway)
	c.xmpp.SetRoster("john@example.test", map[string]componenttest.Item{
		"renamed@example.test": {Name: "Mike", Subscription: "both"},
		"subonly@example.test": {Name: "Sub", Subscription: "none"},
		"gone@example.test":    {Name: "Gone", Subscription: "both", Groups: []string{"Old"}},
	})
	c.xmpp.SetRoster("aaron@example.test", map[string]componenttest.Item{"c1@example.test": {Name: "One", Subscription: "both", Groups: []string{"G"}}})

	code, out, _ := c.run(t, "diff", "john", "aaron", "--batch-size", "1")
	expect(t, code, 1, out,
		"via daemon: roster-sidecar serve at "+c.adminURL()+" (version test-daemon), sharing its XMPP connection\n",
		"john: 1 to add, 1 to change, 1 to remove, 1 differ only in subscription, 1 skipped\n",
		`  + new@example.test  name "New", groups [Friends], subscription both`+"\n",
		`  ~ renamed@example.test  name "Mike" -> "Michael"; groups [] -> [Work]`+"\n",
		"  ~? subonly@example.test  subscription none -> both (only where the server stores subscriptions",
		`  - gone@example.test  (was name "Gone", groups [Old], subscription both)`+"\n",
		`  ! "not a jid" skipped: not a valid JID`,
		"aaron: up to date\n",
		"2 users: 1 would change, 1 up to date, 0 could not be read\n")
	if strings.Contains(out, "note:") {
		t.Error("a note about subscriptions though the settings agree")
	}
	if i, j := strings.Index(out, "john:"), strings.Index(out, "aaron:"); i < 0 || j < i {
		t.Error("previews not in the order of the users")
	}

	code, out, _ = c.run(t, "diff", "aaron", "bob", "--xmpp.compare_subscription", "never")
	expect(t, code, 2, out,
		"note: the daemon compares subscriptions as its xmpp.compare_subscription says (auto), not never: pass --local for another setting\n",
		"bob: error: fetch roster of bob@example.test: backend answered 502 Bad Gateway\n",
		"2 users: 0 would change, 1 up to date, 1 could not be read\n")
	if code, out, _ := c.run(t, "diff", "aaron"); code != 0 || !strings.Contains(out, "1 users: 0 would change, 1 up to date") {
		t.Errorf("up to date: exit %d", code)
	}
	if n := c.xmpp.Counts().Sets; n != 0 {
		t.Errorf("diff sent %d SETs", n)
	}
	c.onlyTheDaemonConnected(t)
}

func TestCheckThroughDaemon(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		c := newCLI(t)
		c.serve(t, nil)
		c.setRoster("john", backendRoster("c1@example.test", "One"))
		code, out, _ := c.run(t, "check", "--user", "john") // at once: check waits for serve's helper lookup
		expect(t, code, 0, out,
			"config:     ok (environment and flags)\n",
			"daemon:     ok: roster-sidecar serve at "+c.adminURL()+" (version test-daemon) answers: xmpp, privileges, ready and helper below are its connection's (check opens none)\n",
			"backend:    ok: roster of john: 1 contacts, 0 skipped, in ",
			"xmpp:       ok: serve is connected to "+c.xmpp.Addr()+" as roster.example.test\n",
			"privileges: example.test: roster=both message=outgoing presence=managed_entity\n",
			"ready:      ok: the component may read and write the rosters of example.test\n",
			"helper:     missing on example.test (optional;",
		)
		c.onlyTheDaemonConnected(t)
	})
	t.Run("roster get only", func(t *testing.T) {
		c := newCLI(t)
		c.serve(t, nil)
		c.xmpp.SetPrivilege(`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/><perm access='message' type='outgoing'/></privilege></message>`)
		c.xmpp.DropAll()
		componenttest.WaitFor(t, "serve reconnected without the privilege", func() bool {
			var st admin.ServerStatus
			resp, err := http.Get(c.adminURL() + "/roster_admin/status")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return json.NewDecoder(resp.Body).Decode(&st) == nil && !st.Ready && st.Link.Connected && len(st.Link.Privileges) == 1
		})
		code, out, _ := c.run(t, "check")
		expect(t, code, 1, out,
			"daemon:     ok: roster-sidecar serve at ",
			"xmpp:       ok: serve is connected to ",
			"privileges: example.test: roster=get message=outgoing\n",
			"ready:      FAIL: the server granted roster=get only on example.test (need get and set)\n",
			`            fix: set roster = "both" for roster.example.test in privileged_entities of VirtualHost "example.test" (Prosody), or mod_privilege roster: both (ejabberd)`+"\n",
		)
		if n := c.xmpp.Counts().Accepted; n != 2 {
			t.Errorf("%d connections: want serve's first and its reconnection only", n)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	t.Run("not connected", func(t *testing.T) {
		c := newCLI(t)
		c.serve(t, nil)
		c.xmpp.RefuseHandshakes("conflict")
		c.xmpp.DropAll()
		componenttest.WaitFor(t, "serve refused with conflict", func() bool {
			var st admin.ServerStatus
			resp, err := http.Get(c.adminURL() + "/roster_admin/status")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return json.NewDecoder(resp.Body).Decode(&st) == nil && strings.Contains(st.Link.Error, "conflict")
		})
		code, out, _ := c.run(t, "check")
		expect(t, code, 1, out,
			"xmpp:       FAIL: the server refused a second connection as roster.example.test (conflict)\n",
			"            fix: another roster-sidecar is connected as this component")
		if strings.Contains(out, "ready:") {
			t.Error("ready reported without a connection")
		}
	})
}

// Without a daemon the commands say so and connect themselves; --local
// does not even look.
func TestCommandsWithoutDaemon(t *testing.T) {
	c := newCLI(t)
	code, out, _ := c.run(t, "sync", "john")
	expect(t, code, 0, out, "via own connection: no daemon answers at "+c.adminURL()+" (connection refused)\n", "syncing 1 users, 8 at once\n")
	code, out, _ = c.run(t, "check")
	expect(t, code, 0, out, "daemon:     none: no daemon answers at "+c.adminURL()+" (connection refused): check connects as the component itself\n",
		"xmpp:       ok: connected to ")

	var asked atomic.Int64
	ln, err := net.Listen("tcp", c.adminListen)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { asked.Add(1) })}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	code, out, _ = c.run(t, "diff", "john", "--local")
	expect(t, code, 0, out, "via own connection: --local\n", "john: up to date\n")
	code, out, _ = c.run(t, "check", "--local")
	expect(t, code, 0, out, "daemon:     not looked for (--local): check connects as the component itself\n")
	if n := asked.Load(); n != 0 {
		t.Errorf("--local asked admin.listen %d times", n)
	}
}

// Something that answers at admin.listen but cannot be used stops the
// commands before they connect: a connection of their own would be refused
// or break the daemon's.
func TestCommandsRefuseAnUnusableDaemon(t *testing.T) {
	t.Run("wrong token", func(t *testing.T) {
		c := newCLI(t)
		c.serve(t, func(cfg *daemon.Config) { cfg.AdminToken = "right" })
		t.Setenv("ROSTER_SIDECAR_ADMIN_TOKEN", "wrong")
		code, _, errOut := c.run(t, "sync", "john")
		expect(t, code, 1, errOut, "roster-sidecar serve at "+c.adminURL()+" refused this command's credentials (missing or invalid bearer token): "+
			"give it the admin.token or admin.hmac_secret of serve's configuration, or stop serve and pass --local")
		code, out, _ := c.run(t, "check")
		expect(t, code, 1, out, "daemon:     FAIL: roster-sidecar serve at ")
		if code, _, _ := c.run(t, "diff", "john"); code != 2 {
			t.Errorf("diff: exit %d, want 2", code)
		}
		c.onlyTheDaemonConnected(t)
		if c.fetches.Load() != 0 {
			t.Error("fetched from the backend")
		}
	})
	t.Run("another user domain", func(t *testing.T) {
		c := newCLI(t)
		c.serve(t, nil)
		code, _, errOut := c.run(t, "sync", "john", "--xmpp.user_domain", "other.test")
		expect(t, code, 1, errOut, "manages the users of example.test, this configuration those of other.test")
		c.onlyTheDaemonConnected(t)
	})
	t.Run("not roster-sidecar", func(t *testing.T) {
		c := newCLI(t)
		ln, err := net.Listen("tcp", c.adminListen)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.NotFoundHandler()}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		code, _, errOut := c.run(t, "sync", "john")
		expect(t, code, 1, errOut, "something answers at admin.listen ("+c.adminURL()+") but offers no /roster_admin/status")
		if n := c.xmpp.Counts().Accepted; n != 0 {
			t.Errorf("%d component connections", n)
		}
	})
}

// The commands sign their requests when serve wants signatures, and reach
// an HTTPS admin API that presents the configured certificate.
func TestCommandsSignAndUseTLS(t *testing.T) {
	c := newCLI(t)
	certFile, keyFile := selfSignedCert(t)
	const secret = "bulk-hmac-secret-0123456789"
	t.Setenv("ROSTER_SIDECAR_ADMIN_HMAC_SECRET", secret)
	c.serve(t, func(cfg *daemon.Config) {
		cfg.AdminHMACSecret, cfg.AdminTLSCert, cfg.AdminTLSKey = secret, certFile, keyFile
	})
	withTLS := []string{"--admin.tls_cert_file", certFile, "--admin.tls_key_file", keyFile}
	code, out, _ := c.run(t, append([]string{"sync", "john", "mary"}, withTLS...)...)
	expect(t, code, 0, out, "via daemon: roster-sidecar serve at https://"+c.adminListen+" (version test-daemon)", "synced 2 of 2 users in ")
	code, out, _ = c.run(t, append([]string{"diff", "john", "mary"}, withTLS...)...)
	expect(t, code, 0, out, "via daemon: ", "2 users: 0 would change, 2 up to date")
	code, out, _ = c.run(t, append([]string{"check", "--user", "john"}, withTLS...)...)
	expect(t, code, 0, out, "daemon:     ok: ", "ready:      ok: ")

	otherCert, otherKey := selfSignedCert(t) // another certificate: not serve's
	code, _, errOut := c.run(t, "sync", "john", "--admin.tls_cert_file", otherCert, "--admin.tls_key_file", otherKey)
	expect(t, code, 1, errOut, "the admin API presented another certificate than admin.tls_cert_file")
	c.onlyTheDaemonConnected(t)
}

func TestBatches(t *testing.T) {
	users := []string{"a", "bb", "ccc", "d", "e"}
	lens := func(bs [][]string) []int {
		var n []int
		for _, b := range bs {
			n = append(n, len(b))
		}
		return n
	}
	if got := lens(batches(users, 2, 1<<20)); !slices.Equal(got, []int{2, 2, 1}) {
		t.Errorf("by count: %v", got)
	}
	// Counted with a comma after each name: ["a","bb", is 11 bytes, then
	// ["ccc", 8 and ["d","e", 10.
	if got := lens(batches(users, 10, 11)); !slices.Equal(got, []int{2, 1, 2}) {
		t.Errorf("by bytes: %v", got)
	}
	for _, b := range batches(users, 10, 11) {
		body, _ := json.Marshal(b)
		if len(body) > 11 {
			t.Errorf("%s is over 11 bytes", body)
		}
	}
	if got := lens(batches([]string{strings.Repeat("x", 20), "a"}, 10, 11)); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("an overlong name: %v", got)
	}
	if got := batches(nil, 10, 100); len(got) != 0 {
		t.Errorf("no users: %v", got)
	}
}

func TestAdminBaseURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:5380": "http://127.0.0.1:5380",
		":5380":          "http://127.0.0.1:5380",
		"0.0.0.0:5380":   "http://127.0.0.1:5380",
		"[::]:5380":      "http://[::1]:5380",
		"localhost:80":   "http://localhost:80",
		"10.1.2.3:5380":  "http://10.1.2.3:5380",
	} {
		got, err := adminBaseURL(daemon.Config{AdminListen: listen})
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", listen, got, err, want)
		}
	}
	if got, _ := adminBaseURL(daemon.Config{AdminListen: "127.0.0.1:5380", AdminTLSCert: "x"}); got != "https://127.0.0.1:5380" {
		t.Errorf("TLS: %q", got)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to files.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "roster-sidecar test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// insecureTLS is the TLS configuration of the test's own readiness probe.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
