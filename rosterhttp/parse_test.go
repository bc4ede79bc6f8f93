package rosterhttp

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
)

var testOwner = jid.MustParse("john@example.test")

func item(j, name, sub string, groups ...string) roster.Item {
	return roster.Item{JID: j, Name: name, Groups: groups, Subscription: sub}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		items   []roster.Item
		skipped map[string]string // key -> substring of the reason
	}{
		{name: "empty object", body: `{}`},
		{name: "empty object with spaces", body: " \n{ }\t\r\n"},
		{
			name: "protocol example",
			body: `{ "marie@example.com": {"name": "Marie", "groups": ["Friends"]},
			         "michael@example.com": {"name": "Michael"} }`,
			items: []roster.Item{
				item("marie@example.com", "Marie", "both", "Friends"),
				item("michael@example.com", "Michael", "both"),
			},
		},
		{
			name:  "groups as a set, any values",
			body:  `{"a@x": {"groups": {"Work": 1, "Friends": true, "Y": false, "X": null, "": true, "Z": {"k": []}}}}`,
			items: []roster.Item{item("a@x", "", "both", "Friends", "Work", "X", "Y", "Z")},
		},
		{
			name:  "groups cleaned",
			body:  `{"a@x": {"groups": ["b", "", "a", "b", "a"]}, "b@x": {"groups": []}, "c@x": {"groups": [""]}, "d@x": {"groups": null}, "e@x": {"groups": {}}}`,
			items: []roster.Item{item("a@x", "", "both", "a", "b"), item("b@x", "", "both"), item("c@x", "", "both"), item("d@x", "", "both"), item("e@x", "", "both")},
		},
		{
			name:  "groups keep spaces and case",
			body:  `{"a@x": {"groups": [" Friends ", "friends", "Friends"]}}`,
			items: []roster.Item{item("a@x", "", "both", " Friends ", "Friends", "friends")},
		},
		{
			name:  "null value and null fields",
			body:  `{"a@x": null, "b@x": {"name": null, "groups": null, "subscription": null}}`,
			items: []roster.Item{item("a@x", "", "both"), item("b@x", "", "both")},
		},
		{
			name: "subscriptions",
			body: `{"both@x": {"subscription": "both"}, "to@x": {"subscription": "to"}, "from@x": {"subscription": "from"}, "none@x": {"subscription": "none"},
			        "bad@x": {"subscription": "Both"}, "empty@x": {"subscription": ""}, "num@x": {"subscription": 1}, "remove@x": {"subscription": "remove"}}`,
			items: []roster.Item{item("both@x", "", "both"), item("from@x", "", "from"), item("none@x", "", "none"), item("to@x", "", "to")},
			skipped: map[string]string{
				"bad@x":    `subscription "Both" is not one of both, to, from, none`,
				"empty@x":  `subscription "" is not one of`,
				"num@x":    "subscription is a JSON number, not a string",
				"remove@x": `subscription "remove" is not one of`,
			},
		},
		{
			name:  "unknown fields ignored, field names are case-sensitive",
			body:  `{"a@x": {"name": "A", "Name": 1, "NAME": "no", "ask": "subscribe", "approved": true, "extra": {"deep": [1, 2]}}}`,
			items: []roster.Item{item("a@x", "A", "both")},
		},
		{
			name:  "unicode name kept as is",
			body:  `{"a@x": {"name": "  Zoë \u00e9 <b>&amp;\n"}}`,
			items: []roster.Item{item("a@x", "  Zoë é <b>&amp;\n", "both")},
		},
		{
			name: "characters XML forbids become U+FFFD",
			body: "{\"a@x\": {\"name\": \"x\\u0001y\\u0000\", \"groups\": [\"g\\ufffeh\", \"\\uffff\", \"\\ud800\", \"ok\\u0008\"]}," +
				" \"b@x\": {\"name\": \"\xff\xfe\", \"groups\": {\"\\u001f\": 1}}, \"c@x\": {\"name\": \"\\t\\n\\ufffd\\ud83d\\ude00\U0010FFFF\"}}",
			items: []roster.Item{
				item("a@x", "x\uFFFDy\uFFFD", "both", "g\uFFFDh", "ok\uFFFD", "\uFFFD"),
				item("b@x", "\uFFFD\uFFFD", "both", "\uFFFD"),
				item("c@x", "\t\n\uFFFD\U0001F600\U0010FFFF", "both"),
			},
		},
		{
			name:  "carriage returns become line feeds",
			body:  `{"a@x": {"name": "a\r\nb\rc\r", "groups": ["c\r\nd", "c\nd", "c\rd", "\r\n\n"]}}`,
			items: []roster.Item{item("a@x", "a\nb\nc\n", "both", "\n\n", "c\nd")},
		},
		{
			name:  "contacts XMPP servers store as one: first key in byte order wins",
			body:  `{"straße@x": {"name": "B"}, "strasse@x": {"name": "A"}, "STRASSE@x": {"name": "C"}, "σς@x": {}, "σσ@x": {}, "a@straße.x": {}, "a@strasse.x": {}}`,
			items: []roster.Item{item("a@strasse.x", "", "both"), item("strasse@x", "C", "both"), item("σς@x", "", "both")},
			skipped: map[string]string{
				"strasse@x":  `duplicate of "STRASSE@x"`,
				"straße@x":   `duplicate of "STRASSE@x": XMPP servers store both as "strasse@x"`,
				"σσ@x":       `duplicate of "σς@x": XMPP servers store both as "σσ@x"`,
				"a@straße.x": `duplicate of "a@strasse.x": XMPP servers store both as "a@strasse.x"`,
			},
		},
		{
			name: "self",
			body: `{"john@example.test": {}, "JOHN@Example.Test.": {}, "john@example.test/phone": {}, "example.test": {}}`,
			skipped: map[string]string{
				"john@example.test":       "the user's own JID",
				"JOHN@Example.Test.":      "the user's own JID",
				"john@example.test/phone": "JID has a resource",
			},
			items: []roster.Item{item("example.test", "", "both")},
		},
		{
			name: "bad JIDs",
			body: `{"a@b/c": {}, "a@b@c": {}, "@x": {}, "x y@d": {}, "": {}, "x@": {}, "x@d/": {}, "a/b": {}, "x@a..": {}, "x@..": {}, "x@a..b": {}, "x@.a": {},
			        "a'b@x": {}, "x@exa_mple": {}, "\u2163@x": {}, "\uffff@x": {}, "ok@x": {}}`,
			items: []roster.Item{item("ok@x", "", "both")},
			skipped: map[string]string{
				"a@b/c":      "JID has a resource",
				"a/b":        "JID has a resource",
				"a@b@c":      "not a valid JID",
				"@x":         "not a valid JID",
				"x y@d":      "not a valid JID",
				"":           "empty key, not a JID",
				"x@":         "not a valid JID",
				"x@d/":       "not a valid JID",
				"x@a..":      "empty label",
				"x@..":       "not a valid JID",
				"x@a..b":     "not a valid JID",
				"x@.a":       "not a valid JID",
				"a'b@x":      "not a valid JID",
				"x@exa_mple": "not a valid JID",
				"\u2163@x":   "not a valid JID",
				"\uffff@x":   "not a valid JID",
			},
		},
		{
			name:  "normalisation",
			body:  `{"JUDY@Example.TEST": {"name": "Judy"}, "ＢＯＢ@example.test": {}, "jose\u0301@example.test": {}, "x@xn--caf-dma.example": {}, "srv.example.": {}, "[::1]": {}, "a@192.0.2.1": {}}`,
			items: []roster.Item{item("[::1]", "", "both"), item("a@192.0.2.1", "", "both"), item("bob@example.test", "", "both"), item("josé@example.test", "", "both"), item("judy@example.test", "Judy", "both"), item("srv.example", "", "both"), item("x@café.example", "", "both")},
		},
		{
			name:    "duplicates after normalisation: first key in byte order wins",
			body:    `{"judy@example.test": {"name": "lower"}, "JUDY@example.test": {"name": "upper"}, "Judy@Example.test": {"name": "mixed"}}`,
			items:   []roster.Item{item("judy@example.test", "upper", "both")},
			skipped: map[string]string{"judy@example.test": `duplicate of "JUDY@example.test"`, "Judy@Example.test": `duplicate of "JUDY@example.test"`},
		},
		{
			name:    "duplicates: an invalid contact does not claim its JID",
			body:    `{"JUDY@example.test": {"subscription": "bogus"}, "judy@example.test": {"name": "ok"}}`,
			items:   []roster.Item{item("judy@example.test", "ok", "both")},
			skipped: map[string]string{"JUDY@example.test": "subscription"},
		},
		{
			name:  "repeated key in the JSON object: last wins",
			body:  `{"a@x": {"name": "first"}, "a@x": {"name": "last"}}`,
			items: []roster.Item{item("a@x", "last", "both")},
		},
		{
			name: "values of the wrong type",
			body: `{"arr@x": [], "str@x": "x", "num@x": 1, "bool@x": true,
			        "name@x": {"name": 1}, "namearr@x": {"name": ["A"]},
			        "gstr@x": {"groups": "Friends"}, "gnum@x": {"groups": 1}, "gbool@x": {"groups": true},
			        "gelem@x": {"groups": ["a", 1]}, "gnull@x": {"groups": ["a", null]}, "gobj@x": {"groups": [{}]},
			        "ok@x": {}}`,
			items: []roster.Item{item("ok@x", "", "both")},
			skipped: map[string]string{
				"arr@x":     "value is a JSON array, not an object",
				"str@x":     "value is a JSON string, not an object",
				"num@x":     "value is a JSON number, not an object",
				"bool@x":    "value is a JSON boolean, not an object",
				"name@x":    "name is a JSON number, not a string",
				"namearr@x": "name is a JSON array, not a string",
				"gstr@x":    "groups is a JSON string, not an array of strings or an object",
				"gnum@x":    "groups is a JSON number",
				"gbool@x":   "groups is a JSON boolean",
				"gelem@x":   "groups[1] is a JSON number, not a string",
				"gnull@x":   "groups[1] is a JSON null, not a string",
				"gobj@x":    "groups[0] is a JSON object, not a string",
			},
		},
		{
			name:  "items sorted by normalised JID",
			body:  `{"zed@x": {}, "B@x": {}, "a@x": {}, "C@x": {}}`,
			items: []roster.Item{item("a@x", "", "both"), item("b@x", "", "both"), item("c@x", "", "both"), item("zed@x", "", "both")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body), testOwner)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got.Items, tt.items) {
				t.Errorf("items:\n got %#v\nwant %#v", got.Items, tt.items)
			}
			if len(got.Skipped) != len(tt.skipped) {
				t.Errorf("skipped %d, want %d: %#v", len(got.Skipped), len(tt.skipped), got.Skipped)
			}
			for i, s := range got.Skipped {
				if i > 0 && got.Skipped[i-1].JID >= s.JID {
					t.Errorf("skipped not sorted: %q before %q", got.Skipped[i-1].JID, s.JID)
				}
				want, ok := tt.skipped[s.JID]
				if !ok {
					t.Errorf("unexpected skip of %q: %s", s.JID, s.Reason)
				} else if !strings.Contains(s.Reason, want) {
					t.Errorf("skip of %q: reason %q, want it to contain %q", s.JID, s.Reason, want)
				}
			}
		})
	}
}

func TestParseSelfAsTheServerStoresIt(t *testing.T) {
	r, err := Parse([]byte(`{"strasse@example.test": {}, "STRASSE@Example.test": {}, "straße@example.test": {}, "ok@example.test": {}}`),
		jid.MustParse("straße@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 1 || r.Items[0].JID != "ok@example.test" || len(r.Skipped) != 3 {
		t.Fatalf("Parse = %+v", r)
	}
	for _, s := range r.Skipped {
		if s.Reason != "the user's own JID" {
			t.Errorf("skip of %q: %s", s.JID, s.Reason)
		}
	}
}

func TestParseNotAnObject(t *testing.T) {
	tests := []struct{ body, err string }{
		{``, "backend answer is empty, not a JSON object"},
		{" \n\t", "backend answer is empty, not a JSON object"},
		{`[]`, "backend answer is a JSON array, not an object"},
		{`[{"a@x": {}}]`, "backend answer is a JSON array, not an object"},
		{`"x"`, "backend answer is a JSON string, not an object"},
		{`null`, "backend answer is a JSON null, not an object"},
		{`1`, "backend answer is a JSON number, not an object"},
		{`-1.5e3`, "backend answer is a JSON number, not an object"},
		{`true`, "backend answer is a JSON boolean, not an object"},
		{`garbage`, "backend answer is not valid JSON"},
		{`<html>error</html>`, "backend answer is not valid JSON"},
		{`{`, "backend answer is not valid JSON"},
		{`{"a@x": }`, "backend answer is not valid JSON"},
		{`{"a@x": {}} {}`, "backend answer is not valid JSON"},
		{`{"a@x": {"name": "A"}`, "backend answer is not valid JSON"},
		{`{a: 1}`, "backend answer is not valid JSON"},
		{"\xef\xbb\xbf{}", "backend answer is not valid JSON"}, // byte order mark
	}
	for _, tt := range tests {
		r, err := Parse([]byte(tt.body), testOwner)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Parse(%q) = %v, %v; want error containing %q", tt.body, r, err, tt.err)
		}
		if !reflect.DeepEqual(r, Roster{}) {
			t.Errorf("Parse(%q) returned a roster with its error: %#v", tt.body, r)
		}
	}
}

func TestParseEmptyIsEmptyRoster(t *testing.T) {
	r, err := Parse([]byte(`{}`), testOwner)
	if err != nil || !reflect.DeepEqual(r, Roster{}) {
		t.Fatalf("Parse({}) = %#v, %v; want empty roster", r, err)
	}
}

func TestParseZeroOwner(t *testing.T) {
	r, err := Parse([]byte(`{"a@x": {}}`), jid.JID{})
	if err != nil || len(r.Items) != 1 {
		t.Fatalf("Parse with zero owner = %#v, %v", r, err)
	}
}

// TestParseStringprepRefused: contacts whose JID Prosody and ejabberd
// refuse (testdata/stringprep-refused.txt, from the servers) are skipped,
// right-to-left JIDs they take are kept.
func TestParseStringprepRefused(t *testing.T) {
	raw, err := os.ReadFile("testdata/stringprep-refused.txt")
	if err != nil {
		t.Fatal(err)
	}
	contacts := map[string]any{}
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, "#") {
			continue
		}
		profile, part, _ := strings.Cut(line, "\t")
		if profile == "nodeprep" {
			contacts[part+"@example.test"] = nil
		} else {
			contacts["x@"+part] = nil
		}
	}
	refused := len(contacts)
	kept := []string{"שלום@example.test", "x@שלום", "אבג@שלום", "ملك@example.test", "a1@example.test", "straße@example.test", "ᾳ@example.test"}
	for _, j := range kept {
		contacts[j] = nil
	}
	body, err := json.Marshal(contacts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(body, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != len(kept) || len(r.Skipped) != refused {
		t.Errorf("%d items, %d skipped; want %d and %d: %+v", len(r.Items), len(r.Skipped), len(kept), refused, r.Items)
	}
	for _, s := range r.Skipped {
		if !strings.HasPrefix(s.Reason, "XMPP servers refuse this JID") {
			t.Errorf("skip of %q (%U): %s", s.JID, []rune(s.JID), s.Reason)
		}
	}
}
