package component

import (
	"slices"
	"strconv"
	"testing"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/rosterhttp"
)

func TestDiff(t *testing.T) {
	marie := rosterhttp.Item{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "both"}
	tests := []struct {
		name       string
		desired    []rosterhttp.Item
		current    []stanza.RosterItem
		compareSub bool
		add, upd   []string
		remove     []string
	}{
		{name: "empty to empty"},
		{name: "first population", desired: []rosterhttp.Item{marie}, add: []string{"marie@example.test"}},
		{name: "unchanged", desired: []rosterhttp.Item{marie}, compareSub: true,
			current: []stanza.RosterItem{{Jid: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "both"}}},
		{name: "rename", desired: []rosterhttp.Item{marie},
			current: []stanza.RosterItem{{Jid: "marie@example.test", Name: "Mary", Groups: []string{"Friends"}}},
			upd:     []string{"marie@example.test"}},
		{name: "group change", desired: []rosterhttp.Item{marie},
			current: []stanza.RosterItem{{Jid: "marie@example.test", Name: "Marie", Groups: []string{"Work"}}},
			upd:     []string{"marie@example.test"}},
		{name: "groups compared as sets", desired: []rosterhttp.Item{{JID: "a@x.test", Groups: []string{"A", "B"}, Subscription: "both"}},
			current: []stanza.RosterItem{{Jid: "a@x.test", Groups: []string{"B", "A", "A", ""}}}},
		{name: "group removed", desired: []rosterhttp.Item{{JID: "a@x.test", Subscription: "both"}},
			current: []stanza.RosterItem{{Jid: "a@x.test", Groups: []string{"A"}}},
			upd:     []string{"a@x.test"}},
		{name: "subscription compared where honoured", compareSub: true, desired: []rosterhttp.Item{marie},
			current: []stanza.RosterItem{{Jid: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "none"}},
			upd:     []string{"marie@example.test"}},
		{name: "subscription ignored where the server ignores it", desired: []rosterhttp.Item{marie},
			current: []stanza.RosterItem{{Jid: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "none"}}},
		{name: "missing subscription is none", compareSub: true, desired: []rosterhttp.Item{{JID: "a@x.test", Subscription: "none"}},
			current: []stanza.RosterItem{{Jid: "a@x.test"}}},
		{name: "removal", current: []stanza.RosterItem{{Jid: "old@example.test"}}, remove: []string{"old@example.test"}},
		{name: "server spelling is normalised", desired: []rosterhttp.Item{{JID: "judy@example.test", Subscription: "both"}},
			current: []stanza.RosterItem{{Jid: "JUDY@Example.TEST"}}},
		{name: "unparsable current item is removed as spelt", current: []stanza.RosterItem{{Jid: "a@b@c"}}, remove: []string{"a@b@c"}},
		{name: "mixed", desired: []rosterhttp.Item{marie, {JID: "new@example.test", Subscription: "both"}},
			current: []stanza.RosterItem{{Jid: "marie@example.test", Name: "M"}, {Jid: "gone@example.test"}},
			add:     []string{"new@example.test"}, upd: []string{"marie@example.test"}, remove: []string{"gone@example.test"}},
	}
	jids := func(items []stanza.RosterItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.Jid)
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Diff(tt.desired, tt.current, tt.compareSub)
			if !slices.Equal(jids(p.Add), tt.add) || !slices.Equal(jids(p.Update), tt.upd) || !slices.Equal(jids(p.Remove), tt.remove) {
				t.Fatalf("Diff = add %v update %v remove %v; want add %v update %v remove %v",
					jids(p.Add), jids(p.Update), jids(p.Remove), tt.add, tt.upd, tt.remove)
			}
			for _, it := range p.Remove {
				if it.Subscription != "remove" {
					t.Errorf("removal of %s has subscription %q", it.Jid, it.Subscription)
				}
			}
			for _, it := range append(p.Add, p.Update...) {
				if it.Subscription == "" || it.Subscription == "remove" {
					t.Errorf("write of %s has subscription %q", it.Jid, it.Subscription)
				}
			}
		})
	}
}

func TestDiffUpdateCarriesWholeItem(t *testing.T) {
	want := rosterhttp.Item{JID: "a@x.test", Name: "A", Groups: []string{"G1", "G2"}, Subscription: "to"}
	p := Diff([]rosterhttp.Item{want}, []stanza.RosterItem{{Jid: "a@x.test", Name: "old"}}, true)
	if len(p.Update) != 1 {
		t.Fatalf("plan %+v", p)
	}
	got := p.Update[0]
	if got.Name != "A" || !slices.Equal(got.Groups, want.Groups) || got.Subscription != "to" {
		t.Fatalf("update = %+v, want the whole desired item", got)
	}
}

func BenchmarkDiff1000(b *testing.B) {
	var desired []rosterhttp.Item
	var current []stanza.RosterItem
	for i := range 1000 {
		j := "contact" + strconv.Itoa(i) + "@example.test"
		desired = append(desired, rosterhttp.Item{JID: j, Name: "N", Groups: []string{"G"}, Subscription: "both"})
		current = append(current, stanza.RosterItem{Jid: j, Name: "N", Groups: []string{"G"}, Subscription: "both"})
	}
	b.ReportAllocs()
	for b.Loop() {
		if p := Diff(desired, current, true); p.Len() != 0 {
			b.Fatal("unexpected changes")
		}
	}
}
