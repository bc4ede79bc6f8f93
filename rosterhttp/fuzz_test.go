package rosterhttp

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `[]`, `null`, `"x"`, `1`, `garbage`, `{"a@x": }`,
		`{ "marie@example.com": {"name": "Marie", "groups": ["Friends"]}, "michael@example.com": {"name": "Michael"} }`,
		`{"a@x": {"groups": {"Work": 1, "Friends": true, "": null}}}`,
		`{"a@x": {"groups": ["b", "", "a", "b"]}, "b@x": null, "c@x": {"subscription": "to"}}`,
		`{"a@x": {"subscription": "bogus"}, "b@x": {"name": 1}, "c@x": {"groups": "g"}, "d@x": [], "e@x": {"groups": [1]}}`,
		`{"john@example.test": {}, "john@example.test/r": {}, "a@b@c": {}, "@x": {}, "x y@d": {}, "": {}}`,
		`{"JUDY@Example.TEST": {"name": "A"}, "judy@example.test": {"name": "B"}, "Judy@example.test.": {}}`,
		`{"x@a..": {}, "x@..": {}, "a.": {}, "[::1]": {}, "1.2.3.4": {}, "x@xn--caf-dma": {}, "ＢＯＢ@x": {}}`,
		`{"a@x": {"name": "A"}, "a@x": {"name": "B"}}`,
		"{\"\xff@x\": {\"name\": \"\xfe\"}}",
		`{"a@x": {"name": "x\u0001y\r\n", "groups": ["g\ufffeh", "c\rd", "c\nd"]}}`,
		`{"straße@x": {}, "strasse@x": {}, "STRASSE@x": {}, "σς@x": {}, "σσ@x": {}, "JOHN@example.test": {}}`,
	} {
		f.Add([]byte(seed))
	}
	owner := jid.MustParse("john@example.test")
	subs := []string{roster.SubscriptionBoth, roster.SubscriptionTo, roster.SubscriptionFrom, roster.SubscriptionNone}
	self := roster.FoldJID(owner.String())
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Parse(body, owner)
		if err != nil {
			if r.Items != nil || r.Skipped != nil {
				t.Fatalf("roster returned with error %v", err)
			}
			return
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(body, &keys); err != nil || keys == nil {
			t.Fatalf("Parse accepted what is not a JSON object: %v", err)
		}
		if n := len(r.Items) + len(r.Skipped); n != len(keys) {
			t.Fatalf("%d items and skipped for %d keys", n, len(keys))
		}
		folds := make(map[string]bool, len(r.Items))
		for i, it := range r.Items {
			fold := roster.FoldJID(it.JID)
			if folds[fold] || fold == self {
				t.Fatalf("item %q: another item or the owner is the same contact on the server (%q)", it.JID, fold)
			}
			folds[fold] = true
			if xmlText(it.Name) != it.Name {
				t.Fatalf("name %q is not as the server returns it", it.Name)
			}
			for _, g := range it.Groups {
				if xmlText(g) != g {
					t.Fatalf("group %q is not as the server returns it", g)
				}
			}
			if i > 0 && r.Items[i-1].JID >= it.JID {
				t.Fatalf("items not sorted and unique: %q then %q", r.Items[i-1].JID, it.JID)
			}
			j, err := jid.Parse(it.JID)
			if err != nil || j.String() != it.JID || j.Resourcepart() != "" {
				t.Fatalf("item JID %q re-parses to %q, %v", it.JID, j, err)
			}
			if j.Equal(owner) {
				t.Fatalf("owner in own roster")
			}
			if !slices.Contains(subs, it.Subscription) {
				t.Fatalf("subscription %q", it.Subscription)
			}
			if it.Groups != nil && len(it.Groups) == 0 {
				t.Fatalf("empty non-nil groups")
			}
			for k, g := range it.Groups {
				if g == "" || k > 0 && it.Groups[k-1] >= g {
					t.Fatalf("groups not sorted, unique and non-empty: %q", it.Groups)
				}
			}
		}
		for i, s := range r.Skipped {
			if i > 0 && r.Skipped[i-1].JID >= s.JID {
				t.Fatalf("skipped not sorted: %q then %q", r.Skipped[i-1].JID, s.JID)
			}
			if _, ok := keys[s.JID]; !ok || s.Reason == "" {
				t.Fatalf("skipped %q (%q) is not a key with a reason", s.JID, s.Reason)
			}
		}
	})
}

func FuzzParseUsername(f *testing.F) {
	const domain = "example.test"
	for _, seed := range []string{
		"john", "JOHN", "hash#tag", "q?mark", "josé", "jose\u0301", "ＪＯＨＮ", "..", ".", "a%2Fb", "100%",
		"john@example.test", "john@EXAMPLE.test.", "john@other.test", "john@example.test/r", "@example.test",
		"", "a/b", "a'b", `a"b`, "a&b", "a:b", "a<b", "a>b", "a\uff1ab", "a b", "a\x00b", "\xff", "\u2163",
		strings.Repeat("a", 1023), strings.Repeat("a", 1024),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ParseUsername(s, domain)
		if err != nil {
			if name != "" {
				t.Fatalf("name %q with error %v", name, err)
			}
			return
		}
		if name == "" || len(name) > maxPartBytes {
			t.Fatalf("ParseUsername(%q) = %q", s, name)
		}
		for _, again := range []string{name, name + "@" + domain} {
			if n, err := ParseUsername(again, domain); err != nil || n != name {
				t.Fatalf("ParseUsername(%q) = %q, %v; want %q", again, n, err, name)
			}
		}
		if escaped := url.PathEscape(name); strings.Contains(escaped, "/") {
			t.Fatalf("url.PathEscape(%q) = %q", name, escaped)
		}
		if strings.ContainsAny(name, forbiddenLocal) {
			t.Fatalf("name %q has a forbidden character", name)
		}
	})
}
