package rostersync

import (
	"context"

	"mellium.im/xmpp/jid"

	"roster-sidecar/rosterhttp"
)

// Push is Sync with the desired roster given instead of fetched: the
// backend sent it (PROTOCOL.md, push mode), already parsed with the
// backend's limits. The sync reads the current roster and applies the
// difference exactly as a refresh does; the backend is not asked.
//
// A push joins the user's queue as Sync does, and the latest request to
// arrive decides what the queued sync applies: while a sync of user runs,
// a push makes the sync queued after it apply desired, also when a refresh
// queued it (that refresh is answered with the push's result), and a
// refresh that arrives after a push still queued makes that sync fetch
// again (the pushed roster is dropped: the backend's answer is at least as
// new). Every request waiting for the queued sync gets its result.
func (s *Syncer) Push(ctx context.Context, user string, desired rosterhttp.Roster) Result {
	return s.wait(ctx, user, s.enqueue(user, false, &desired))
}

// pushedKey is the context key of the roster a sync applies instead of
// fetching one.
type pushedKey struct{}

// withPushed returns ctx carrying pushed, or ctx when pushed is nil.
func withPushed(ctx context.Context, pushed *rosterhttp.Roster) context.Context {
	if pushed == nil {
		return ctx
	}
	return context.WithValue(ctx, pushedKey{}, pushed)
}

// pushedOr is the Fetcher of a Syncer: within a sync that applies a push it
// answers the pushed roster, otherwise it asks next. It does not embed next,
// so that a method added to Fetcher has to be added here too, and cannot
// bypass a push.
//
// A fetch that can answer "unchanged since the last answer" (a 304 to an
// ETag) must not let a sync skip its work for a user whose roster a push
// changed since that answer: the roster on the server is the push's then.
type pushedOr struct{ next Fetcher }

func (f pushedOr) Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	if r, ok := ctx.Value(pushedKey{}).(*rosterhttp.Roster); ok {
		return *r, nil
	}
	return f.next.Fetch(ctx, owner)
}
