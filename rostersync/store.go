// Package rostersync is the sync engine: it brings users' rosters on the
// XMPP server in line with the backend. For each user it fetches the desired
// roster (Fetcher), reads the current one (Store), diffs them and applies
// the difference, one item per write. Syncs of one user never overlap and
// requests that arrive meanwhile share one further sync (Syncer); logins
// seen in forwarded presence are turned into rate-limited refreshes
// (LoginRefresher); Preview shows what a sync would change without writing.
// One Syncer serves the users of several domains, each user keyed by bare
// JID (domains.go).
//
// It knows neither XMPP nor HTTP: the XEP-0356 link (package component) and
// ejabberd's HTTP API (package ejabberdapi) are Stores, the backend client
// (package rosterhttp) is the Fetcher.
package rostersync

import (
	"context"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// Fetcher gets a user's desired roster from the backend.
type Fetcher interface {
	Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error)
}

// Store reads and writes users' rosters on the XMPP server. owner is the
// user's bare JID.
type Store interface {
	// Roster returns the items of owner's roster.
	Roster(ctx context.Context, owner string) ([]roster.Item, error)
	// Put adds item to owner's roster or replaces the item of that JID.
	Put(ctx context.Context, owner string, item roster.Item) error
	// Remove deletes the item of contact (as the store spells it) from
	// owner's roster.
	Remove(ctx context.Context, owner, contact string) error
}

// Link tells whether the rosters of a domain can be read and written now.
type Link interface {
	// Ready returns nil when they can, else an error that says why not.
	Ready(domain string) error
	// Changed returns a channel that is closed at the next change of
	// readiness, for waiting without polling.
	Changed() <-chan struct{}
}

// Result is the outcome of bringing one user's roster in line with the
// backend.
type Result struct {
	// User names the user: its normalised localpart on the default domain,
	// its bare JID (localpart@domain) on another.
	User string
	// Domain is the user's domain, normalised; empty when the domain is
	// not served.
	Domain string
	// Added, Updated and Removed count the roster items changed on the
	// server.
	Added, Updated, Removed int
	// Probed and ProbesFailed count the presence probes sent, and not
	// sent for a failure, for contacts whose item gained a subscription
	// "to" (only on a PresenceProber store, and only while the user is
	// online).
	Probed, ProbesFailed int
	// Skipped lists backend contacts that were not applied (invalid JIDs);
	// empty when the backend answered 304 (NotModified).
	Skipped []rosterhttp.Skipped
	// NotModified is set when the backend answered 304 Not Modified: its
	// roster is the one the last sync of the user brought in.
	NotModified bool
	// Read says how the server roster was read: ReadFull, ReadUnchanged or
	// ReadSkipped (the two where nothing was written: a successful no-op),
	// or "" when it was not (the sync failed first).
	Read string
	// Err is nil when the roster now equals the backend's.
	Err error
}
