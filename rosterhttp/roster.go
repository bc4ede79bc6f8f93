// Package rosterhttp fetches users' rosters from the application backend over
// HTTP and validates them (PROTOCOL.md section 1).
package rosterhttp

import "roster-sidecar/roster"

// Skipped is a contact of the backend's answer that was not applied.
type Skipped struct {
	// JID is the key as the backend sent it.
	JID string `json:"jid"`
	// Reason says why it was skipped.
	Reason string `json:"reason"`
	// Contact is the contact's normalised JID when the key is one (and not
	// the user's own): a sync leaves the user's item for it as it is.
	Contact string `json:"-"`
}

// Roster is a user's desired roster as the backend described it.
type Roster struct {
	// Items are the valid contacts, sorted by JID, unique by JID.
	Items []roster.Item
	// Skipped are the contacts that were rejected, sorted by JID.
	Skipped []Skipped
	// NotModified is set, and nothing else, when the backend answered 304
	// Not Modified to Client.FetchChanged: its roster is still the one of
	// the user's last answer fetched that way.
	NotModified bool
	// Validated is set when Client.FetchChanged remembered the answer's
	// validators: a later FetchChanged may get NotModified.
	Validated bool
}
