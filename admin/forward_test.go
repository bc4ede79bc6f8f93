package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// pair is a leader and a standby, each an admin API on an httptest server,
// with the standby's role pointing at the leader.
type pair struct {
	leader, standby       *Server
	leaderTS, standbyTS   *httptest.Server
	leaderSync, standbySy *fakeSyncer
	obs                   *forwardRecorder
	// role is what the standby's role function answers; mu guards it.
	mu   sync.Mutex
	role Role
}

// forwardRecorder records ForwardDone calls.
type forwardRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *forwardRecorder) ForwardDone(route string, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, route+" "+http.StatusText(code))
}

func (r *forwardRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// newPair starts both servers with cfg (UserDomain filled in, clocks at
// testNow for signatures); the standby's Syncer is on standby.
func newPair(t *testing.T, cfg Config) *pair {
	t.Helper()
	return newPairWith(t, cfg, cfg)
}

// newPairWith is newPair with a configuration for each server.
func newPairWith(t *testing.T, leaderCfg, standbyCfg Config) *pair {
	t.Helper()
	p := &pair{
		leaderSync: &fakeSyncer{},
		standbySy:  &fakeSyncer{readyErr: errors.New("standby: pod-a holds the lease chat/roster-sidecar")},
		obs:        &forwardRecorder{},
	}
	p.leader = newSigningServer(t, leaderCfg, p.leaderSync)
	p.leader.SetLeader(func() Role { return Role{Leading: true, Leader: "pod-a"} }, nil)
	p.leaderTS = httptest.NewServer(p.leader.Handler())
	p.standby = newSigningServer(t, standbyCfg, p.standbySy)
	p.role = Role{Leader: "pod-a", LeaderURL: p.leaderTS.URL}
	p.standby.SetLeader(func() Role {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.role
	}, p.obs)
	p.standbyTS = httptest.NewServer(p.standby.Handler())
	t.Cleanup(func() {
		p.standbyTS.Close()
		p.leaderTS.Close()
		p.standby.leader.transport.CloseIdleConnections()
		p.leader.leader.transport.CloseIdleConnections()
	})
	return p
}

func (p *pair) setRole(r Role) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.role = r
}

// send sends a request to ts with header (name, value pairs) and returns
// the answer.
func send(t *testing.T, ts *httptest.Server, method, target, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+target, strings.NewReader(body))
	require.NoError(t, err)
	if body == "" {
		req.Body = http.NoBody
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestForwardRelaysTheLeadersAnswer(t *testing.T) {
	const token = "forward-token"
	p := newPair(t, Config{Token: token})
	auth := []string{"Authorization", "Bearer " + token}

	direct := send(t, p.leaderTS, http.MethodPost, "/roster_admin/refresh", `["john"]`, auth...)
	via := send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `["aaron"]`, auth...)
	require.Equal(t, http.StatusOK, via.code, via.body)
	require.Equal(t, strings.Replace(direct.body, "john", "aaron", 1), via.body, "the leader's answer, unchanged")
	require.Equal(t, direct.header.Get("Content-Type"), via.header.Get("Content-Type"))
	calls, _, _, _ := p.leaderSync.snapshot()
	require.Equal(t, []string{"john", "aaron"}, calls, "the leader synced both")
	calls, _, _, _ = p.standbySy.snapshot()
	require.Empty(t, calls, "the standby synced nothing")

	// Every route that needs the link; a 4xx of the leader relayed as is.
	r := send(t, p.standbyTS, http.MethodGet, "/roster_admin/refresh/marie?x=1", "", auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"user":"marie"`)
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/push", `{"paul": {"a@example.test": {}}}`, auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, p.leaderSync.pushes(), "paul")
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/diff", `["john"]`, auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `{"john":true}`, auth...)
	requireError(t, r, http.StatusBadRequest, "JSON array")
	r = send(t, p.standbyTS, http.MethodGet, "/roster_admin/refresh/a%20b", "", auth...)
	requireError(t, r, http.StatusBadRequest, "")
	require.Equal(t, []string{
		"/roster_admin/refresh OK", "/roster_admin/refresh/:user OK", "/roster_admin/push OK", "/roster_admin/diff OK",
		"/roster_admin/refresh Bad Request", "/roster_admin/refresh/:user Bad Request",
	}, p.obs.get())

	// The standby checks the credentials itself: nothing reaches the
	// leader without them.
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `["eve"]`, "Authorization", "Bearer wrong")
	requireError(t, r, http.StatusUnauthorized, "bearer token")
	calls, _, _, _ = p.leaderSync.snapshot()
	require.NotContains(t, calls, "eve")
	require.Len(t, p.obs.get(), 6)

	// What needs no link is answered by the standby itself.
	r = send(t, p.standbyTS, http.MethodGet, "/roster_admin/status", "", auth...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, false, r.json(t)["ready"])
}

// TestForwardRelaysTheLeadersRefusal: a leader configured with another
// token refuses what the standby accepted; its 401 and challenge reach the
// caller as they are.
func TestForwardRelaysTheLeadersRefusal(t *testing.T) {
	p := newPairWith(t, Config{Token: "leader-token"}, Config{Token: "standby-token"})
	r := send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `["john"]`, "Authorization", "Bearer standby-token")
	requireError(t, r, http.StatusUnauthorized, "bearer token")
	require.Equal(t, []string{"Bearer"}, r.header.Values("WWW-Authenticate"))
	require.Equal(t, []string{"/roster_admin/refresh Unauthorized"}, p.obs.get())
}

func TestForwardKeepsTheSignatureValid(t *testing.T) {
	p := newPair(t, Config{HMACSecret: testSecret})
	const body = `["john"]`
	signed := signedHeader(testSecret, testNow.Unix(), http.MethodPost, "/roster_admin/refresh?batch=7", body)
	r := send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh?batch=7", body, signed...)
	require.Equal(t, http.StatusOK, r.code, r.body)
	calls, _, _, _ := p.leaderSync.snapshot()
	require.Equal(t, []string{"john"}, calls)

	// A bad signature stops at the standby.
	bad := signedHeader("another-secret-0123456789", testNow.Unix(), http.MethodPost, "/roster_admin/refresh", body)
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", body, bad...)
	requireError(t, r, http.StatusUnauthorized, "invalid request signature")
	require.Len(t, p.obs.get(), 1)
}

func TestForwardedRequestIsNeverForwardedAgain(t *testing.T) {
	p := newPair(t, Config{})
	// The "leader" the standby forwards to is a standby too (a
	// hand-over): it answers 503 itself, with the route's error shape.
	p.leader.SetLeader(func() Role { return Role{Leader: "pod-c", LeaderURL: p.standbyTS.URL} }, nil)
	r := send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `["john","aaron"]`)
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	m := r.json(t)
	require.Equal(t, "error", m["status"])
	require.Contains(t, m["message"], "forwarded by another instance")
	require.EqualValues(t, 2, m["errors"])
	r = send(t, p.standbyTS, http.MethodGet, "/roster_admin/refresh/john", "")
	requireError(t, r, http.StatusServiceUnavailable, "forwarded by another instance")
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/diff", `["john"]`)
	requireError(t, r, http.StatusServiceUnavailable, "forwarded by another instance")
	require.Equal(t, []string{
		"/roster_admin/refresh Service Unavailable", "/roster_admin/refresh/:user Service Unavailable", "/roster_admin/diff Service Unavailable",
	}, p.obs.get(), "one hop each")

	// Sent straight to a standby with the header, too.
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/push", `{"john": {}}`, HeaderForwarded, "1")
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	require.Contains(t, r.body, "forwarded by another instance")
	calls, _, _, _ := p.leaderSync.snapshot()
	require.Empty(t, calls)
}

func TestForwardWithoutLeader(t *testing.T) {
	p := newPair(t, Config{})
	// No leader known: the standby's own 503, saying why.
	p.setRole(Role{})
	r := send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `["john"]`)
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	require.Contains(t, r.body, "standby: pod-a holds the lease")
	r = send(t, p.standbyTS, http.MethodGet, "/roster_admin/refresh/john", "")
	requireError(t, r, http.StatusServiceUnavailable, "standby: ")
	require.Empty(t, p.obs.get())

	// A leader that cannot be reached: 503 naming it, and the body is
	// still there for the handler (errors counts the users).
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	p.setRole(Role{Leader: "pod-gone", LeaderURL: down.URL})
	r = send(t, p.standbyTS, http.MethodPost, "/roster_admin/refresh", `["john","aaron","john"]`)
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	m := r.json(t)
	require.Contains(t, m["message"], "forwarding to the leader pod-gone at "+down.URL+" failed")
	require.EqualValues(t, 2, m["errors"])
	require.Equal(t, []string{"/roster_admin/refresh "}, p.obs.get(), "counted with no status")
}

func TestReadyzUnderLeaderElection(t *testing.T) {
	p := newPair(t, Config{})
	r := send(t, p.standbyTS, http.MethodGet, "/readyz", "")
	requireJSON(t, r, http.StatusOK, `{"status":"ok","role":"standby","leader":"pod-a","leader_url":"`+p.leaderTS.URL+`"}`)

	p.setRole(Role{Leader: "pod-a"}) // a leader that advertises no URL
	r = send(t, p.standbyTS, http.MethodGet, "/readyz", "")
	requireJSON(t, r, http.StatusServiceUnavailable,
		`{"status":"error","role":"standby","leader":"pod-a","message":"standby: pod-a holds the lease chat/roster-sidecar"}`)

	p.setRole(Role{})
	r = send(t, p.standbyTS, http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, r.code)
	require.Equal(t, "standby", r.json(t)["role"])

	r = send(t, p.leaderTS, http.MethodGet, "/readyz", "")
	requireJSON(t, r, http.StatusOK, `{"status":"ok","role":"leader","leader":"pod-a"}`)
	p.leaderSync.mu.Lock()
	p.leaderSync.readyErr = errors.New("not connected to the XMPP server")
	p.leaderSync.mu.Unlock()
	r = send(t, p.leaderTS, http.MethodGet, "/readyz", "")
	requireJSON(t, r, http.StatusServiceUnavailable, `{"status":"error","role":"leader","leader":"pod-a","message":"not connected to the XMPP server"}`)

	// /healthz is the same on both.
	for _, ts := range []*httptest.Server{p.leaderTS, p.standbyTS} {
		requireJSON(t, send(t, ts, http.MethodGet, "/healthz", ""), http.StatusOK, `{"status":"ok"}`)
	}
}
