package rostersync

import (
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
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

// Diff computes the changes from current to desired. JIDs are compared in
// normalised form; groups as sets; subscription only when compareSub is
// true (servers that ignore it would otherwise differ forever).
func Diff(desired, current []roster.Item, compareSub bool) Plan {
	have := make(map[string]roster.Item, len(current))
	for _, it := range current {
		have[normaliseJID(it.JID)] = it
	}
	var p Plan
	for _, want := range desired {
		item := roster.Item{JID: want.JID, Name: want.Name, Groups: want.Groups, Subscription: want.Subscription}
		got, ok := have[want.JID]
		if !ok {
			p.Add = append(p.Add, item)
			continue
		}
		delete(have, want.JID)
		if differences(got, want, compareSub) != nil {
			p.Update = append(p.Update, item)
		}
	}
	for _, it := range current {
		if _, stale := have[normaliseJID(it.JID)]; stale {
			p.Remove = append(p.Remove, it)
			delete(have, normaliseJID(it.JID))
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
