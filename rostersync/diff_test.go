package rostersync

import (
	"slices"
	"strconv"
	"testing"

	"roster-sidecar/roster"
)

func TestDiff(t *testing.T) {
	marie := roster.Item{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "both"}
	tests := []struct {
		name       string
		desired    []roster.Item
		current    []roster.Item
		compareSub bool
		add, upd   []string
		remove     []string
	}{
		{name: "empty to empty"},
		{name: "first population", desired: []roster.Item{marie}, add: []string{"marie@example.test"}},
		{name: "unchanged", desired: []roster.Item{marie}, compareSub: true,
			current: []roster.Item{{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "both"}}},
		{name: "rename", desired: []roster.Item{marie},
			current: []roster.Item{{JID: "marie@example.test", Name: "Mary", Groups: []string{"Friends"}}},
			upd:     []string{"marie@example.test"}},
		{name: "group change", desired: []roster.Item{marie},
			current: []roster.Item{{JID: "marie@example.test", Name: "Marie", Groups: []string{"Work"}}},
			upd:     []string{"marie@example.test"}},
		{name: "groups compared as sets", desired: []roster.Item{{JID: "a@x.test", Groups: []string{"A", "B"}, Subscription: "both"}},
			current: []roster.Item{{JID: "a@x.test", Groups: []string{"B", "A", "A", ""}}}},
		{name: "group removed", desired: []roster.Item{{JID: "a@x.test", Subscription: "both"}},
			current: []roster.Item{{JID: "a@x.test", Groups: []string{"A"}}},
			upd:     []string{"a@x.test"}},
		{name: "subscription compared where honoured", compareSub: true, desired: []roster.Item{marie},
			current: []roster.Item{{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "none"}},
			upd:     []string{"marie@example.test"}},
		{name: "subscription ignored where the server ignores it", desired: []roster.Item{marie},
			current: []roster.Item{{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "none"}}},
		{name: "missing subscription is none", compareSub: true, desired: []roster.Item{{JID: "a@x.test", Subscription: "none"}},
			current: []roster.Item{{JID: "a@x.test"}}},
		{name: "removal", current: []roster.Item{{JID: "old@example.test"}}, remove: []string{"old@example.test"}},
		{name: "server spelling is normalised", desired: []roster.Item{{JID: "judy@example.test", Subscription: "both"}},
			current: []roster.Item{{JID: "JUDY@Example.TEST"}}},
		{name: "unparsable current item is removed as spelt", current: []roster.Item{{JID: "a@b@c"}}, remove: []string{"a@b@c"}},
		// The servers store a JID as their stringprep makes it.
		{name: "server's nodeprep of ß is the contact", compareSub: true,
			desired: []roster.Item{{JID: "straße@example.test", Name: "S", Groups: []string{"G"}, Subscription: "both"}},
			current: []roster.Item{{JID: "strasse@example.test", Name: "S", Groups: []string{"G"}, Subscription: "both"}}},
		{name: "server's nodeprep of final sigma is the contact", desired: []roster.Item{{JID: "σς@example.test", Subscription: "both"}},
			current: []roster.Item{{JID: "σσ@example.test"}}},
		{name: "server's nameprep of ß is the contact", desired: []roster.Item{{JID: "a@straße.test", Subscription: "both"}},
			current: []roster.Item{{JID: "a@strasse.test"}}},
		{name: "server's form is updated under the desired JID", desired: []roster.Item{{JID: "straße@example.test", Name: "New", Subscription: "both"}},
			current: []roster.Item{{JID: "strasse@example.test", Name: "Old"}},
			upd:     []string{"straße@example.test"}},
		{name: "contacts the server merges are written once",
			desired: []roster.Item{{JID: "strasse@example.test", Subscription: "both"}, {JID: "straße@example.test", Subscription: "both"}},
			add:     []string{"strasse@example.test"}},
		{name: "contacts the server merges match once",
			desired: []roster.Item{{JID: "strasse@example.test", Name: "A", Subscription: "both"}, {JID: "straße@example.test", Name: "B", Subscription: "both"}},
			current: []roster.Item{{JID: "strasse@example.test", Name: "A"}}},
		{name: "every stale spelling is removed", current: []roster.Item{{JID: "old@example.test"}, {JID: "OLD@example.test"}},
			remove: []string{"old@example.test", "OLD@example.test"}},
		{name: "mixed", desired: []roster.Item{marie, {JID: "new@example.test", Subscription: "both"}},
			current: []roster.Item{{JID: "marie@example.test", Name: "M"}, {JID: "gone@example.test"}},
			add:     []string{"new@example.test"}, upd: []string{"marie@example.test"}, remove: []string{"gone@example.test"}},
	}
	jids := func(items []roster.Item) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.JID)
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
			for _, it := range append(p.Add, p.Update...) {
				if it.Subscription == "" || it.Subscription == "remove" {
					t.Errorf("write of %s has subscription %q", it.JID, it.Subscription)
				}
			}
		})
	}
}

func TestDiffUpdateCarriesWholeItem(t *testing.T) {
	want := roster.Item{JID: "a@x.test", Name: "A", Groups: []string{"G1", "G2"}, Subscription: "to"}
	p := Diff([]roster.Item{want}, []roster.Item{{JID: "a@x.test", Name: "old"}}, true)
	if len(p.Update) != 1 {
		t.Fatalf("plan %+v", p)
	}
	got := p.Update[0]
	if got.Name != "A" || !slices.Equal(got.Groups, want.Groups) || got.Subscription != "to" {
		t.Fatalf("update = %+v, want the whole desired item", got)
	}
}

func BenchmarkDiff1000(b *testing.B) {
	var desired []roster.Item
	var current []roster.Item
	for i := range 1000 {
		j := "contact" + strconv.Itoa(i) + "@example.test"
		desired = append(desired, roster.Item{JID: j, Name: "N", Groups: []string{"G"}, Subscription: "both"})
		current = append(current, roster.Item{JID: j, Name: "N", Groups: []string{"G"}, Subscription: "both"})
	}
	b.ReportAllocs()
	for b.Loop() {
		if p := Diff(desired, current, true); p.Len() != 0 {
			b.Fatal("unexpected changes")
		}
	}
}
