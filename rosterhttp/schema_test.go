package rosterhttp

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"mellium.im/xmpp/jid"
)

// schemaFile is the JSON Schema of the backend's answer that docs/PROTOCOL.md
// publishes.
const schemaFile = "../docs/roster.schema.json"

// compileSchema compiles schemaFile (checked against the draft 2020-12
// meta-schema on the way) or fails the test.
func compileSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	sch, err := jsonschema.NewCompiler().Compile(schemaFile)
	if err != nil {
		tb.Fatalf("compile %s: %v", schemaFile, err)
	}
	return sch
}

// validateBody validates body, which must be valid JSON, against sch.
func validateBody(tb testing.TB, sch *jsonschema.Schema, body string) error {
	tb.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		tb.Fatalf("decode %q: %v", body, err)
	}
	return sch.Validate(inst)
}

// Reasons of Parse's skips. A contact skipped for its shape (the value or one
// of its fields has the wrong type or value) or for a key the schema's
// pattern rules out (empty, with a resource) must fail the schema; the other
// JID checks (PRECIS, the owner's own JID, duplicates after normalisation)
// are beyond what a schema can say.
var schemaReasons = []string{
	"value is", "name is", "groups", "subscription", // shape
	"empty key", "JID has a resource", // pattern
}

// schemaReason reports whether a skip's reason is one the schema states.
func schemaReason(reason string) bool {
	return slices.ContainsFunc(schemaReasons, func(p string) bool { return strings.HasPrefix(reason, p) })
}

// schemaOwner is the user whose roster the bodies below are.
var schemaOwner = jid.MustParse("john@example.test")

// acceptedBodies are answers that Parse applies in full (no contact skipped),
// taken from TestParse and FuzzParse: each must match the schema.
var acceptedBodies = []string{
	`{}`,
	" \n{ }\t\r\n",
	`{ "marie@example.com": {"name": "Marie", "groups": ["Friends"]}, "michael@example.com": {"name": "Michael"} }`,
	`{ "marie@example.com": {"name": "Marie", "groups": ["Friends"]}, "michael@example.com": {"name": "Michael", "subscription": "both"} }`,
	`{"a@x": {"groups": {"Work": 1, "Friends": true, "Y": false, "X": null, "": true, "Z": {"k": []}}}}`,
	`{"a@x": {"groups": {"Work": 1, "Friends": true, "": null}}}`,
	`{"a@x": {"groups": ["b", "", "a", "b", "a"]}, "b@x": {"groups": []}, "c@x": {"groups": [""]}, "d@x": {"groups": null}, "e@x": {"groups": {}}}`,
	`{"a@x": {"groups": ["b", "", "a", "b"]}, "b@x": null, "c@x": {"subscription": "to"}}`,
	`{"a@x": {"groups": [" Friends ", "friends", "Friends"]}}`,
	`{"a@x": null, "b@x": {"name": null, "groups": null, "subscription": null}}`,
	`{"both@x": {"subscription": "both"}, "to@x": {"subscription": "to"}, "from@x": {"subscription": "from"}, "none@x": {"subscription": "none"}}`,
	`{"a@x": {"name": "A", "Name": 1, "NAME": "no", "ask": "subscribe", "approved": true, "extra": {"deep": [1, 2]}}}`,
	`{"a@x": {"name": "  Zoë \u00e9 <b>&amp;\n"}}`,
	`{"example.test": {}}`,
	`{"JUDY@Example.TEST": {"name": "Judy"}, "ＢＯＢ@example.test": {}, "jose\u0301@example.test": {}, "x@xn--caf-dma.example": {}, "srv.example.": {}, "[::1]": {}, "a@192.0.2.1": {}}`,
	`{"a@x": {"name": "first"}, "a@x": {"name": "last"}}`,
	`{"zed@x": {}, "B@x": {}, "a@x": {}, "C@x": {}}`,
	`{"a@x": {"name": ""}, "b@x": {"groups": {"": 1}}}`,
}

// refusedBodies are answers that Parse refuses, whole (the sync fails) or in
// part (a contact is skipped), for a reason the schema can state: each must
// fail the schema.
var refusedBodies = []string{
	// Not an object: the user's sync fails.
	`[]`, `[{"a@x": {}}]`, `"x"`, `null`, `1`, `-1.5e3`, `true`,
	// A contact's value of the wrong type.
	`{"a@x": []}`, `{"a@x": "x"}`, `{"a@x": 1}`, `{"a@x": true}`, `{"a@x": false}`,
	// A field of the wrong type or value.
	`{"a@x": {"name": 1}}`, `{"a@x": {"name": ["A"]}}`, `{"a@x": {"name": {}}}`, `{"a@x": {"name": true}}`,
	`{"a@x": {"groups": "Friends"}}`, `{"a@x": {"groups": 1}}`, `{"a@x": {"groups": true}}`,
	`{"a@x": {"groups": ["a", 1]}}`, `{"a@x": {"groups": ["a", null]}}`, `{"a@x": {"groups": [{}]}}`, `{"a@x": {"groups": [["a"]]}}`,
	`{"a@x": {"subscription": "Both"}}`, `{"a@x": {"subscription": ""}}`, `{"a@x": {"subscription": 1}}`,
	`{"a@x": {"subscription": "remove"}}`, `{"a@x": {"subscription": ["both"]}}`,
	// One bad contact among good ones.
	`{"ok@x": {}, "bad@x": {"subscription": "bogus"}}`,
	`{"a@x": {"subscription": "bogus"}, "b@x": {"name": 1}, "c@x": {"groups": "g"}, "d@x": [], "e@x": {"groups": [1]}}`,
	// Keys the pattern rules out: empty, with a resource, not one localpart
	// and one domainpart.
	`{"": {}}`, `{"a@b/c": {}}`, `{"a/b": {}}`, `{"john@example.test/phone": {}}`, `{"x@d/": {}}`,
	`{"a@b@c": {}}`, `{"@x": {}}`, `{"x@": {}}`,
}

func TestSchemaMatchesParser(t *testing.T) {
	sch := compileSchema(t)
	for _, body := range acceptedBodies {
		r, err := Parse([]byte(body), schemaOwner)
		if err != nil || len(r.Skipped) != 0 {
			t.Errorf("Parse(%s) = %v, skipped %v: the table says it is applied in full", body, err, r.Skipped)
		}
		if err := validateBody(t, sch, body); err != nil {
			t.Errorf("the parser applies %s in full, but the schema refuses it: %v", body, err)
		}
	}
	for _, body := range refusedBodies {
		r, err := Parse([]byte(body), schemaOwner)
		if err == nil && len(r.Skipped) == 0 {
			t.Errorf("Parse(%s) = %+v: the table says it is refused, whole or in part", body, r)
		}
		if err := validateBody(t, sch, body); err == nil {
			t.Errorf("the parser refuses %s, but the schema accepts it", body)
		}
	}
}

// FuzzSchema checks that the schema and the parser agree on any body: what
// Parse applies in full matches the schema, and what matches the schema Parse
// accepts, skipping no contact for its shape or for a key the schema's
// pattern rules out.
func FuzzSchema(f *testing.F) {
	for _, body := range slices.Concat(acceptedBodies, refusedBodies) {
		f.Add([]byte(body))
	}
	for _, body := range []string{
		``, `garbage`, `{"a@x": }`, `{"a@x": {}} {}`, "\xef\xbb\xbf{}",
		`{"john@example.test": {}, "JOHN@Example.Test.": {}, "example.test": {}}`,
		`{"judy@example.test": {"name": "lower"}, "JUDY@example.test": {"name": "upper"}}`,
		`{"x@a..": {}, "x@..": {}, "a.": {}, "x@exa_mple": {}, "a'b@x": {}, "\u2163@x": {}, "\uffff@x": {}, "x y@d": {}}`,
		`{"a@b／c": {}, "a＠b@c": {}, "a@b\u0000": {}}`,
		"{\"\xff@x\": {\"name\": \"\xfe\"}}",
	} {
		f.Add([]byte(body))
	}
	sch := compileSchema(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, perr := Parse(body, schemaOwner)
		if !json.Valid(body) {
			if perr == nil {
				t.Fatalf("Parse accepted invalid JSON")
			}
			return
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("jsonschema cannot decode valid JSON: %v", err)
		}
		serr := sch.Validate(inst)
		if perr == nil && len(r.Skipped) == 0 && serr != nil {
			t.Fatalf("the parser applies the body in full, but the schema refuses it: %v", serr)
		}
		if serr == nil {
			if perr != nil {
				t.Fatalf("the schema accepts the body, but Parse fails: %v", perr)
			}
			for _, s := range r.Skipped {
				if schemaReason(s.Reason) {
					t.Fatalf("the schema accepts the body, but Parse skips %q: %s", s.JID, s.Reason)
				}
			}
		}
	})
}
