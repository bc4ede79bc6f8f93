//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestHarness checks the pieces of the suite that do not need the sidecar:
// each server starts from the deploy/ configuration, users register, and a
// client logs in and fetches an empty roster.
func TestHarness(t *testing.T) {
	for _, r := range runners {
		t.Run(r.Name, func(t *testing.T) {
			t.Parallel()
			srv := r.Run(t)
			srv.CreateUsers(t, "harness_alice", "harness_bob")
			c := Login(t, srv, "harness_alice")
			if items := c.FetchRoster(t); len(items) != 0 {
				t.Fatalf("new user has roster items: %s", formatItems(items))
			}
			c.WaitForRoster(t, nil, 0)
			Login(t, srv, "harness_bob")

			// Enough users for the bulk path (Prosody: its admin shell).
			var bulk []string
			for i := range prosodyBulkMin + 5 {
				bulk = append(bulk, fmt.Sprintf("harness_bulk%02d", i))
			}
			srv.CreateUsers(t, bulk...)
			Login(t, srv, bulk[len(bulk)-1])
		})
	}
}

// TestBackend checks the scriptable backend on its own.
func TestBackend(t *testing.T) {
	b := NewBackend(t)
	b.SetRoster("hash#tag", Contact{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}})
	b.Set("broken", Reply{Status: 500, Body: "oops"})

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(b.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/roster/hash%23tag"); code != 200 || body != `{"marie@example.test":{"name":"Marie","groups":["Friends"]}}` {
		t.Errorf("hash#tag: %d %s", code, body)
	}
	if code, _ := get("/roster/broken"); code != 500 {
		t.Errorf("broken: %d", code)
	}
	if code, _ := get("/roster/nobody"); code != 404 {
		t.Errorf("nobody: %d", code)
	}
	reqs := b.Requests("hash#tag")
	if len(reqs) != 1 || reqs[0].EscapedPath != "/roster/hash%23tag" {
		t.Errorf("requests for hash#tag: %+v", reqs)
	}
	if n := len(b.Requests("")); n != 3 {
		t.Errorf("%d requests recorded, want 3", n)
	}
}
