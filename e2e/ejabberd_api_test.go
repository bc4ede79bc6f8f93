//go:build e2e

package e2e

import (
	"testing"
	"time"

	"mellium.im/xmpp/stanza"

	"roster-sidecar/e2e/harness"
)

// TestEjabberdAPIMode runs the sidecar against ejabberd 24.12 with
// ejabberd_api.url set: rosters are read and written through ejabberd's
// HTTP API (get_roster, add_rosteritem, delete_rosteritem), which stores
// subscriptions and sends the presence they allow, while the component
// connection serves readiness and login presence. It means something on
// ejabberd only: TestEjabberdAPIMode/ejabberd/<scenario>.
func TestEjabberdAPIMode(t *testing.T) {
	runPerServer(t, servers{only: []string{"ejabberd"}}, testAPIMode)
}

func testAPIMode(t *testing.T, e *Env) {
	srv := e.Server
	ensureAPIAccount(t, srv)
	// In this mode subscriptions are stored: the clients compare them.
	api := *srv
	api.HonoursSubscription = true
	e.Server = &api
	apiEnv := []string{
		"ROSTER_SIDECAR_EJABBERD_API_URL=" + srv.APIURL,
		"ROSTER_SIDECAR_EJABBERD_API_USER=" + apiAccount + "@" + srv.Domain,
		"ROSTER_SIDECAR_EJABBERD_API_PASSWORD=" + apiPassword,
	}
	// check proves the API settings (before serve: it connects as the
	// component too), and names what to fix when the password is wrong.
	requireSidecar(t)
	srv.CreateUsers(t, "api_check")
	e.Backend.SetRoster("api_check")
	env := append(harness.SidecarEnv(&api, e.Backend), apiEnv...)
	runCommand(t, env, 0, []string{"check", "--user", "api_check"},
		"api:        ok: get_roster of api_check@example.test answered through "+srv.APIURL+" (0 items)\n",
		"ready:      ok: the component may read and write the rosters of example.test\n")
	runCommand(t, append(env, "ROSTER_SIDECAR_EJABBERD_API_PASSWORD=wrong"), 1, []string{"check", "--user", "api_check"},
		"api:        FAIL: read roster of api_check@example.test: ejabberd API get_roster: HTTP 40",
		"(check ejabberd_api.user/password and the api_permissions rule for the sidecar)\n")
	e.StartSidecar(t, loginOptions(apiEnv...))
	e.run(t, []Scenario{
		{"friends_see_each_other_then_unfriend", testAPIFriendsPresence},
		{"pair_converges_in_any_order", testAPIPairConverges},
		{"client_unsubscribed_reverted", testAPIClientUnsubscribedReverted},
		{"login_refresh", testChangedWhileOffline},
		{"client_roster_edit_refused", testClientRosterEditRefused},
	})
}

// onlinePair registers a and b with empty rosters in the backend and logs
// both in.
func onlinePair(t *testing.T, e *Env, a, b string) (*Client, *Client) {
	t.Helper()
	e.Users(t, a, b)
	e.Backend.SetRoster(a)
	e.Backend.SetRoster(b)
	return Login(t, e.Server, a), Login(t, e.Server, b)
}

// befriend makes a and b contacts with subscription both through the
// backend and one refresh of both, and waits for the pushes.
func befriend(t *testing.T, e *Env, ca, cb *Client) {
	t.Helper()
	a, b := ca.JID.Localpart(), cb.JID.Localpart()
	aWants := []harness.Contact{{JID: cb.JID.String(), Name: "Friend " + b}}
	bWants := []harness.Contact{{JID: ca.JID.String(), Name: "Friend " + a}}
	e.Backend.SetRoster(a, aWants...)
	e.Backend.SetRoster(b, bWants...)
	e.Admin.RefreshOK(t, a, b)
	ca.WaitForRoster(t, aWants, pushWait)
	cb.WaitForRoster(t, bWants, pushWait)
}

// testAPIFriendsPresence: alice and bob are online; the backend makes them
// friends; one refresh of ["alice","bob"]; each client receives the other's
// available presence without logging in again. The backend unfriends them;
// one refresh; each sees the other go unavailable and the item disappear.
func testAPIFriendsPresence(t *testing.T, e *Env) {
	const a, b = "api_alice", "api_bob"
	ca, cb := onlinePair(t, e, a, b)
	na, nb := ca.PresenceCount(), cb.PresenceCount()
	start := time.Now()
	befriend(t, e, ca, cb)
	pa := ca.WaitForPresence(t, na, cb.JID, "", pushWait)
	pb := cb.WaitForPresence(t, nb, ca.JID, "", pushWait)
	t.Logf("available presence %v (%s) and %v (%s) after the refresh started",
		pa.At.Sub(start).Round(time.Millisecond), a, pb.At.Sub(start).Round(time.Millisecond), b)

	na, nb = ca.PresenceCount(), cb.PresenceCount()
	e.Backend.SetRoster(a)
	e.Backend.SetRoster(b)
	start = time.Now()
	r := e.Admin.RefreshOK(t, a, b)
	expectCounts(t, r, a, 0, 0, 1)
	expectCounts(t, r, b, 0, 0, 1)
	pa = ca.WaitForPresence(t, na, cb.JID, "unavailable", pushWait)
	pb = cb.WaitForPresence(t, nb, ca.JID, "unavailable", pushWait)
	ca.WaitForRoster(t, nil, pushWait)
	cb.WaitForRoster(t, nil, pushWait)
	t.Logf("unavailable presence %v (%s) and %v (%s) after the refresh started",
		pa.At.Sub(start).Round(time.Millisecond), a, pb.At.Sub(start).Round(time.Millisecond), b)
}

// testAPIPairConverges: delete_rosteritem would rewrite the contact's item
// (it sends unsubscribe/unsubscribed); the sidecar clears the subscription
// first, so each sync changes one roster only. The backend drops bob from
// alice's roster but keeps alice in bob's: after refreshing both, in one
// request (concurrently) or one after the other in either order, both
// rosters equal the backend.
func testAPIPairConverges(t *testing.T, e *Env) {
	const a, b = "pair_ann", "pair_ben"
	ca, cb := onlinePair(t, e, a, b)
	bKeeps := []harness.Contact{{JID: ca.JID.String(), Name: "Friend " + a}}
	for _, order := range [][]string{{a, b}, {b, a}, nil} {
		befriend(t, e, ca, cb)
		e.Backend.SetRoster(a)
		e.Backend.SetRoster(b, bKeeps...)
		if order == nil {
			e.Admin.RefreshOK(t, a, b) // concurrently
		} else {
			e.Admin.RefreshOK(t, order[0])
			e.Admin.RefreshOK(t, order[1])
		}
		ca.WaitForRoster(t, nil, pushWait)
		cb.WaitForRoster(t, bKeeps, pushWait)
	}
}

// testAPIClientUnsubscribedReverted: ejabberd refuses a user's subscription
// stanzas for the user's own roster but still delivers them, and the
// contact's server applies them: bob's unsubscribed turns alice's item for
// him from both into from. The next refresh of alice puts both back.
func testAPIClientUnsubscribedReverted(t *testing.T, e *Env) {
	const a, b = "unsub_amy", "unsub_bob"
	ca, cb := onlinePair(t, e, a, b)
	befriend(t, e, ca, cb)
	cb.SendPresence(t, ca.JID, stanza.UnsubscribedPresence)
	changed := []harness.Contact{{JID: cb.JID.String(), Name: "Friend " + b, Subscription: "from"}}
	ca.WaitForRoster(t, changed, pushWait)
	r := e.Admin.RefreshOK(t, a)
	expectCounts(t, r, a, 0, 1, 0)
	ca.WaitForRoster(t, []harness.Contact{{JID: cb.JID.String(), Name: "Friend " + b}}, pushWait)
	cb.WaitForRoster(t, []harness.Contact{{JID: ca.JID.String(), Name: "Friend " + a}}, pushWait)
}
