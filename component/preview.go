package component

import (
	"context"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/rosterhttp"
)

// Change is one roster change a sync would make.
type Change struct {
	// JID is the contact's bare JID: normalised, or for a removal as the
	// server spells it.
	JID string
	// Want is the item a sync would write; zero for a removal.
	Want stanza.RosterItem
	// Have is the item the server holds now; zero for an addition.
	Have stanza.RosterItem
	// Fields names what differs in an update: FieldName, FieldGroups,
	// FieldSubscription (whether or not subscriptions are compared: the SET
	// carries the backend's subscription either way).
	Fields []string
}

// Preview is what a sync of one user would change, found without writing
// anything.
type Preview struct {
	// User is the normalised localpart.
	User string
	// Add, Update and Remove are the SETs a sync would send, as Diff plans
	// them.
	Add, Update, Remove []Change
	// SubscriptionOnly holds the items that differ only in subscription
	// while the subscription handling is CompareAuto and not yet learnt
	// (learning needs a write, which a preview never makes). A sync
	// rewrites them on a server that stores subscriptions (Prosody); on one
	// that does not (ejabberd) it rewrites them only until its first
	// read-back, and they stay different. They are not in Update.
	SubscriptionOnly []Change
	// Skipped lists backend contacts that would not be applied.
	Skipped []rosterhttp.Skipped
}

// Changes is the number of SETs a sync would send, SubscriptionOnly
// excluded.
func (p Preview) Changes() int { return len(p.Add) + len(p.Update) + len(p.Remove) }

// Preview reads the user's roster from the backend and from the server and
// returns what Sync would change, sending no SET. It does not wait for a
// running sync of the same user.
func (s *Syncer) Preview(ctx context.Context, user string) (Preview, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	p := Preview{User: user}
	_, desired, current, err := s.read(ctx, user)
	p.Skipped = desired.Skipped
	if err != nil {
		return p, err
	}
	compare, known := s.compareSubscription()
	unsure := !known && s.cfg.CompareSubscription != CompareAlways && s.cfg.CompareSubscription != CompareNever
	if unsure {
		compare = false
	}
	have := make(map[string]stanza.RosterItem, len(current))
	for _, it := range current {
		have[normaliseJID(it.Jid)] = it
	}
	want := make(map[string]rosterhttp.Item, len(desired.Items))
	for _, it := range desired.Items {
		want[it.JID] = it
	}
	update := func(item stanza.RosterItem) Change {
		got := have[item.Jid]
		return Change{JID: item.Jid, Want: item, Have: got, Fields: differences(got, want[item.Jid], true)}
	}
	plan := Diff(desired.Items, current, compare)
	for _, it := range plan.Add {
		p.Add = append(p.Add, Change{JID: it.Jid, Want: it})
	}
	updated := make(map[string]bool, len(plan.Update))
	for _, it := range plan.Update {
		p.Update = append(p.Update, update(it))
		updated[it.Jid] = true
	}
	for _, it := range plan.Remove {
		p.Remove = append(p.Remove, Change{JID: it.Jid, Have: have[normaliseJID(it.Jid)]})
	}
	if unsure {
		for _, it := range Diff(desired.Items, current, true).Update {
			if !updated[it.Jid] {
				p.SubscriptionOnly = append(p.SubscriptionOnly, update(it))
			}
		}
	}
	return p, nil
}
