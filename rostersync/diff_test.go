package rostersync

import (
	"encoding/json"
	"encoding/xml"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
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

// serverStore returns the roster an XMPP server holds after the writes of
// Diff(desired, nil): each JID as its stringprep stores it (roster.FoldJID,
// checked against Prosody's and ejabberd's in package roster), names and
// groups as they come back through XML (xmlRoundTrip), groups as a set, the
// last write of a JID winning. With keepSub the subscription is stored
// (Prosody), else none (ejabberd).
func serverStore(t testing.TB, desired []roster.Item, keepSub, escapeSpace bool) []roster.Item {
	var stored []roster.Item
	at := map[string]int{}
	for _, it := range Diff(desired, nil, true).Add {
		s := roster.Item{JID: roster.FoldJID(it.JID), Name: xmlRoundTrip(t, it.Name, true, escapeSpace)}
		for _, g := range it.Groups {
			g = xmlRoundTrip(t, g, false, escapeSpace)
			if !slices.Contains(s.Groups, g) {
				s.Groups = append(s.Groups, g)
			}
		}
		if keepSub {
			s.Subscription = it.Subscription
		}
		if i, ok := at[s.JID]; ok {
			stored[i] = s
			continue
		}
		at[s.JID] = len(stored)
		stored = append(stored, s)
	}
	return stored
}

// xmlRoundTrip returns what the sidecar reads back of s after a roster SET
// carried it to a server as an attribute (a name) or as character data (a
// group): escaped as the SET encoder escapes it (as encoding/xml does),
// parsed by the server, written back with only the markup characters
// escaped (Prosody, and ejabberd for groups) or, with escapeSpace, white
// space too (ejabberd for names), and parsed by encoding/xml.
func xmlRoundTrip(t testing.TB, s string, attr, escapeSpace bool) string {
	t.Helper()
	var out struct {
		Name  string `xml:"name,attr"`
		Group string `xml:"group"`
	}
	wrap := func(v string) []byte {
		if attr {
			return []byte(`<item name="` + v + `"/>`)
		}
		return []byte("<item><group>" + v + "</group></item>")
	}
	var sent strings.Builder
	if err := xml.EscapeText(&sent, []byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(wrap(sent.String()), &out); err != nil {
		t.Fatal(err)
	}
	v := out.Group
	if attr {
		v = out.Name
	}
	pairs := []string{"&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;"}
	if escapeSpace {
		pairs = append(pairs, "\t", "&#9;", "\n", "&#10;", "\r", "&#13;")
	}
	out.Name, out.Group = "", ""
	if err := xml.Unmarshal(wrap(strings.NewReplacer(pairs...).Replace(v)), &out); err != nil {
		t.Fatal(err)
	}
	if attr {
		return out.Name
	}
	return out.Group
}

func TestDiffConverges(t *testing.T) {
	body := `{"straße@example.test": {"name": "x\u0001y", "groups": ["g\ufffeh", "c\r\nd"]},
	          "σς@example.test": {"name": "a\rb"}, "a@straße.test": {}, "strasse@x.test": {}, "STRASSE@x.test": {},
	          "ᾳ@example.test": {"groups": ["c\rd", "c\nd"]}, "ok@example.test": {"name": "` + "\xff" + `"}}`
	desired, err := rosterhttp.Parse([]byte(body), jid.MustParse("john@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range []struct {
		name                 string
		keepSub, escapeSpace bool
	}{{"prosody", true, false}, {"ejabberd", false, true}} {
		current := serverStore(t, desired.Items, server.keepSub, server.escapeSpace)
		if p := Diff(desired.Items, current, server.keepSub); p.Len() != 0 {
			t.Errorf("%s: second sync plans %+v for server roster %+v", server.name, p, current)
		}
	}
}

// FuzzDiffConverges checks that a second sync changes nothing, whatever
// the contacts' JIDs, names and groups: Diff(desired, what the server
// stored of desired) is empty, on a server that stores subscriptions and
// on one that does not.
func FuzzDiffConverges(f *testing.F) {
	for _, seed := range [][4]string{
		{"a@x", "b@x", "A", "G"},
		{"straße@example.test", "strasse@example.test", "x\u0001y", "g\ufffeh"},
		{"σς@x", "ΣΣ@x", "a\r\nb", "c\rd"},
		{"a@straße.x", "ᾳ@x", "\xff", "c\nd"},
		{"JUDY@Example.TEST", "judy@example.test.", "\t", "\r"},
		{"\u00ad@x", "a\u200d@x", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	owner := jid.MustParse("john@example.test")
	f.Fuzz(func(t *testing.T, jid1, jid2, name, group string) {
		body, err := json.Marshal(map[string]any{
			jid1: map[string]any{"name": name, "groups": []string{group, name, group + name}},
			jid2: map[string]any{"name": group, "groups": map[string]int{name: 1}, "subscription": "to"},
		})
		if err != nil {
			t.Fatal(err)
		}
		desired, err := rosterhttp.Parse(body, owner)
		if err != nil {
			t.Fatal(err)
		}
		for _, server := range []struct{ keepSub, escapeSpace bool }{{true, false}, {false, true}} {
			current := serverStore(t, desired.Items, server.keepSub, server.escapeSpace)
			if p := Diff(desired.Items, current, server.keepSub); p.Len() != 0 {
				t.Fatalf("second sync plans %+v for server roster %+v (stores subscriptions: %v)", p, current, server.keepSub)
			}
		}
	})
}
