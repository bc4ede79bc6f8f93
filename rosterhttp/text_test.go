package rosterhttp

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestXMLText(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"Marie", "Marie"},
		{"  Zoë é <b>&amp;\t\n", "  Zoë é <b>&amp;\t\n"},
		{"e\u0301", "e\u0301"}, // not normalised: the servers keep it
		{"x\x01y", "x\uFFFDy"},
		{"\x00", "\uFFFD"},
		{"\x7f\u0085", "\x7f\u0085"}, // allowed by XML 1.0
		{"g\uFFFEh\uFFFF", "g\uFFFDh\uFFFD"},
		{"\uFFFD\U0010FFFF\U0001F600", "\uFFFD\U0010FFFF\U0001F600"},
		{"a\xffb\xc3", "a\uFFFDb\uFFFD"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // an encoded surrogate
		{"a\rb", "a\nb"},
		{"a\r\nb", "a\nb"},
		{"a\r\r\nb\r", "a\n\nb\n"},
		{"a\n\rb", "a\n\nb"},
	} {
		if got := xmlText(tt.in); got != tt.want {
			t.Errorf("xmlText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// serverRoundTrip returns what the sidecar reads back of s after a roster
// SET carried it to an XMPP server: as an attribute (a name) or as
// character data (a group), escaped as the SET encoder escapes it, parsed
// by the server, written back by the server with only the markup
// characters escaped (Prosody; ejabberd for groups) or, with escapeSpace,
// tab, line feed and carriage return too (ejabberd for names), and parsed
// by encoding/xml as the sidecar's decoder does.
func serverRoundTrip(t testing.TB, s string, attr, escapeSpace bool) string {
	t.Helper()
	type item struct {
		Name  string `xml:"name,attr"`
		Group string `xml:"group"`
	}
	var sent bytes.Buffer
	if err := xml.EscapeText(&sent, []byte(s)); err != nil {
		t.Fatal(err)
	}
	doc := "<item><group>" + sent.String() + "</group></item>"
	if attr {
		doc = `<item name="` + sent.String() + `"/>`
	}
	var stored item
	if err := xml.Unmarshal([]byte(doc), &stored); err != nil {
		t.Fatalf("server cannot parse %q: %v", doc, err)
	}
	v := stored.Group
	if attr {
		v = stored.Name
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	if escapeSpace {
		r = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;", "\t", "&#9;", "\n", "&#10;", "\r", "&#13;")
	}
	doc = "<item><group>" + r.Replace(v) + "</group></item>"
	if attr {
		doc = `<item name="` + r.Replace(v) + `"/>`
	}
	var back item
	if err := xml.Unmarshal([]byte(doc), &back); err != nil {
		t.Fatalf("sidecar cannot parse %q: %v", doc, err)
	}
	if attr {
		return back.Name
	}
	return back.Group
}

// FuzzXMLText checks that xmlText(s) is what a server gives back of
// xmlText(s), whatever the way, and that it is XML-clean.
func FuzzXMLText(f *testing.F) {
	for _, s := range []string{"", "Marie", "x\x01y", "g\uFFFEh", "a\r\nb\r", "\xff", "\t\n ", "<&'\">", "\U0010FFFF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		clean := xmlText(s)
		if !utf8.ValidString(clean) || strings.ContainsRune(clean, '\r') {
			t.Fatalf("xmlText(%q) = %q", s, clean)
		}
		for _, r := range clean {
			if !xmlChar(r) {
				t.Fatalf("xmlText(%q) = %q has %U", s, clean, r)
			}
		}
		if again := xmlText(clean); again != clean {
			t.Fatalf("xmlText(%q) = %q, xmlText of that %q", s, clean, again)
		}
		for _, way := range []struct{ attr, escapeSpace bool }{{true, false}, {true, true}, {false, false}, {false, true}} {
			if back := serverRoundTrip(t, clean, way.attr, way.escapeSpace); back != clean {
				t.Fatalf("%q (from %q) comes back as %q (attribute %v, escaped white space %v)", clean, s, back, way.attr, way.escapeSpace)
			}
		}
	})
}
