package rosterhttp

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/roster"
)

// marshalItem is the <item/> of a roster SET as encoding/xml writes it,
// which the SET encoder matches byte for byte (component's
// TestAppendRosterSetMatchesMarshal).
func marshalItem(t testing.TB, it roster.Item) []byte {
	t.Helper()
	out, err := xml.Marshal(stanza.RosterItem{Jid: it.JID, Name: it.Name, Subscription: it.Subscription, Groups: it.Groups})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestItemBytes(t *testing.T) {
	for _, it := range []roster.Item{
		{JID: "a@b"},
		{JID: "a@b", Name: "N", Subscription: "to", Groups: []string{"G1", "G2"}},
		{JID: `q"uo'te@x`, Name: `<&>"'` + "\t\n\r", Groups: []string{"a<b>&c", `"'`, ""}},
		{JID: "ctl@x", Name: "nul\x00 bell\x07 esc\x1b del\x7f", Groups: []string{"\x01"}},
		{JID: "bad@x", Name: "invalid \xff\xfe utf-8 \xc3", Groups: []string{"\xed\xa0\x80 surrogate"}},
		{JID: "uni@x", Name: "José 日本 🙂 \ufffd \ufffe \uffff", Groups: []string{"Ωmega", "\U0010FFFF"}},
	} {
		if got, want := itemBytes(it), len(marshalItem(t, it)); got != want {
			t.Errorf("itemBytes(%+v) = %d, want %d: %s", it, got, want, marshalItem(t, it))
		}
	}
}

func FuzzItemBytes(f *testing.F) {
	f.Add("a@b", "Name", "both", "Group", "")
	f.Add(`q"'@x`, "<&>\t\n\r\x00", "", "\xff\xfe", "\uffff")
	f.Fuzz(func(t *testing.T, jid, name, sub, g1, g2 string) {
		it := roster.Item{JID: jid, Name: name, Subscription: sub, Groups: []string{g1, g2}}
		if got, want := itemBytes(it), len(marshalItem(t, it)); got != want {
			t.Fatalf("itemBytes(%+v) = %d, want %d", it, got, want)
		}
	})
}

func TestParseLimits(t *testing.T) {
	small := Limits{MaxNameBytes: 5, MaxGroupBytes: 4, MaxGroups: 2, MaxItems: 6, MaxItemBytes: 200}
	body := `{
		"name5@x": {"name": "Marie"}, "name6@x": {"name": "Marie!"}, "zoe@x": {"name": "Zoë\u0001"},
		"groups2@x": {"groups": ["a", "b", "a", ""]}, "groups3@x": {"groups": ["a", "b", "c"]},
		"group5@x": {"groups": ["abcde"]}}`
	r, err := small.Parse([]byte(body), testOwner)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"name6@x":   "name is 6 bytes, more than the limit of 5",
		"zoe@x":     "name is 7 bytes, more than the limit of 5", // Zoë and U+FFFD
		"groups3@x": "in 3 groups, more than the limit of 2",
		"group5@x":  `group "abcde" is 5 bytes, more than the limit of 4`,
	}
	checkSkipped(t, r, want)
	if len(r.Items) != 2 || r.Items[0].JID != "groups2@x" || r.Items[1].JID != "name5@x" {
		t.Errorf("items %+v", r.Items)
	}

	// The item as XML: escaping counts.
	it := roster.Item{JID: "esc@x", Name: `"&"`, Groups: []string{"<>"}, Subscription: "both"}
	size := len(marshalItem(t, it))
	for _, limit := range []int{size, size - 1} {
		l := Limits{MaxItemBytes: limit}
		r, err := l.Parse([]byte(`{"esc@x": {"name": "\"&\"", "groups": ["<>"]}}`), testOwner)
		if err != nil {
			t.Fatal(err)
		}
		if limit == size && len(r.Items) != 1 {
			t.Errorf("item of %d bytes refused at the limit: %+v", size, r)
		}
		if limit < size {
			checkSkipped(t, r, map[string]string{"esc@x": fmt.Sprintf("its roster item is %d bytes as XML, more than the limit of %d", size, limit)})
		}
	}
}

func checkSkipped(t *testing.T, r Roster, want map[string]string) {
	t.Helper()
	if len(r.Skipped) != len(want) {
		t.Errorf("skipped %+v, want %d", r.Skipped, len(want))
	}
	for _, s := range r.Skipped {
		if w, ok := want[s.JID]; !ok || s.Reason != w {
			t.Errorf("skip of %q: %q, want %q", s.JID, s.Reason, w)
		}
	}
}

// TestParseTooManyContacts: an answer over the limit fails as a whole, so
// that the roster is left alone.
func TestParseTooManyContacts(t *testing.T) {
	l := Limits{MaxItems: 2}
	if r, err := l.Parse([]byte(`{"a@x": {}, "b@x": {}}`), testOwner); err != nil || len(r.Items) != 2 {
		t.Fatalf("at the limit: %+v, %v", r, err)
	}
	r, err := l.Parse([]byte(`{"a@x": {}, "b@x": {}, "bad": 1}`), testOwner)
	var tooMany *TooManyContactsError
	if !errors.As(err, &tooMany) || tooMany.Count != 3 || tooMany.Limit != 2 || r.Items != nil || r.Skipped != nil {
		t.Fatalf("over the limit: %+v, %v", r, err)
	}
	if want := "backend answer lists 3 contacts, more than the limit of 2"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestParseDefaultLimits(t *testing.T) {
	contacts := map[string]any{
		"name-ok@x":     map[string]any{"name": strings.Repeat("n", DefaultMaxNameBytes)},
		"name-long@x":   map[string]any{"name": strings.Repeat("n", DefaultMaxNameBytes+1)},
		"group-ok@x":    map[string]any{"groups": []string{strings.Repeat("g", DefaultMaxGroupBytes)}},
		"group-long@x":  map[string]any{"groups": []string{strings.Repeat("g", DefaultMaxGroupBytes+1)}},
		"groups-ok@x":   map[string]any{"groups": groupNames(DefaultMaxGroups, 1)},
		"groups-many@x": map[string]any{"groups": groupNames(DefaultMaxGroups+1, 1)},
		// Within each limit, but over the SET size once escaped.
		"item-big@x": map[string]any{"name": strings.Repeat(`"`, DefaultMaxNameBytes), "groups": groupNames(DefaultMaxGroups/2, DefaultMaxGroupBytes)},
	}
	body, err := json.Marshal(contacts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(body, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 3 {
		t.Errorf("items %d, want 3", len(r.Items))
	}
	for _, s := range r.Skipped {
		if !strings.HasSuffix(s.JID, "-long@x") && s.JID != "groups-many@x" && s.JID != "item-big@x" {
			t.Errorf("skipped %q: %s", s.JID, s.Reason)
		}
		if s.JID == "item-big@x" && !strings.HasPrefix(s.Reason, "its roster item is ") {
			t.Errorf("skipped %q: %s", s.JID, s.Reason)
		}
	}

	many := make(map[string]any, DefaultMaxItems+1)
	for i := range DefaultMaxItems + 1 {
		many[fmt.Sprintf("c%d@x", i)] = nil
	}
	body, _ = json.Marshal(many)
	if _, err := Parse(body, testOwner); !errors.As(err, new(*TooManyContactsError)) {
		t.Errorf("%d contacts: %v", len(many), err)
	}
	delete(many, "c0@x")
	body, _ = json.Marshal(many)
	if r, err := Parse(body, testOwner); err != nil || len(r.Items) != DefaultMaxItems {
		t.Errorf("%d contacts: %d items, %v", len(many), len(r.Items), err)
	}
}

// groupNames returns n distinct group names of size bytes (at least 3).
func groupNames(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%03d", i) + strings.Repeat("x", max(0, size-3))
	}
	return out
}

func TestParseNegativeLimit(t *testing.T) {
	for _, l := range []Limits{{MaxNameBytes: -1}, {MaxGroupBytes: -1}, {MaxGroups: -1}, {MaxItems: -1}, {MaxItemBytes: -1}} {
		if _, err := l.Parse([]byte(`{}`), testOwner); err == nil || !strings.Contains(err.Error(), "-1 is negative") {
			t.Errorf("%+v: %v", l, err)
		}
	}
}
