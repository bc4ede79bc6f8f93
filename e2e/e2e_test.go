//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// Settings of the sidecar shared by every scenario of a server.
const (
	adminToken     = "e2e-admin-token"
	backendTimeout = 2 * time.Second
	iqTimeout      = 4 * time.Second
	// mainPing keeps XEP-0199 pings out of the way of the scenarios;
	// link_stays_up restarts the sidecar with linkPing to test them.
	mainPing = 10 * time.Minute
	linkPing = time.Second
	// pushWait bounds how long a roster change may take to reach a client.
	pushWait = 10 * time.Second
	// quiet is how long tests watch for pushes that must not come.
	quiet = 500 * time.Millisecond
)

// TestE2E runs every scenario against every server:
// TestE2E/<server>/<scenario>.
func TestE2E(t *testing.T) {
	runPerServer(t, servers{}, withSidecar(sidecarOptions(mainPing), scenarios))
}

// sidecarOptions are the settings of every sidecar the scenarios run. The
// refresh at login (sync.on_login, on by default) is off: these scenarios
// log users in and count backend requests, and a login refresh racing the
// refresh under test would make them flaky. TestLoginRefresh tests it.
func sidecarOptions(ping time.Duration) harness.SidecarOptions {
	return harness.SidecarOptions{
		Token:          adminToken,
		BackendTimeout: backendTimeout,
		IQTimeout:      iqTimeout,
		PingInterval:   ping,
		Env:            []string{"ROSTER_SIDECAR_SYNC_ON_LOGIN=false"},
	}
}

// scenarios are run in this order against each server.
var scenarios = []Scenario{
	{"first_population", testFirstPopulation},
	{"rename", testRename},
	{"group_change", testGroupChange},
	{"removal", testRemoval},
	{"offline_user", testOfflineUser},
	{"backend_500", testBackendError("e500", harness.Reply{Status: 500, Body: `{"error":"boom"}`})},
	{"backend_invalid_json", testBackendError("ejson", harness.Reply{Body: `{"marie@example.test": {"name": `})},
	{"backend_not_object", testBackendError("earray", harness.Reply{Body: `["marie@example.test"]`})},
	{"backend_timeout", testBackendTimeout},
	{"invalid_contact_jid", testInvalidContactJID},
	{"url_escaping", testURLEscaping},
	{"duplicate_users", testDuplicateUsers},
	{"empty_array", testEmptyArray},
	{"unauthenticated", testUnauthenticated},
	// The backend stays the authority (authority_test.go).
	{"client_roster_edit_refused", testClientRosterEditRefused},
	{"client_subscription_blocked", testClientSubscriptionBlocked},
	{"outside_changes_reverted", testOutsideChangesReverted},
	// What a user sees of a contact it was just given (presence_test.go).
	{"presence_after_both", testPresenceAfterBoth},
	// Last: it replaces the sidecar.
	{"link_stays_up", testLinkStaysUp},
}

// expectCounts checks a user's added/updated/removed counts.
func expectCounts(t testing.TB, r harness.RefreshResponse, user string, added, updated, removed int) {
	t.Helper()
	res := r.Result(t, user)
	if res.Status != "ok" || res.Added != added || res.Updated != updated || res.Removed != removed {
		t.Errorf("%s: want ok added %d updated %d removed %d, got %+v", user, added, updated, removed, res)
	}
}

// populate gives user the roster contacts through the backend and a
// refresh, and waits until the client (if any) shows it.
func populate(t *testing.T, e *Env, c *Client, user string, contacts ...harness.Contact) {
	t.Helper()
	e.Backend.SetRoster(user, contacts...)
	e.Admin.RefreshOK(t, user)
	if c != nil {
		c.WaitForRoster(t, contacts, pushWait)
	}
}

// testFirstPopulation: an online user's empty roster is filled from the
// backend; the client sees the pushes; a second refresh changes nothing.
func testFirstPopulation(t *testing.T, e *Env) {
	const user = "fp_alice"
	e.Users(t, user)
	c := Login(t, e.Server, user)

	contacts := []harness.Contact{
		{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}},
		{JID: "michael@example.test", Name: "Michael"},
		{JID: "Judy@Example.TEST", Name: "Judy", Groups: []string{"Work", "Friends"}}, // normalised by everyone
		{JID: "ext@elsewhere.test", Groups: []string{"Remote"}, Subscription: "to"},
	}
	e.Backend.SetRoster(user, contacts...)
	r, raw := e.Admin.Refresh(t, user)
	if raw.Elapsed > iqTimeout/2 {
		t.Errorf("refreshing a %d-contact roster took %v (IQ timeout %v): did an IQ go unanswered?", len(contacts), raw.Elapsed, iqTimeout)
	}
	expectCounts(t, r, user, len(contacts), 0, 0)
	c.WaitForRoster(t, contacts, pushWait)
	if n := c.Pushes(); n < len(contacts) {
		t.Errorf("client saw %d roster pushes, want at least %d", n, len(contacts))
	}

	reqs := e.Backend.Requests(user)
	if len(reqs) != 1 {
		t.Fatalf("backend got %d requests for %s, want 1: %+v", len(reqs), user, reqs)
	}
	if !strings.Contains(reqs[0].Accept, "application/json") {
		t.Errorf("backend request Accept = %q, want application/json", reqs[0].Accept)
	}

	// Nothing changed: nothing is rewritten (on ejabberd too, where the
	// stored subscription is never the "both" asked for).
	n := c.Pushes()
	r = e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 0, 0, 0)
	c.AssertRosterStays(t, n, contacts, quiet)
}

// testRename: a contact's new display name reaches the client.
func testRename(t *testing.T, e *Env) {
	const user = "rn_bob"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	populate(t, e, c, user,
		harness.Contact{JID: "carl@example.test", Name: "Carl"},
		harness.Contact{JID: "dora@example.test", Name: "Dora", Groups: []string{"G"}})

	renamed := []harness.Contact{
		{JID: "carl@example.test", Name: "Carl Renamed"},
		{JID: "dora@example.test", Name: "Dora", Groups: []string{"G"}},
	}
	e.Backend.SetRoster(user, renamed...)
	r := e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 0, 1, 0)
	c.WaitForRoster(t, renamed, pushWait)
}

// testGroupChange: groups are replaced, added and emptied.
func testGroupChange(t *testing.T, e *Env) {
	const user = "grp_carol"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	populate(t, e, c, user,
		harness.Contact{JID: "ed@example.test", Name: "Ed", Groups: []string{"A"}},
		harness.Contact{JID: "flo@example.test", Name: "Flo", Groups: []string{"X", "Y"}},
		harness.Contact{JID: "gus@example.test", Name: "Gus", Groups: []string{"Same"}})

	changed := []harness.Contact{
		{JID: "ed@example.test", Name: "Ed", Groups: []string{"B", "C"}},
		{JID: "flo@example.test", Name: "Flo"},
		{JID: "gus@example.test", Name: "Gus", Groups: []string{"Same"}},
	}
	e.Backend.SetRoster(user, changed...)
	r := e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 0, 2, 0)
	c.WaitForRoster(t, changed, pushWait)
}

// testRemoval: contacts the backend dropped disappear, down to none.
func testRemoval(t *testing.T, e *Env) {
	const user = "rm_dave"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	populate(t, e, c, user,
		harness.Contact{JID: "hal@example.test", Name: "Hal"},
		harness.Contact{JID: "ivy@example.test", Name: "Ivy"},
		harness.Contact{JID: "jon@example.test", Name: "Jon"})

	e.Backend.SetRoster(user, harness.Contact{JID: "hal@example.test", Name: "Hal"})
	r := e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 0, 0, 2)
	c.WaitForRoster(t, []harness.Contact{{JID: "hal@example.test", Name: "Hal"}}, pushWait)

	e.Backend.SetRoster(user) // {}
	r = e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 0, 0, 1)
	c.WaitForRoster(t, nil, pushWait)
}

// testOfflineUser: rosters of users who are not logged in are written too,
// and seen at the next login.
func testOfflineUser(t *testing.T, e *Env) {
	const user = "off_erin"
	e.Users(t, user)
	v1 := []harness.Contact{
		{JID: "kim@example.test", Name: "Kim", Groups: []string{"Friends"}},
		{JID: "lou@example.test", Name: "Lou"},
	}
	e.Backend.SetRoster(user, v1...)
	r := e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 2, 0, 0)

	c := Login(t, e.Server, user)
	c.WaitForRoster(t, v1, 0)
	c.Close()

	v2 := []harness.Contact{{JID: "kim@example.test", Name: "Kim K.", Groups: []string{"Friends", "Work"}}}
	e.Backend.SetRoster(user, v2...)
	r = e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 0, 1, 1)
	c = Login(t, e.Server, user)
	c.WaitForRoster(t, v2, 0)
}

// testBackendError returns a scenario where the backend fails for one user
// with reply: that user's roster stays as it was and is counted in
// errors, while another user in the same request is updated.
func testBackendError(prefix string, reply harness.Reply) func(t *testing.T, e *Env) {
	return func(t *testing.T, e *Env) {
		bad, good := prefix+"_bad", prefix+"_good"
		e.Users(t, bad, good)
		c := Login(t, e.Server, bad)
		v1 := []harness.Contact{{JID: "max@example.test", Name: "Max", Groups: []string{"Friends"}}}
		populate(t, e, c, bad, v1...)
		e.Backend.SetRoster(good, harness.Contact{JID: "ned@example.test", Name: "Ned"})

		e.Backend.Set(bad, reply)
		n := c.Pushes()
		r, raw := e.Admin.Refresh(t, bad, good)
		if r.Updated != 1 || r.Errors != 1 || r.Status != "ok" {
			t.Errorf("want status ok, updated 1, errors 1; got %s", raw.Body)
		}
		if res := r.Result(t, bad); res.Status != "error" || res.Error == "" {
			t.Errorf("%s: want status error with a reason, got %+v", bad, res)
		}
		expectCounts(t, r, good, 1, 0, 0)

		// Every requested roster failed: the overall status is error.
		r, raw = e.Admin.Refresh(t, bad)
		if r.Updated != 0 || r.Errors != 1 || r.Status != "error" {
			t.Errorf("want status error, updated 0, errors 1; got %s", raw.Body)
		}
		c.AssertRosterStays(t, n, v1, quiet)
	}
}

// testBackendTimeout: a backend slower than ROSTER_SIDECAR_BACKEND_TIMEOUT
// is an error for that user, reported without waiting for the backend.
func testBackendTimeout(t *testing.T, e *Env) {
	const user = "slow_fay"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{{JID: "ola@example.test", Name: "Ola"}}
	populate(t, e, c, user, v1...)

	delay := 3 * backendTimeout
	e.Backend.Set(user, harness.Reply{Contacts: []harness.Contact{{JID: "pat@example.test"}}, Delay: delay})
	n := c.Pushes()
	r, raw := e.Admin.Refresh(t, user)
	if r.Errors != 1 || r.Updated != 0 {
		t.Errorf("want errors 1, updated 0; got %s", raw.Body)
	}
	if raw.Elapsed >= delay-backendTimeout {
		t.Errorf("refresh took %v: the backend timeout is %v, the backend answers after %v", raw.Elapsed, backendTimeout, delay)
	}
	c.AssertRosterStays(t, n, v1, quiet)
}

// testInvalidContactJID: contacts whose JID is invalid are skipped and
// reported, promptly (servers never answer a SET with a malformed JID, so
// sending one would hang until the IQ timeout); the valid ones apply.
func testInvalidContactJID(t *testing.T, e *Env) {
	const user = "inv_gina"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	valid := []harness.Contact{
		{JID: "quinn@example.test", Name: "Quinn"},
		{JID: "rita@example.test", Name: "Rita", Groups: []string{"Friends"}},
	}
	invalid := []string{"a@b@c", "@x"}
	all := append([]harness.Contact(nil), valid...)
	for _, j := range invalid {
		all = append(all, harness.Contact{JID: j, Name: "Invalid"})
	}
	e.Backend.SetRoster(user, all...)

	r, raw := e.Admin.Refresh(t, user)
	if limit := iqTimeout / 2; raw.Elapsed > limit {
		t.Errorf("refresh took %v, want under %v (IQ timeout %v): was an invalid JID sent to the server?", raw.Elapsed, limit, iqTimeout)
	}
	for _, j := range invalid {
		if !strings.Contains(raw.Body, j) {
			t.Errorf("the answer does not report the invalid contact %q: %s", j, raw.Body)
		}
	}
	if res := r.Result(t, user); res.Added != len(valid) {
		t.Errorf("%s: want %d added, got %+v", user, len(valid), res)
	}
	c.WaitForRoster(t, valid, pushWait)
}

// testURLEscaping: usernames are percent-encoded as a path segment in the
// backend URL, and their rosters are applied.
func testURLEscaping(t *testing.T, e *Env) {
	users := map[string]string{ // username -> escaped path
		"hash#tag": harness.BackendPrefix + "hash%23tag",
		"q?mark":   harness.BackendPrefix + "q%3Fmark",
	}
	for u := range users {
		e.Users(t, u)
	}
	for u, path := range users {
		contacts := []harness.Contact{{JID: "sam@example.test", Name: "Sam for " + u}}
		e.Backend.SetRoster(u, contacts...)
		r := e.Admin.RefreshOK(t, u)
		expectCounts(t, r, u, 1, 0, 0)
		reqs := e.Backend.Requests(u)
		if len(reqs) != 1 || reqs[0].EscapedPath != path {
			t.Errorf("%s: backend requests %+v, want one for %s", u, reqs, path)
		}
		Login(t, e.Server, u).WaitForRoster(t, contacts, 0)
	}
}

// testDuplicateUsers: a user named twice is refreshed once.
func testDuplicateUsers(t *testing.T, e *Env) {
	const user = "dup_hank"
	e.Users(t, user)
	e.Backend.SetRoster(user, harness.Contact{JID: "tom@example.test", Name: "Tom"})
	r, raw := e.Admin.Refresh(t, user, user)
	if r.Updated != 1 || r.Errors != 0 || len(r.Results) != 1 {
		t.Errorf("want updated 1, errors 0, one result; got %s", raw.Body)
	}
	if n := len(e.Backend.Requests(user)); n != 1 {
		t.Errorf("backend got %d requests for %s, want 1", n, user)
	}
}

// testEmptyArray: [] answers at once with nothing done.
func testEmptyArray(t *testing.T, e *Env) {
	before := len(e.Backend.Requests(""))
	r, raw := e.Admin.Refresh(t)
	if r.Status != "ok" || r.Updated != 0 || r.Errors != 0 || len(r.Results) != 0 {
		t.Errorf("want status ok, updated 0, errors 0, no results; got %s", raw.Body)
	}
	if raw.Elapsed > time.Second {
		t.Errorf("empty refresh took %v", raw.Elapsed)
	}
	if after := len(e.Backend.Requests("")); after != before {
		t.Errorf("the backend got %d requests", after-before)
	}
}

// testUnauthenticated: with a token configured, a refresh without it or
// with a wrong one is refused with 401 JSON and changes nothing.
func testUnauthenticated(t *testing.T, e *Env) {
	const user = "auth_ivan"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{{JID: "uma@example.test", Name: "Uma"}}
	populate(t, e, c, user, v1...)
	e.Backend.SetRoster(user, harness.Contact{JID: "vic@example.test", Name: "Vic"})
	before := len(e.Backend.Requests(user))
	n := c.Pushes()

	for _, token := range []string{"", "wrong-" + adminToken} {
		raw := e.Admin.WithToken(token).RefreshRaw(t, user)
		if raw.Status != 401 {
			t.Errorf("token %q: status %d, want 401: %s", token, raw.Status, raw.Body)
		}
		if !strings.Contains(raw.Body, `"status"`) || !strings.Contains(raw.Body, `"error"`) {
			t.Errorf("token %q: want a JSON error body, got %q", token, raw.Body)
		}
	}
	if after := len(e.Backend.Requests(user)); after != before {
		t.Errorf("the backend got %d requests for %s", after-before, user)
	}
	c.AssertRosterStays(t, n, v1, quiet)
}

// testLinkStaysUp restarts the sidecar with a short XEP-0199 ping interval
// and checks that the pings keep the component link up: no reconnection
// for several ping periods plus an IQ timeout, /readyz 200 throughout, and
// refreshes still work. It relies on the sidecar logging "connected to XMPP
// server" at each connection and "XMPP connection lost" at each loss.
func testLinkStaysUp(t *testing.T, e *Env) {
	e.Sidecar.Stop(10 * time.Second)
	sc := e.StartSidecar(t, sidecarOptions(linkPing))
	mark := len(sc.Output())

	ready := harness.HTTPCheck(sc.Admin.BaseURL+"/readyz", http.Header{"Authorization": {"Bearer " + adminToken}}, http.StatusOK)
	for deadline := time.Now().Add(3*linkPing + iqTimeout); time.Now().Before(deadline); {
		if err := ready(); err != nil {
			t.Errorf("/readyz: %v", err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	sc.Alive(t)
	out := sc.Output()[mark:]
	if n := strings.Count(out, "connected to XMPP server"); n != 0 || strings.Contains(out, "XMPP connection lost") {
		t.Errorf("the component link dropped while pinging every %v (%d reconnections):\n%s", linkPing, n, out)
	}

	const user = "link_judy"
	e.Users(t, user)
	populate(t, e, Login(t, e.Server, user), user, harness.Contact{JID: "walt@example.test", Name: "Walt"})
}
