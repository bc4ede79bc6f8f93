package main

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const (
	// schemaFile is the JSON Schema of a backend's answer (docs/PROTOCOL.md).
	schemaFile = "../../../docs/roster.schema.json"
	// rostersFile is what make demo serves.
	rostersFile = "../rosters.json"
)

// answer fetches the roster of user from the backend at base as the sidecar
// does and checks the status and media type.
func answer(t *testing.T, base, user string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/roster/"+url.PathEscape(user), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET roster of %q: %s %s", user, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET roster of %q: Content-Type %q", user, ct)
	}
	return string(body)
}

// validate checks body against the schema.
func validate(t *testing.T, sch *jsonschema.Schema, body string) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// TestAnswersMatchSchema: every answer of the example backend, for each user
// of the demo's rosters file and for a user it does not name, matches the
// published schema of a backend's answer.
func TestAnswersMatchSchema(t *testing.T) {
	sch, err := jsonschema.NewCompiler().Compile(schemaFile)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	data, err := os.ReadFile(rostersFile)
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatalf("%s: %v", rostersFile, err)
	}
	users := slices.Sorted(maps.Keys(all))
	if len(users) == 0 {
		t.Fatalf("%s names no user", rostersFile)
	}

	srv := httptest.NewServer(handler(rostersFile))
	defer srv.Close()
	for _, user := range append(users, "nobody", "hash#tag") {
		body := answer(t, srv.URL, user)
		if err := validate(t, sch, body); err != nil {
			t.Errorf("answer for %q does not match %s: %v\n%s", user, schemaFile, err, body)
		}
	}
	if body := answer(t, srv.URL, "nobody"); strings.TrimSpace(body) != "{}" {
		t.Errorf("answer for a user the file does not name: %s, want {}", body)
	}

	// The same check refuses an answer of the wrong shape.
	bad := filepath.Join(t.TempDir(), "rosters.json")
	if err := os.WriteFile(bad, []byte(`{"eve": {"bob@example.test": {"groups": "Friends"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srvBad := httptest.NewServer(handler(bad))
	defer srvBad.Close()
	if err := validate(t, sch, answer(t, srvBad.URL, "eve")); err == nil {
		t.Errorf("an answer with groups as a string matched %s", schemaFile)
	}
}
