package rostersync

import (
	"context"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// Change is one roster change a sync would make.
type Change struct {
	// JID is the contact's bare JID: normalised, or for a removal as the
	// server spells it.
	JID string
	// Want is the item a sync would write; zero for a removal.
	Want roster.Item
	// Have is the item the server holds now; zero for an addition.
	Have roster.Item
	// Fields names what differs in an update: FieldName, FieldGroups,
	// FieldSubscription (whether or not subscriptions are compared: the
	// write carries the backend's subscription either way).
	Fields []string
}

// Preview is what a sync of one user would change, found without writing
// anything.
type Preview struct {
	// User names the user as Result.User does.
	User string
	// Add, Update and Remove are the writes a sync would make, as Diff
	// plans them.
	Add, Update, Remove []Change
	// SubscriptionOnly holds the items that differ only in subscription
	// while the subscription handling is CompareAuto and not yet learnt
	// (learning needs a write, which a preview never makes). A sync
	// rewrites them on a server that stores subscriptions (Prosody); on one
	// that does not (ejabberd) it writes at most one of them per process,
	// to learn that, and they stay different. They are not in Update.
	SubscriptionOnly []Change
	// Skipped lists backend contacts that would not be applied.
	Skipped []rosterhttp.Skipped
}

// Changes is the number of writes a sync would make, SubscriptionOnly
// excluded.
func (p Preview) Changes() int { return len(p.Add) + len(p.Update) + len(p.Remove) }

// Preview reads the user's roster from the backend and from the server and
// returns what Sync would change, writing nothing. It does not wait for a
// running sync of the same user.
func (s *Syncer) Preview(ctx context.Context, user string) (Preview, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	u, err := s.parseUser(user)
	if err != nil {
		return Preview{User: user}, err
	}
	p := Preview{User: s.name(u)}
	_, desired, current, err := s.read(ctx, u)
	p.Skipped = desired.Skipped
	if err != nil {
		return p, err
	}
	compare, known := s.compareSubscription()
	unsure := !known
	if unsure {
		compare = false
	}
	have := make(map[string]roster.Item, len(current))
	for _, it := range current {
		have[contactKey(it.JID)] = it
	}
	want := make(map[string]roster.Item, len(desired.Items))
	for _, it := range desired.Items {
		want[it.JID] = it
	}
	update := func(item roster.Item) Change {
		got := have[contactKey(item.JID)]
		return Change{JID: item.JID, Want: item, Have: got, Fields: differences(got, want[item.JID], true)}
	}
	plan := holdSkipped(Diff(desired.Items, current, compare), desired.Skipped)
	for _, it := range plan.Add {
		p.Add = append(p.Add, Change{JID: it.JID, Want: it})
	}
	updated := make(map[string]bool, len(plan.Update))
	for _, it := range plan.Update {
		p.Update = append(p.Update, update(it))
		updated[it.JID] = true
	}
	for _, it := range plan.Remove {
		p.Remove = append(p.Remove, Change{JID: it.JID, Have: it})
	}
	if unsure {
		for _, it := range Diff(desired.Items, current, true).Update {
			if !updated[it.JID] {
				p.SubscriptionOnly = append(p.SubscriptionOnly, update(it))
			}
		}
	}
	return p, nil
}
