package component

import (
	"bytes"
	"encoding/xml"
	"testing"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/roster"
)

// marshalRosterSet encodes a roster SET the way the library's Send does.
// The item's Ask is never sent.
func marshalRosterSet(t testing.TB, id, from, to string, it roster.Item) []byte {
	t.Helper()
	iq := &stanza.IQ{
		XMLName: xml.Name{Local: "iq"},
		Attrs:   stanza.Attrs{Type: stanza.IQTypeSet, To: to},
		Payload: &stanza.RosterItems{XMLName: xml.Name{Space: stanza.NSRoster, Local: "query"}},
	}
	item := stanza.RosterItem{XMLName: xml.Name{Space: stanza.NSRoster, Local: "item"}, Jid: it.JID, Name: it.Name, Subscription: it.Subscription, Groups: it.Groups}
	iq.Payload.(*stanza.RosterItems).Items = []stanza.RosterItem{item}
	iq.Id, iq.From = id, from
	out, err := xml.Marshal(iq)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendRosterSetMatchesMarshal(t *testing.T) {
	items := []roster.Item{
		benchItem,
		{JID: "a@b", Subscription: "remove"},
		{JID: "a@b"},
		{JID: "", Name: "", Groups: []string{""}},
		{JID: "a@b", Ask: "subscribe", Name: "N", Subscription: "to", Groups: []string{"G1", "G2", "G1"}},
		{JID: `q"uo'te@x`, Name: `<&>"'` + "\t\n\r", Groups: []string{"a<b>&c", `"'`}},
		{JID: "ctl@x", Name: "nul\x00 bell\x07 esc\x1b del\x7f", Groups: []string{"\x01"}},
		{JID: "bad@x", Name: "invalid \xff\xfe utf-8 \xc3", Groups: []string{"\xed\xa0\x80 surrogate"}},
		{JID: "uni@x", Name: "José 日本 🙂 \ufffd \ufffe \uffff", Groups: []string{"Ωmega", "\U0010FFFF"}},
	}
	for _, it := range items {
		got := appendRosterSet(nil, "rs1-2", "roster.example.test", "john@example.test", it)
		want := marshalRosterSet(t, "rs1-2", "roster.example.test", "john@example.test", it)
		if !bytes.Equal(got, want) {
			t.Errorf("item %+v:\n got %s\nwant %s", it, got, want)
		}
	}
	// Appends to what the buffer holds.
	if got := appendRosterSet([]byte("x"), "i", "f", "t", benchItem); !bytes.HasPrefix(got, []byte("x<iq ")) {
		t.Errorf("does not append: %s", got)
	}
}

func FuzzAppendRosterSet(f *testing.F) {
	f.Add("contact@example.test", "", "Contact", "both", "Friends", "john@example.test")
	f.Add(`a"b'c@x`, "subscribe", "<&>\t\n\r", "remove", "\xff\x00", "\xed\xa0\x80")
	f.Fuzz(func(t *testing.T, jid, ask, name, sub, group, to string) {
		it := roster.Item{JID: jid, Ask: ask, Name: name, Subscription: sub}
		if group != "" {
			it.Groups = []string{group, ""}
		}
		got := appendRosterSet(nil, "rs1-2", "roster.example.test", to, it)
		want := marshalRosterSet(t, "rs1-2", "roster.example.test", to, it)
		if !bytes.Equal(got, want) {
			t.Errorf("item %+v to %q:\n got %s\nwant %s", it, to, got, want)
		}
	})
}
