package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/leader"
	"roster-sidecar/leader/leadertest"
)

// electedDaemon is Serve with leader election on a fake Lease API, against
// a shared fake XMPP server and backend.
type electedDaemon struct {
	*testDaemon
	id     string
	client *leadertest.Client
}

// startElected runs Serve as instance id with short lease timings; it does
// not wait for readiness (a standby that advertises no URL never is ready).
func startElected(t *testing.T, xmpp *componenttest.Server, backend *httptest.Server, api *leadertest.API, id string) *electedDaemon {
	t.Helper()
	return startElectedWith(t, xmpp, backend, api, id, false)
}

// startElectedWith is startElected; with advertise, the instance
// advertises its admin URL (leader.advertise_url) in the Lease.
func startElectedWith(t *testing.T, xmpp *componenttest.Server, backend *httptest.Server, api *leadertest.API, id string, advertise bool) *electedDaemon {
	t.Helper()
	d := &electedDaemon{
		testDaemon: &testDaemon{xmpp: xmpp, backend: backend, admin: componenttest.FreeAddr(t), done: make(chan error, 1)},
		id:         id,
		client:     api.Client(),
	}
	cfg := Config{
		XMPPAddress: xmpp.Addr(), XMPPDomain: componenttest.Domain, XMPPSecret: componenttest.Secret,
		UserDomain: componenttest.UserDomain, ConnectTimeout: time.Second, IQTimeout: 5 * time.Second,
		PrivilegeWait: 2 * time.Second, PingInterval: time.Minute, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond, Window: 8, CompareSub: "auto",
		RosterURL: backend.URL + "/roster/%s", BackendTimeout: 5 * time.Second, BackendMaxBody: 1 << 20,
		AdminListen: d.admin, AdminMaxBody: 1 << 20, AdminMaxUsers: 100, AdminConcurrency: 8,
		AdminTimeout: time.Minute, SyncTimeout: 30 * time.Second,
		Leader: leader.Config{
			LeaseName: "roster-sidecar", Namespace: "chat", Identity: id, Client: d.client,
			LeaseDuration: 4 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
		},
	}
	if advertise {
		cfg.Leader.AdvertiseURL = "http://" + d.admin
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	go func() { d.done <- Serve(ctx, cfg, log, "test") }()
	t.Cleanup(func() { d.shutdown(t) })
	waitUntil(t, id+" serves /healthz", 5*time.Second, func() bool { code, _ := d.get(t, "/healthz"); return code == 200 })
	return d
}

// get answers GET path with the status and the decoded JSON body.
func (d *testDaemon) get(t *testing.T, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(d.url(path))
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func (d *testDaemon) ready(t *testing.T) bool {
	code, _ := d.get(t, "/readyz")
	return code == http.StatusOK
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

// checkStandby checks what a standby answers: 503 on /readyz and on both
// refresh routes, with the error body and a message saying standby.
func checkStandby(t *testing.T, d *electedDaemon, holder string) {
	t.Helper()
	code, body := d.get(t, "/readyz")
	msg, _ := body["message"].(string)
	if code != http.StatusServiceUnavailable || body["status"] != "error" || !strings.HasPrefix(msg, "standby: ") || !strings.Contains(msg, holder) {
		t.Errorf("%s /readyz = %d %v, want 503 saying standby and naming %s", d.id, code, body, holder)
	}
	code, a, err := d.refresh(http.DefaultClient, "alice", "bob")
	if err != nil || code != http.StatusServiceUnavailable || a.Status != "error" || a.Errors != 2 || a.Updated != 0 {
		t.Errorf("%s refresh = %d %+v %v, want 503 with errors 2", d.id, code, a, err)
	}
	code, body = d.get(t, "/roster_admin/refresh/alice")
	msg, _ = body["message"].(string)
	if code != http.StatusServiceUnavailable || body["status"] != "error" || !strings.HasPrefix(msg, "standby: ") {
		t.Errorf("%s refresh of one user = %d %v, want 503 saying standby", d.id, code, body)
	}
	resp, err := http.Post(d.url("/roster_admin/push"), "application/json", strings.NewReader(`{"alice": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s push = %d, want 503 from a standby", d.id, resp.StatusCode)
	}
}

func TestServeWithLeaderElection(t *testing.T) {
	xmpp := componenttest.NewServer(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(2))
	}))
	t.Cleanup(backend.Close)
	defer http.DefaultClient.CloseIdleConnections()
	api := leadertest.New()

	a := startElected(t, xmpp, backend, api, "pod-a")
	waitUntil(t, "pod-a ready", 5*time.Second, func() bool { return a.ready(t) })
	b := startElected(t, xmpp, backend, api, "pod-b")
	time.Sleep(500 * time.Millisecond) // several polls of pod-b

	// pod-a leads: connected, refreshes; pod-b stands by, unconnected.
	if code, r, err := a.refresh(http.DefaultClient, "alice"); err != nil || code != 200 || r.Updated != 1 {
		t.Fatalf("pod-a refresh = %d %+v %v", code, r, err)
	}
	checkStandby(t, b, "pod-a")
	if n := xmpp.Counts().Accepted; n != 1 {
		t.Errorf("the XMPP server accepted %d connections, want pod-a's only", n)
	}
	if m := scrape(t, a.testDaemon); m["roster_sidecar_leader"] != 1 || m["roster_sidecar_leader_changes_total"] < 1 || m["roster_sidecar_xmpp_connected"] != 1 {
		t.Errorf("pod-a metrics: leader %v, changes %v, connected %v", m["roster_sidecar_leader"], m["roster_sidecar_leader_changes_total"], m["roster_sidecar_xmpp_connected"])
	}
	if m := scrape(t, b.testDaemon); m["roster_sidecar_leader"] != 0 || m["roster_sidecar_leader_changes_total"] < 1 || m["roster_sidecar_xmpp_connected"] != 0 {
		t.Errorf("pod-b metrics: leader %v, changes %v, connected %v", m["roster_sidecar_leader"], m["roster_sidecar_leader_changes_total"], m["roster_sidecar_xmpp_connected"])
	}

	// A clean stop of pod-a (a rolling update) hands over at once.
	stopped := time.Now()
	a.shutdown(t)
	ready := waitUntil(t, "pod-b ready", 5*time.Second, func() bool { return b.ready(t) })
	t.Logf("hand-over after a clean stop: pod-b ready %v after pod-a was told to stop", ready.Sub(stopped).Round(time.Millisecond))
	if d := ready.Sub(stopped); d > 2*time.Second {
		t.Errorf("hand-over took %v: the lease was not released", d)
	}
	if got := api.Holder("chat", "roster-sidecar"); got != "pod-b" {
		t.Errorf("holder %q", got)
	}
	if code, r, err := b.refresh(http.DefaultClient, "bob"); err != nil || code != 200 || r.Updated != 1 {
		t.Fatalf("pod-b refresh = %d %+v %v", code, r, err)
	}

	// pod-b cut off the API server: it stops (disconnects) within the
	// renew deadline and stands by, before its lease expires.
	cut := time.Now()
	b.client.Cut()
	standby := waitUntil(t, "pod-b stands by", 5*time.Second, func() bool { return !b.ready(t) })
	waitUntil(t, "pod-b disconnects", 5*time.Second, func() bool { return scrape(t, b.testDaemon)["roster_sidecar_xmpp_connected"] == 0 })
	disconnected := time.Now()
	t.Logf("lease lost: pod-b stood by %v and disconnected %v after its renewals started failing",
		standby.Sub(cut).Round(time.Millisecond), disconnected.Sub(cut).Round(time.Millisecond))
	// Its lease could be taken 3 s (4 s − 1 s of precision) after its
	// last renewal.
	if d := disconnected.Sub(cut); d > 3*time.Second-100*time.Millisecond {
		t.Errorf("pod-b was still connected %v after it was cut off, beyond its lease", d)
	}
	checkStandby(t, b, "waiting for the lease")
	if m := scrape(t, b.testDaemon); m["roster_sidecar_leader"] != 0 {
		t.Errorf("pod-b leader gauge %v after losing the lease", m["roster_sidecar_leader"])
	}

	// Back on the network, it wins the lease again (nobody else runs)
	// with fresh parts, and serves.
	b.client.Restore()
	waitUntil(t, "pod-b ready again", 10*time.Second, func() bool { return b.ready(t) })
	if code, r, err := b.refresh(http.DefaultClient, "carol"); err != nil || code != 200 || r.Updated != 1 {
		t.Fatalf("pod-b refresh after re-election = %d %+v %v", code, r, err)
	}
}

// TestStandbyForwardsToTheLeader: instances that advertise their admin
// URLs are all ready; the standby forwards refreshes to the leader and
// relays its answers, and follows a hand-over.
func TestStandbyForwardsToTheLeader(t *testing.T) {
	xmpp := componenttest.NewServer(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(2))
	}))
	t.Cleanup(backend.Close)
	defer http.DefaultClient.CloseIdleConnections()
	api := leadertest.New()

	a := startElectedWith(t, xmpp, backend, api, "pod-a", true)
	waitUntil(t, "pod-a ready", 5*time.Second, func() bool { return a.ready(t) })
	b := startElectedWith(t, xmpp, backend, api, "pod-b", true)
	waitUntil(t, "pod-b ready as a standby", 5*time.Second, func() bool { return b.ready(t) })
	if got, want := api.Holder("chat", "roster-sidecar"), "pod-a "+a.url(""); got != want {
		t.Errorf("holderIdentity %q, want %q", got, want)
	}
	code, body := b.get(t, "/readyz")
	if code != http.StatusOK || body["role"] != "standby" || body["leader"] != "pod-a" || body["leader_url"] != a.url("") {
		t.Errorf("pod-b /readyz = %d %v, want 200 naming the standby role and pod-a", code, body)
	}
	if code, body = a.get(t, "/readyz"); code != http.StatusOK || body["role"] != "leader" || body["leader"] != "pod-a" {
		t.Errorf("pod-a /readyz = %d %v, want 200 naming the leader role", code, body)
	}

	// A refresh sent to the standby is done by the leader.
	if code, r, err := b.refresh(http.DefaultClient, "alice"); err != nil || code != 200 || r.Updated != 1 {
		t.Fatalf("refresh through pod-b = %d %+v %v", code, r, err)
	}
	if n := xmpp.Counts().Accepted; n != 1 {
		t.Errorf("the XMPP server accepted %d connections, want pod-a's only", n)
	}
	if m := scrape(t, b.testDaemon); m[`roster_sidecar_forwarded_requests_total{code="200",route="/roster_admin/refresh"}`] != 1 {
		t.Errorf("pod-b counted no forwarded refresh: %v", m)
	}

	// After a hand-over the roles swap, and so does the forwarding.
	a.shutdown(t)
	waitUntil(t, "pod-b leads", 5*time.Second, func() bool { _, body := b.get(t, "/readyz"); return body["role"] == "leader" })
	waitUntil(t, "pod-b ready", 5*time.Second, func() bool { return b.ready(t) })
	if code, r, err := b.refresh(http.DefaultClient, "bob"); err != nil || code != 200 || r.Updated != 1 {
		t.Fatalf("pod-b refresh after the hand-over = %d %+v %v", code, r, err)
	}
}

func TestServeWithoutLeaderElectionHasNoLeaderMetrics(t *testing.T) {
	d := startDaemon(t, 1)
	defer http.DefaultClient.CloseIdleConnections()
	for k := range scrape(t, d) {
		if strings.HasPrefix(k, "roster_sidecar_leader") {
			t.Errorf("%s exported without leader election", k)
		}
	}
}
