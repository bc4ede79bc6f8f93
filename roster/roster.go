// Package roster holds the project's roster vocabulary: one item of a
// user's contact list, as the backend describes it and as a roster store
// (the XMPP server through XEP-0356, or ejabberd's HTTP API) holds it, and
// the form in which servers compare contacts' JIDs (FoldJID). It depends on
// no other package of the project (only on golang.org/x/text), so that
// every other package can share it.
package roster

// Subscription states a roster item may carry (RFC 6121).
const (
	SubscriptionBoth = "both"
	SubscriptionTo   = "to"
	SubscriptionFrom = "from"
	SubscriptionNone = "none"
)

// Item is one contact of a user's roster.
type Item struct {
	// JID is the contact's bare JID. Items from the backend carry it in
	// PRECIS-normalised form; items read from a server as the server
	// spells it.
	JID string
	// Name is the display name; empty means none.
	Name string
	// Groups are the groups the contact is in; nil means none. Items from
	// the backend carry them de-duplicated and sorted.
	Groups []string
	// Subscription is one of the Subscription* constants; empty (from a
	// server) means none.
	Subscription string
	// Ask is "subscribe" when a subscription request is pending (read
	// from a server only; never written).
	Ask string
}

// SubscriptionOrNone returns the item's subscription, "none" when empty.
func (it Item) SubscriptionOrNone() string {
	if it.Subscription == "" {
		return SubscriptionNone
	}
	return it.Subscription
}
