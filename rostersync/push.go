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
	u, err := s.parseUser(user)
	if err != nil {
		return Result{User: user, Err: err}
	}
	return s.wait(ctx, u, s.enqueue(u, false, &desired))
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

// pushedRoster returns the roster pushed for the sync of ctx, if any.
func pushedRoster(ctx context.Context) (*rosterhttp.Roster, bool) {
	r, ok := ctx.Value(pushedKey{}).(*rosterhttp.Roster)
	return r, ok
}

// fetch returns the pushed roster of the sync of ctx, or fetches the
// desired roster from the backend.
func (s *Syncer) fetchDesired(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	if r, ok := pushedRoster(ctx); ok {
		return *r, nil
	}
	return s.fetch.Fetch(ctx, owner)
}
