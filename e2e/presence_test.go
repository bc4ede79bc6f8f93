//go:build e2e

package e2e

import (
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/e2e/harness"
)

// presenceWatch is how long testPresenceAfterBoth watches for presence that
// the servers were measured not to send.
const presenceWatch = 3 * time.Second

// helperPresenceBound is how soon after a refresh starts the users it
// makes contacts see each other with the Prosody helper (issue 12: within a
// second).
const helperPresenceBound = time.Second

// testPresenceAfterBoth measures, in XEP-0356 mode, what two online users
// see once the backend makes them contacts with subscription both and one
// refresh writes both rosters: the roster push arrives at once. With
// roster-sidecar's Prosody helper (mod_roster_sidecar, server.PresenceHelper)
// each receives the other's available presence at once, exactly once.
// Without it no presence is exchanged: the component may not send presence
// for users, and neither server sends any on a privileged roster write
// (Prosody's mod_privilege saves the roster and pushes the item; ejabberd
// stores subscription none). On Prosody, where "both" is stored, the
// contact's next presence broadcast (a status change, a new login) gets
// through at once; on ejabberd nothing ever does (use ejabberd_api.url).
// The README's compatibility table states these results.
func testPresenceAfterBoth(t *testing.T, e *Env) {
	const a, b = "pres_amy", "pres_bo"
	e.Users(t, a, b)
	ca, cb := Login(t, e.Server, a), Login(t, e.Server, b)
	aWants := []harness.Contact{{JID: b + "@example.test", Name: "Bo"}}
	bWants := []harness.Contact{{JID: a + "@example.test", Name: "Amy"}}
	e.Backend.SetRoster(a, aWants...)
	e.Backend.SetRoster(b, bWants...)
	na, nb := ca.PresenceCount(), cb.PresenceCount()
	start := time.Now()
	e.Admin.RefreshOK(t, a, b)
	ca.WaitForRoster(t, aWants, pushWait)
	cb.WaitForRoster(t, bWants, pushWait)
	t.Logf("%s: both rosters pushed %v after the refresh started", e.Server.Name, time.Since(start).Round(time.Millisecond))

	if e.Server.PresenceHelper {
		pa := ca.WaitForPresence(t, na, cb.JID, "", pushWait)
		pb := cb.WaitForPresence(t, nb, ca.JID, "", pushWait)
		t.Logf("%s (helper): available presence %v (%s) and %v (%s) after the refresh started", e.Server.Name,
			pa.At.Sub(start).Round(time.Millisecond), a, pb.At.Sub(start).Round(time.Millisecond), b)
		within(t, b+"'s presence at "+a, pa.At.Sub(start), helperPresenceBound)
		within(t, a+"'s presence at "+b, pb.At.Sub(start), helperPresenceBound)
		time.Sleep(quiet)
		if got := ca.PresencesFrom(na, cb.JID, ""); len(got) != 1 {
			t.Errorf("%s got %d available presences from %s, want exactly 1: %v", a, len(got), b, got)
		}
		if got := cb.PresencesFrom(nb, ca.JID, ""); len(got) != 1 {
			t.Errorf("%s got %d available presences from %s, want exactly 1: %v", b, len(got), a, got)
		}
	} else {
		time.Sleep(presenceWatch)
		t.Logf("%s: presences within %v of the refresh: %s got %v, %s got %v",
			e.Server.Name, presenceWatch, a, ca.Presences(na), b, cb.Presences(nb))
		if got := append(ca.PresencesFrom(na, cb.JID, ""), cb.PresencesFrom(nb, ca.JID, "")...); len(got) != 0 {
			t.Errorf("%s: a contact's presence arrived after a privileged roster write (%v): the README says it does not, update it", e.Server.Name, got)
		}
	}

	// The contact's next presence broadcast: a status change.
	na = ca.PresenceCount()
	sent := time.Now()
	cb.SendPresence(t, jid.JID{}, "")
	if e.Server.HonoursSubscription {
		p := ca.WaitForPresence(t, na, cb.JID, "", pushWait)
		t.Logf("%s: %s's status change reached %s after %v", e.Server.Name, b, a, p.At.Sub(sent).Round(time.Millisecond))
	} else {
		time.Sleep(quiet)
		if got := ca.PresencesFrom(na, cb.JID, ""); len(got) != 0 {
			t.Errorf("%s: %s's status change reached %s although the item is stored with subscription none", e.Server.Name, b, a)
		}
	}

	// The contact's next login.
	cb.Close()
	na = ca.PresenceCount()
	sent = time.Now()
	cb = Login(t, e.Server, b)
	if e.Server.HonoursSubscription {
		p := ca.WaitForPresence(t, na, cb.JID, "", pushWait)
		t.Logf("%s: %s's new login reached %s after %v", e.Server.Name, b, a, p.At.Sub(sent).Round(time.Millisecond))
		// And the new session probed a: it sees a at once.
		cb.WaitForPresence(t, 0, ca.JID, "", pushWait)
	} else {
		time.Sleep(quiet)
		if got := ca.PresencesFrom(na, cb.JID, ""); len(got) != 0 {
			t.Errorf("%s: %s's login reached %s although the item is stored with subscription none", e.Server.Name, b, a)
		}
	}
}

// within fails t when d, the time until what happened, exceeds bound.
func within(t testing.TB, what string, d, bound time.Duration) {
	t.Helper()
	if d > bound {
		t.Errorf("%s after %v, want within %v", what, d.Round(time.Millisecond), bound)
	}
}
