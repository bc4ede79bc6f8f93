package rostersync

import (
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// Plan is the set of roster changes that brings a current roster to the
// desired one. Each item is one write.
type Plan struct {
	// Add holds contacts missing from the current roster.
	Add []roster.Item
	// Update holds contacts whose name, groups or (where compared)
	// subscription differ, as they should be.
	Update []roster.Item
	// Remove holds the current items of contacts the backend no longer
	// lists.
	Remove []roster.Item
}

// Len is the number of writes the plan needs.
func (p Plan) Len() int { return len(p.Add) + len(p.Update) + len(p.Remove) }

// Diff computes the changes from current to desired. A server's item is a
// desired contact when their JIDs have the same contactKey: the server
// stores the JID as its stringprep makes it (strasse@ for the backend's
// straße@), and the next sync must not remove and re-add it. Of desired
// items with the same key (one contact on the server) only the first is
// planned. Groups are compared as sets; subscription only when compareSub
// is true (servers that ignore it would otherwise differ forever).
//
// Additions and updates carry the desired item as the backend gave it, JID
// in PRECIS form: the server applies its own preparation to it, so the
// write lands on the item it already holds, and a server that compares
// JIDs in PRECIS form (RFC 7622) gets the contact the backend named.
// Removals carry the server's item, JID as the server spells it: every
// item whose key no desired item has is removed.
func Diff(desired, current []roster.Item, compareSub bool) Plan {
	// have maps a key to the index of the server's item with that key, or
	// to wanted once a desired item has that key.
	const wanted = -1
	keys := make([]string, len(current))
	have := make(map[string]int, len(current))
	for i, it := range current {
		keys[i] = contactKey(it.JID)
		have[keys[i]] = i
	}
	var p Plan
	for _, want := range desired {
		key := contactKey(want.JID)
		i, ok := have[key]
		if i == wanted {
			continue // the server merges it with an earlier desired item
		}
		have[key] = wanted
		item := roster.Item{JID: want.JID, Name: want.Name, Groups: want.Groups, Subscription: want.Subscription}
		if !ok {
			p.Add = append(p.Add, item)
			continue
		}
		if differences(current[i], want, compareSub) != nil {
			p.Update = append(p.Update, item)
		}
	}
	for i, it := range current {
		if have[keys[i]] != wanted {
			p.Remove = append(p.Remove, it)
		}
	}
	return p
}

// Fields of a roster item that a sync compares, as differences names them.
const (
	FieldName         = "name"
	FieldGroups       = "groups"
	FieldSubscription = "subscription"
)

// differences names the fields in which the server's item got differs from
// the desired want: FieldName, FieldGroups and, when compareSub is true,
// FieldSubscription. It is nil when they are equal.
func differences(got, want roster.Item, compareSub bool) []string {
	var fields []string
	if got.Name != want.Name {
		fields = append(fields, FieldName)
	}
	if !sameGroups(got.Groups, want.Groups) {
		fields = append(fields, FieldGroups)
	}
	if compareSub && got.SubscriptionOrNone() != want.Subscription {
		fields = append(fields, FieldSubscription)
	}
	return fields
}

// contactKey returns the form in which Diff matches a JID: the fold
// (roster.FoldJID) of its PRECIS form, or of s itself when it does not
// parse. PRECIS first, so that spellings PRECIS merges (an A-label and its
// U-label, a final dot) stay merged.
func contactKey(s string) string {
	return roster.FoldJID(normaliseJID(s))
}

// normaliseJID returns the PRECIS form of s, or s itself when it does not
// parse (such an item can only be removed, under its own spelling).
func normaliseJID(s string) string {
	if alreadyNormal(s) {
		return s
	}
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	return j.Bare().String()
}

// alreadyNormal reports whether normalising s cannot change it, without
// the cost of PRECIS (most of Diff's time): s holds only lowercase ASCII
// letters, digits, '.', '-', '_' and '@', which PRECIS and IDNA leave
// alone, no "xn--" (an A-label becomes a U-label) and no final '.' (it is
// stripped). Such an s either parses to itself or does not parse, and
// normaliseJID returns s both ways. Servers send JIDs normalised, so this
// is the common case.
func alreadyNormal(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == '@') {
			return false
		}
	}
	return !strings.HasSuffix(s, ".") && !strings.Contains(s, "xn--")
}

// sameGroups compares group lists as sets; want is sorted and unique.
func sameGroups(got, want []string) bool {
	set := make([]string, 0, len(got))
	for _, g := range got {
		if g != "" {
			set = append(set, g)
		}
	}
	slices.Sort(set)
	set = slices.Compact(set)
	return slices.Equal(set, want)
}

// holdSkipped drops from the plan's removals the items of contacts the
// backend listed but that could not be applied (a value of the wrong type,
// a name over its limit ...): the backend still wants them, so the item
// the user has is left as it is rather than removed.
func holdSkipped(p Plan, skipped []rosterhttp.Skipped) Plan {
	if len(skipped) == 0 || len(p.Remove) == 0 {
		return p
	}
	held := make(map[string]bool, len(skipped))
	for _, s := range skipped {
		if s.Contact != "" {
			held[contactKey(s.Contact)] = true
		}
	}
	p.Remove = slices.DeleteFunc(slices.Clone(p.Remove), func(it roster.Item) bool { return held[contactKey(it.JID)] })
	return p
}
