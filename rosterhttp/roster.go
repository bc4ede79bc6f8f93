// Package rosterhttp fetches users' rosters from the application backend over
// HTTP and validates them (PROTOCOL.md section 1).
package rosterhttp

// Subscription states a roster item may carry (RFC 6121).
const (
	SubscriptionBoth = "both"
	SubscriptionTo   = "to"
	SubscriptionFrom = "from"
	SubscriptionNone = "none"
)

// Item is one validated contact of a roster: the desired state of one
// roster item.
type Item struct {
	// JID is the contact's bare JID in PRECIS-normalised form.
	JID string
	// Name is the display name; empty means none.
	Name string
	// Groups is the set of groups, de-duplicated and sorted; nil means none.
	Groups []string
	// Subscription is one of the Subscription* constants.
	Subscription string
}

// Skipped is a contact of the backend's answer that was not applied.
type Skipped struct {
	// JID is the key as the backend sent it.
	JID string `json:"jid"`
	// Reason says why it was skipped.
	Reason string `json:"reason"`
}

// Roster is a user's desired roster as the backend described it.
type Roster struct {
	// Items are the valid contacts, sorted by JID, unique by JID.
	Items []Item
	// Skipped are the contacts that were rejected, sorted by JID.
	Skipped []Skipped
}
