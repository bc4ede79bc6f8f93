package component

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"gosrc.io/xmpp/stanza"
	"mellium.im/xmpp/jid"
)

// marshalRosterSet encodes a roster SET the way the library's Send does.
func marshalRosterSet(t testing.TB, id, from, to string, item stanza.RosterItem) []byte {
	t.Helper()
	iq := rosterIQ(stanza.IQTypeSet, to)
	item.XMLName = xml.Name{Space: stanza.NSRoster, Local: "item"}
	iq.Payload.(*stanza.RosterItems).Items = []stanza.RosterItem{item}
	iq.Id, iq.From = id, from
	out, err := xml.Marshal(iq)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendRosterSetMatchesMarshal(t *testing.T) {
	items := []stanza.RosterItem{
		benchItem,
		{Jid: "a@b", Subscription: "remove"},
		{Jid: "a@b"},
		{Jid: "", Name: "", Groups: []string{""}},
		{Jid: "a@b", Ask: "subscribe", Name: "N", Subscription: "to", Groups: []string{"G1", "G2", "G1"}},
		{Jid: `q"uo'te@x`, Name: `<&>"'` + "\t\n\r", Groups: []string{"a<b>&c", `"'`}},
		{Jid: "ctl@x", Name: "nul\x00 bell\x07 esc\x1b del\x7f", Groups: []string{"\x01"}},
		{Jid: "bad@x", Name: "invalid \xff\xfe utf-8 \xc3", Groups: []string{"\xed\xa0\x80 surrogate"}},
		{Jid: "uni@x", Name: "José 日本 🙂 \ufffd \ufffe \uffff", Groups: []string{"Ωmega", "\U0010FFFF"}},
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
		it := stanza.RosterItem{Jid: jid, Ask: ask, Name: name, Subscription: sub}
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

// normaliseJIDSlow is normaliseJID without the fast path.
func normaliseJIDSlow(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	return j.Bare().String()
}

func TestNormaliseJIDFastPath(t *testing.T) {
	for _, s := range []string{
		"a@b", "contact12@example.test", "example.test", "a.b-c_d@e-f.g", "1.2.3.4", "a@1.2.3.4",
		"a@example.test.", "a@xn--caf-dma.test", "xn--a@b", "@b", "a@", "a@@b", "a@b@c", "", ".", "..", "a@.b", "a@b..c",
		"-a@-b-", "a@" + strings.Repeat("x", 1100), strings.Repeat("y", 1100) + "@b", "a@b.c/", "UPPER@Example.TEST",
	} {
		if got, want := normaliseJID(s), normaliseJIDSlow(s); got != want {
			t.Errorf("normaliseJID(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzNormaliseJID(f *testing.F) {
	for _, s := range []string{"a@b", "a@example.test.", "a@xn--caf-dma.test", "a@b..c", "1.2.3.4", "-@-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := normaliseJID(s), normaliseJIDSlow(s); got != want {
			t.Errorf("normaliseJID(%q) = %q, want %q", s, got, want)
		}
	})
}
