//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// Fault-test settings: a sidecar that notices losses fast and redials
// often, so that the bounds below stay short.
const (
	faultUsers    = 200
	faultContacts = 20
	// lossNoticed bounds how long /readyz may stay 200 after the server
	// died, and answerBound how long a refresh in flight may take to answer.
	lossNoticed = 5 * time.Second
	answerBound = 30 * time.Second
	// recovered bounds how long the sidecar may take to be ready again
	// once the server is back.
	recovered = 30 * time.Second
)

func faultOptions() harness.SidecarOptions {
	opts := sidecarOptions(time.Second)
	opts.Env = append(opts.Env, "ROSTER_SIDECAR_XMPP_RECONNECT_MIN=100ms", "ROSTER_SIDECAR_XMPP_RECONNECT_MAX=1s")
	return opts
}

// TestFaults runs, per server, what goes wrong around the sidecar: the
// backend gone, overlapping refreshes while the backend changes, and the
// XMPP server killed during a large refresh. The servers take turns (one
// at a time), as they always did here.
func TestFaults(t *testing.T) {
	runPerServer(t, servers{inTurn: true}, func(t *testing.T, e *Env) {
		e.run(t, []Scenario{{"backend_down", testBackendDown}}) // with a sidecar of its own
		// Registered before any restart, in one go.
		e.Users(t, crashUsers()...)
		e.StartSidecar(t, faultOptions())
		e.run(t, []Scenario{
			{"overlapping_refreshes", testOverlappingRefreshes},
			{"server_restarted", testServerRestarted},
			{"server_killed_during_refresh", testServerKilled},
		})
	})
}

// crashUsers are the users of testServerKilled.
func crashUsers() []string {
	users := make([]string, faultUsers)
	for i := range users {
		users[i] = fmt.Sprintf("crash_%03d", i)
	}
	return users
}

// testBackendDown: with the backend process gone, refreshes fail for every
// user, promptly, and no roster changes. It runs a sidecar and a backend of
// its own on e's server.
func testBackendDown(t *testing.T, e *Env) {
	srv := e.Server
	backend := harness.NewBackend(t)
	sc := startSidecar(t, srv, backend, faultOptions())
	defer sc.Stop(10 * time.Second)
	users := []string{"down_a", "down_b"}
	srv.CreateUsers(t, users...)
	v1 := []harness.Contact{{JID: "x@example.test", Name: "X", Groups: []string{"G"}}}
	for _, u := range users {
		backend.SetRoster(u, v1...)
	}
	sc.Admin.RefreshOK(t, users...)
	c := Login(t, srv, users[0])
	c.WaitForRoster(t, v1, 0)

	backend.Close()
	n := c.Pushes()
	r, raw := sc.Admin.Refresh(t, users...)
	if raw.Status != http.StatusOK || r.Status != "error" || r.Errors != len(users) || r.Updated != 0 {
		t.Errorf("refresh with the backend down: want status error, errors %d; got %d %s", len(users), raw.Status, raw.Body)
	}
	if raw.Elapsed > backendTimeout+time.Second {
		t.Errorf("refresh with the backend down took %v", raw.Elapsed)
	}
	c.AssertRosterStays(t, n, v1, quiet)
}

// testOverlappingRefreshes: a refresh arrives while the same user's sync
// has fetched stale data; the final roster is the latest backend state and
// the backend is asked exactly twice for three requests.
func testOverlappingRefreshes(t *testing.T, e *Env) {
	const user = "overlap_kay"
	e.Users(t, user)
	old := []harness.Contact{{JID: "old@example.test", Name: "Old"}}
	latest := []harness.Contact{{JID: "new@example.test", Name: "New", Groups: []string{"Latest"}}}
	e.Backend.Set(user, harness.Reply{Contacts: old, Delay: time.Second})

	var wg sync.WaitGroup
	answers := make([]harness.RefreshResponse, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		answers[0] = e.Admin.RefreshOK(t, user)
	}()
	waitUntil(t, 5*time.Second, "the first fetch", func() bool { return len(e.Backend.Requests(user)) == 1 })
	e.Backend.SetRoster(user, latest...) // changes while the first sync holds the old state
	for i := 1; i < len(answers); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = e.Admin.RefreshOK(t, user)
		}()
	}
	wg.Wait()
	if n := len(e.Backend.Requests(user)); n != 2 {
		t.Errorf("backend fetched %s %d times for 3 overlapping requests, want 2", user, n)
	}
	// Logged in only now: a login refresh would be one more fetch.
	Login(t, e.Server, user).WaitForRoster(t, latest, 0)
	for i, a := range answers {
		if a.Updated != 1 || a.Errors != 0 {
			t.Errorf("request %d: %+v", i, a)
		}
	}
}

// testServerKilled: the XMPP server is killed with SIGKILL during a
// 200-user refresh. The refresh answers within a bound with the failures
// counted; /readyz turns 503 and a new refresh is refused with 503; once
// the server is back the same sidecar is ready again, and one refresh
// brings every roster exactly to the backend's state.
func testServerKilled(t *testing.T, e *Env) {
	users := crashUsers()
	rosters := map[string][]harness.Contact{}
	for _, u := range users {
		var contacts []harness.Contact
		for k := range faultContacts {
			contacts = append(contacts, harness.Contact{JID: fmt.Sprintf("c%02d@example.test", k), Name: fmt.Sprintf("%s's contact %d", u, k), Groups: []string{"G" + fmt.Sprint(k%3)}})
		}
		rosters[u] = contacts
		e.Backend.SetRoster(u, contacts...)
	}

	type answer struct {
		r   harness.RefreshResponse
		raw harness.AdminReply
	}
	done := make(chan answer, 1)
	go func() {
		r, raw := e.Admin.Refresh(t, users...)
		done <- answer{r, raw}
	}()
	waitUntil(t, 30*time.Second, "the refresh to be under way", func() bool { return len(e.Backend.Requests("")) >= 20 })
	e.Server.Crash(t)
	killed := time.Now()

	ready := harness.HTTPCheck(e.Admin.BaseURL+"/readyz", http.Header{"Authorization": {"Bearer " + adminToken}}, http.StatusOK)
	waitUntil(t, lossNoticed, "/readyz to report the loss", func() bool { return ready() != nil })
	t.Logf("/readyz not ready %v after the kill", time.Since(killed).Round(time.Millisecond))

	select {
	case a := <-done:
		t.Logf("refresh answered %v after the kill: updated %d, errors %d", time.Since(killed).Round(time.Millisecond), a.r.Updated, a.r.Errors)
		if a.raw.Status != http.StatusOK || a.r.Updated+a.r.Errors != faultUsers || a.r.Errors == 0 {
			t.Errorf("refresh cut by the kill: want 200 with %d users counted and errors > 0; got %d updated %d errors %d",
				faultUsers, a.raw.Status, a.r.Updated, a.r.Errors)
		}
	case <-time.After(answerBound):
		t.Fatalf("the refresh in flight did not answer within %v of the kill", answerBound)
	}

	raw := e.Admin.RefreshRaw(t, users[0])
	if raw.Status != http.StatusServiceUnavailable || raw.Elapsed > time.Second {
		t.Errorf("refresh while disconnected: want a prompt 503, got %d after %v: %s", raw.Status, raw.Elapsed, raw.Body)
	}

	e.Server.Restart(t)
	restarted := time.Now()
	waitUntil(t, recovered, "/readyz after the restart", func() bool { return ready() == nil })
	t.Logf("ready again %v after the restart", time.Since(restarted).Round(time.Millisecond))
	e.Sidecar.Alive(t)

	r := e.Admin.RefreshOK(t, users...)
	if r.Updated != faultUsers || r.Errors != 0 {
		t.Fatalf("refresh after the restart: updated %d errors %d", r.Updated, r.Errors)
	}
	// Converged: a second refresh finds nothing to change for anyone.
	r = e.Admin.RefreshOK(t, users...)
	for _, res := range r.Results {
		if res.Added+res.Updated+res.Removed != 0 {
			t.Errorf("%s still changing after convergence: %+v", res.User, res)
		}
	}
	for _, i := range []int{0, 1, faultUsers / 2, faultUsers - 1} {
		Login(t, e.Server, users[i]).WaitForRoster(t, rosters[users[i]], 0)
	}
}

// testServerRestarted: a clean server stop (SIGTERM) and start. The same
// sidecar notices, redials and serves refreshes again.
func testServerRestarted(t *testing.T, e *Env) {
	const user = "restart_lee"
	e.Users(t, user)
	ready := harness.HTTPCheck(e.Admin.BaseURL+"/readyz", http.Header{"Authorization": {"Bearer " + adminToken}}, http.StatusOK)
	e.Server.Process.Stop(20 * time.Second)
	stopped := time.Now()
	waitUntil(t, lossNoticed, "/readyz to report the stop", func() bool { return ready() != nil })
	t.Logf("/readyz not ready %v after the stop", time.Since(stopped).Round(time.Millisecond))
	e.Server.Restart(t)
	restarted := time.Now()
	waitUntil(t, recovered, "/readyz after the restart", func() bool { return ready() == nil })
	t.Logf("ready again %v after the restart", time.Since(restarted).Round(time.Millisecond))
	contacts := []harness.Contact{{JID: "mo@example.test", Name: "Mo"}}
	populate(t, e, Login(t, e.Server, user), user, contacts...)
}

// waitUntil polls cond every 20 ms until it holds, failing t after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
