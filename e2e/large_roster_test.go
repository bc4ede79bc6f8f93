//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// largeSyncTimeout is the sync.timeout of TestLargeRosterPastSyncTimeout,
// well below the time its population takes.
const largeSyncTimeout = 5 * time.Second

// largePastTimeout is the roster it populates: on Prosody without the
// helper every item is a SET that loads and saves the whole roster, so the
// population takes clearly longer than largeSyncTimeout (logged).
const largePastTimeout = 1500

// TestLargeRosterPastSyncTimeout populates a roster item by item (Prosody
// without the helper) in one refresh that takes several times
// sync.timeout: the writes are bounded by their progress, not by a
// whole-sync deadline, so the refresh adds every contact without error,
// and the next refresh is a quick no-op.
func TestLargeRosterPastSyncTimeout(t *testing.T) {
	// In turn: the population is CPU-bound on the server, and Prosody
	// answers the SETs of the window in bursts, so two at once on a small
	// machine could stall a burst past the short sync.timeout.
	s := servers{only: []string{"prosody", "prosody012"}, inTurn: true, start: harness.ServerOptions{ProsodyNoHelper: true}}
	runPerServer(t, s, func(t *testing.T, e *Env) {
		if e.Server.PresenceHelper {
			t.Fatal("the Prosody runner loaded the helper")
		}
		opts := sidecarOptions(mainPing)
		opts.Env = append(opts.Env, "ROSTER_SIDECAR_SYNC_TIMEOUT="+largeSyncTimeout.String())
		e.StartSidecar(t, opts)
		e.run(t, []Scenario{{"populate_past_timeout", testPopulatePastTimeout}})
	})
}

func testPopulatePastTimeout(t *testing.T, e *Env) {
	const user = "past_timeout"
	e.Users(t, user)
	contacts := make([]harness.Contact, largePastTimeout)
	for i := range contacts {
		contacts[i] = harness.Contact{JID: fmt.Sprintf("many%04d@example.test", i), Name: fmt.Sprintf("Contact %d", i), Groups: []string{"Many"}}
	}
	e.Backend.SetRoster(user, contacts...)
	r, raw := e.Admin.Refresh(t, user)
	expectCounts(t, r, user, largePastTimeout, 0, 0)
	if r.Errors != 0 {
		t.Errorf("refresh: %d errors: %s", r.Errors, raw.Body)
	}
	t.Logf("%s: populated %d contacts item by item in %v with sync.timeout %v", e.Server.Name, largePastTimeout,
		raw.Elapsed.Round(time.Millisecond), largeSyncTimeout)
	if raw.Elapsed < 2*largeSyncTimeout {
		t.Errorf("the population took %v, not clearly longer than sync.timeout %v: raise largePastTimeout", raw.Elapsed, largeSyncTimeout)
	}

	c := Login(t, e.Server, user)
	c.WaitForRoster(t, contacts, pushWait)

	r, raw = e.Admin.Refresh(t, user)
	expectCounts(t, r, user, 0, 0, 0)
	t.Logf("%s: the following refresh, a no-op, took %v", e.Server.Name, raw.Elapsed.Round(time.Millisecond))
	if raw.Elapsed > largeSyncTimeout {
		t.Errorf("the no-op refresh took %v, more than sync.timeout %v", raw.Elapsed, largeSyncTimeout)
	}
}
