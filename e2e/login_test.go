//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/e2e/harness"
)

// Settings of the sidecar in TestLoginRefresh.
const (
	// loginMinInterval replaces the 5m default so that a user can be
	// synced, go offline and come back within a test.
	loginMinInterval = 2 * time.Second
	// loginWait bounds the time from a login to the backend's roster on
	// the client ("within seconds").
	loginWait = 10 * time.Second
)

func loginOptions(extra ...string) harness.SidecarOptions {
	return harness.SidecarOptions{
		Token:          adminToken,
		BackendTimeout: backendTimeout,
		IQTimeout:      iqTimeout,
		PingInterval:   mainPing,
		Env:            append([]string{"ROSTER_SIDECAR_SYNC_LOGIN_MIN_INTERVAL=" + loginMinInterval.String()}, extra...),
	}
}

// TestLoginRefresh runs the refresh at login (sync.on_login, the default)
// against every server: TestLoginRefresh/<server>/<scenario>. Nobody calls
// the admin API in these scenarios unless stated: the sidecar refreshes a
// user when the server forwards the presence of a new session.
func TestLoginRefresh(t *testing.T) {
	runPerServer(t, servers{}, withSidecar(loginOptions(), loginScenarios))
}

var loginScenarios = []Scenario{
	{"first_login", testFirstLogin},
	{"changed_while_offline", testChangedWhileOffline},
	{"status_change_is_no_login", testStatusChangeIsNoLogin},
	// Last: it replaces the sidecar.
	{"sessions_online_at_connect", testSessionsOnlineAtConnect},
}

// waitRequests waits until the backend got n requests for user and checks
// that no more come within quiet.
func waitRequests(t *testing.T, b *harness.Backend, user string, n int) {
	t.Helper()
	deadline := time.Now().Add(loginWait)
	for len(b.Requests(user)) < n && time.Now().Before(deadline) {
		time.Sleep(25 * time.Millisecond)
	}
	time.Sleep(quiet)
	if got := len(b.Requests(user)); got != n {
		t.Errorf("the backend got %d requests for %s, want %d", got, user, n)
	}
}

// testFirstLogin: a user the sidecar never synced logs in and, within
// seconds, sees the backend's roster.
func testFirstLogin(t *testing.T, e *Env) {
	const user = "lg_first"
	e.Users(t, user)
	want := []harness.Contact{{JID: "ama@example.test", Name: "Ama", Groups: []string{"Friends"}}, {JID: "bea@example.test", Name: "Bea"}}
	e.Backend.SetRoster(user, want...)
	start := time.Now()
	c := Login(t, e.Server, user)
	c.WaitForRoster(t, want, loginWait)
	t.Logf("%s: the roster was complete %v after the login started", e.Server.Name, time.Since(start).Round(time.Millisecond))
	waitRequests(t, e.Backend, user, 1)
}

// testChangedWhileOffline: the backend changes while the user is offline
// and nobody calls refresh; the user logs in again and within seconds the
// client shows the new roster. A login soon after a sync fetches nothing.
// The first session ends without an unavailable presence (the client just
// closes its stream): ejabberd then tells the component nothing, and the
// next session must count as a login all the same.
func testChangedWhileOffline(t *testing.T, e *Env) {
	const user = "lg_offline"
	e.Users(t, user)
	v1 := []harness.Contact{{JID: "cai@example.test", Name: "Cai"}}
	e.Backend.SetRoster(user, v1...)
	e.Admin.RefreshOK(t, user)
	c := Login(t, e.Server, user) // within loginMinInterval of the sync: no fetch
	c.WaitForRoster(t, v1, 0)
	waitRequests(t, e.Backend, user, 1)
	c.Close()

	v2 := []harness.Contact{{JID: "cai@example.test", Name: "Cai C.", Groups: []string{"Work"}}, {JID: "dev@example.test", Name: "Dev"}}
	e.Backend.SetRoster(user, v2...)
	time.Sleep(loginMinInterval)
	start := time.Now()
	c = Login(t, e.Server, user)
	c.WaitForRoster(t, v2, loginWait)
	t.Logf("%s: the changed roster reached the client %v after the login started", e.Server.Name, time.Since(start).Round(time.Millisecond))
	waitRequests(t, e.Backend, user, 2)
}

// testStatusChangeIsNoLogin: presence updates of a session that is already
// online (away, back) fetch nothing, even after loginMinInterval.
func testStatusChangeIsNoLogin(t *testing.T, e *Env) {
	const user = "lg_status"
	e.Users(t, user)
	want := []harness.Contact{{JID: "eve@example.test", Name: "Eve"}}
	e.Backend.SetRoster(user, want...)
	c := Login(t, e.Server, user)
	c.WaitForRoster(t, want, loginWait)
	waitRequests(t, e.Backend, user, 1)
	time.Sleep(loginMinInterval)
	c.SendPresence(t, jid.JID{}, "")
	c.SendPresence(t, jid.JID{}, "")
	waitRequests(t, e.Backend, user, 1)
}

// testSessionsOnlineAtConnect restarts the sidecar while users are online,
// with a small queue and a low rate. Prosody announces every online session
// to the component at connect: each of those users is refreshed once, at
// the configured rate, the queue overflow included. ejabberd announces
// nothing at connect (measured): nobody is refreshed until a new session.
func testSessionsOnlineAtConnect(t *testing.T, e *Env) {
	const n, rate, queue = 24, 12, 8
	e.Sidecar.Stop(10 * time.Second)
	var users []string
	for i := range n {
		users = append(users, fmt.Sprintf("lg_burst%02d", i))
	}
	e.Users(t, users...)
	want := map[string][]harness.Contact{}
	clients := map[string]*Client{}
	for _, u := range users {
		want[u] = []harness.Contact{{JID: "friend-of-" + u + "@example.test", Name: strings.ToUpper(u)}}
		e.Backend.SetRoster(u, want[u]...)
		clients[u] = Login(t, e.Server, u)
	}
	before := len(e.Backend.Requests(""))
	start := time.Now()
	sc := e.StartSidecar(t, loginOptions(
		fmt.Sprintf("ROSTER_SIDECAR_SYNC_LOGIN_RATE=%d", rate), fmt.Sprintf("ROSTER_SIDECAR_SYNC_LOGIN_QUEUE=%d", queue)))

	if e.Server.Name == "ejabberd" {
		time.Sleep(2 * time.Second)
		if got := len(e.Backend.Requests("")) - before; got != 0 {
			t.Errorf("ejabberd: %d fetches after the sidecar connected; it was measured to announce no session", got)
		}
		return
	}
	for _, u := range users {
		clients[u].WaitForRoster(t, want[u], 30*time.Second)
	}
	reqs := e.Backend.Requests("")[before:]
	if len(reqs) != n {
		t.Fatalf("%d fetches for %d online users", len(reqs), n)
	}
	span := reqs[len(reqs)-1].At.Sub(reqs[0].At)
	minSpan := time.Duration(n-1) * time.Second / rate
	t.Logf("%s: %d sessions announced at connect, all refreshed %v after the sidecar started; fetches spread over %v (rate %d/s, queue %d)",
		e.Server.Name, n, time.Since(start).Round(time.Millisecond), span.Round(time.Millisecond), rate, queue)
	if span < minSpan*9/10 {
		t.Errorf("%d fetches within %v: faster than sync.login_rate %d/s", n, span, rate)
	}
	out := sc.Output()
	if !strings.Contains(out, "login refresh queue full") {
		t.Errorf("the queue of %d never overflowed with %d users (no warning logged)", queue, n)
	}
}
