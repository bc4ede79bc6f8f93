package rostersync

import (
	"context"
	"log/slog"

	"roster-sidecar/roster"
)

// PresenceProber is a Store on which a write that gives the user a
// subscription "to" a contact does not bring the contact's presence to the
// user's clients (ejabberd's HTTP API, package ejabberdapi: the server sends
// presence on a gained "from" only). After a sync's writes the Syncer asks
// it to probe the presence of the contacts whose item gained "to", so that
// online friends appear online at once whichever of the two rosters was
// written first.
type PresenceProber interface {
	Store
	// ProbePresence asks the server to send owner's online clients the
	// current presence of each of contacts (as the writes spelt them),
	// where the contact's roster allows it. It returns how many probes were
	// sent (fewer, with no error, when there is no one to answer: owner
	// has no session online), and an error when some could not be sent.
	ProbePresence(ctx context.Context, owner string, contacts []string) (sent int, err error)
}

// hasTo reports whether a subscription lets the user see the contact's
// presence.
func hasTo(sub string) bool {
	return sub == roster.SubscriptionTo || sub == roster.SubscriptionBoth
}

// gainedTo returns the JIDs of the items written (put successfully) that
// have a subscription "to" or "both" where the user's roster before the
// sync (current) had neither: the item was missing, or its subscription
// was "none" or "from".
func gainedTo(current, written []roster.Item) []string {
	had := make(map[string]bool, len(current))
	for _, it := range current {
		if hasTo(it.Subscription) {
			had[contactKey(it.JID)] = true
		}
	}
	var out []string
	for _, it := range written {
		if hasTo(it.Subscription) && !had[contactKey(it.JID)] {
			out = append(out, it.JID)
		}
	}
	return out
}

// probePresence sends presence probes, through a store that is a
// PresenceProber, for the items of written that gained "to" over current
// (gainedTo), and counts them in res. A failure is logged and counted, and
// does not fail the sync: the roster is in line, only presence may show
// late.
func (s *Syncer) probePresence(ctx context.Context, owner string, current, written []roster.Item, res *Result) {
	pp, ok := s.store.(PresenceProber)
	if !ok || len(written) == 0 {
		return
	}
	contacts := gainedTo(current, written)
	if len(contacts) == 0 {
		return
	}
	sent, err := pp.ProbePresence(ctx, owner, contacts)
	res.Probed += sent
	if err == nil {
		return
	}
	res.ProbesFailed += len(contacts) - sent
	// Warned once per process (e.g. send_stanza missing from the API
	// permissions would fail every sync), then logged at debug level.
	level := slog.LevelDebug
	if s.probeWarned.CompareAndSwap(false, true) {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "presence probes failed: the user's clients may show these contacts offline until they change status "+
		"(further failures are logged at debug level)", "user", owner, "failed", len(contacts)-sent, "of", len(contacts), "error", err)
}
