//go:build e2e

package e2e

import (
	"testing"
	"time"

	"mellium.im/xmpp/jid"
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
		{"friend_online_after_push_in_every_order", testAPIFriendOnlineEveryOrder},
		{"one_way_from_sees_no_presence", testAPIOneWayFrom},
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

// quietPair is onlinePair for tests that choose the order of the syncs:
// it refreshes both users once more, so that the refreshes their logins
// asked for have run (a refresh waits for a sync running before it) or are
// skipped (synced less than loginMinInterval ago) before the test changes
// the backend.
func quietPair(t *testing.T, e *Env, a, b string) (*Client, *Client) {
	t.Helper()
	ca, cb := onlinePair(t, e, a, b)
	e.Admin.RefreshOK(t, a, b)
	return ca, cb
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

// testAPIFriendOnlineEveryOrder: two online users become friends through
// the backend, refreshed in one request, the friend first, or the user
// first (fresh users each time). Each client must receive an available
// presence of the other AFTER the roster push that added the other: a
// client such as Converse.js drops presence from a JID not in its roster.
// ejabberd sends presence on a gained "from" only, so in the order where a
// user's item gains "to" last, that presence comes from the sidecar's probe
// (ejabberdapi.Client.ProbePresence).
func testAPIFriendOnlineEveryOrder(t *testing.T, e *Env) {
	for _, order := range []struct {
		name    string
		refresh func(u, f string)
	}{
		{"one-request", func(u, f string) { e.Admin.RefreshOK(t, u, f) }},
		{"friend-first", func(u, f string) { e.Admin.RefreshOK(t, f); e.Admin.RefreshOK(t, u) }},
		{"user-first", func(u, f string) { e.Admin.RefreshOK(t, u); e.Admin.RefreshOK(t, f) }},
	} {
		t.Run(order.name, func(t *testing.T) {
			u, f := "ord_u_"+order.name[:3], "ord_f_"+order.name[:3]
			cu, cf := quietPair(t, e, u, f)
			uWants := []harness.Contact{{JID: cf.JID.String(), Name: "Friend " + f}}
			fWants := []harness.Contact{{JID: cu.JID.String(), Name: "Friend " + u}}
			nu, nf, pu, pf := cu.Pushes(), cf.Pushes(), cu.PresenceCount(), cf.PresenceCount()
			e.Backend.SetRoster(u, uWants...)
			e.Backend.SetRoster(f, fWants...)
			start := time.Now()
			order.refresh(u, f)
			cu.WaitForRoster(t, uWants, pushWait)
			cf.WaitForRoster(t, fWants, pushWait)
			pushU, presU := presenceAfterPush(t, cu, nu, pu, cf.JID)
			pushF, presF := presenceAfterPush(t, cf, nf, pf, cu.JID)
			t.Logf("%s: %s got the push at %v and %s's presence at %v; %s got the push at %v and %s's presence at %v (after the refresh started)",
				order.name, u, pushU.Sub(start).Round(time.Millisecond), f, presU.At.Sub(start).Round(time.Millisecond),
				f, pushF.Sub(start).Round(time.Millisecond), u, presF.At.Sub(start).Round(time.Millisecond))
		})
	}
}

// presenceAfterPush waits until c has received, after its first nPres
// presences, an available presence from from that arrived no earlier than
// the first roster push (after the first nPush) adding from. It returns
// when that push and that presence arrived.
func presenceAfterPush(t *testing.T, c *Client, nPush, nPres int, from jid.JID) (time.Time, PresenceEvent) {
	t.Helper()
	pushAt, ok := c.PushedAt(nPush, from)
	if !ok {
		t.Fatalf("%s: no roster push of %s", c.JID, from)
	}
	deadline := time.Now().Add(pushWait)
	for {
		for _, p := range c.PresencesFrom(nPres, from, "") {
			if !p.At.Before(pushAt) {
				return pushAt, p
			}
		}
		if time.Now().After(deadline) {
			var at []string
			for _, p := range c.Presences(nPres) {
				at = append(at, p.String()+" at "+p.At.Sub(pushAt).String()+" from the push")
			}
			t.Fatalf("%s: no available presence from %s after the roster push that added it, within %v; presences: %v",
				c.JID, from, pushWait, at)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// testAPIOneWayFrom: amy's item for ben has "from" (ben sees amy), ben's
// item for amy has "to". Amy's roster first, then ben's: ben's item gains
// "to", so the sidecar probes amy for ben and ben receives amy's presence
// after his push; amy, who is not subscribed to ben, receives no presence
// of ben, neither from the writes nor from any probe.
func testAPIOneWayFrom(t *testing.T, e *Env) {
	const a, b = "oneway_amy", "oneway_ben"
	ca, cb := quietPair(t, e, a, b)
	aWants := []harness.Contact{{JID: cb.JID.String(), Name: "Ben", Subscription: "from"}}
	bWants := []harness.Contact{{JID: ca.JID.String(), Name: "Amy", Subscription: "to"}}
	pa, nb, pb := ca.PresenceCount(), cb.Pushes(), cb.PresenceCount()
	e.Backend.SetRoster(a, aWants...)
	e.Backend.SetRoster(b, bWants...)
	e.Admin.RefreshOK(t, a)
	ca.WaitForRoster(t, aWants, pushWait)
	e.Admin.RefreshOK(t, b)
	cb.WaitForRoster(t, bWants, pushWait)
	presenceAfterPush(t, cb, nb, pb, ca.JID)
	// A refresh of both again writes nothing; then a while for stray
	// presence.
	e.Admin.RefreshOK(t, a, b)
	time.Sleep(2 * quiet)
	if got := ca.PresencesFrom(pa, cb.JID, ""); len(got) > 0 {
		t.Fatalf("%s received %s's presence with only a \"from\" item: %v", a, b, got)
	}
}
