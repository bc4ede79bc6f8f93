//go:build e2e

package e2e

import (
	"fmt"
	"testing"

	"roster-sidecar/e2e/harness"
)

// TestHarness checks the pieces of the suite that do not need the sidecar:
// each server starts from the deploy/ configuration, users register, and a
// client logs in and fetches an empty roster.
func TestHarness(t *testing.T) {
	runPerServer(t, servers{}, testHarness)
}

func testHarness(t *testing.T, e *Env) {
	srv := e.Server
	srv.CreateUsers(t, "harness_alice", "harness_bob")
	c := Login(t, srv, "harness_alice")
	if items := c.FetchRoster(t); len(items) != 0 {
		t.Fatalf("new user has roster items: %s", formatItems(items))
	}
	c.WaitForRoster(t, nil, 0)
	Login(t, srv, "harness_bob")

	// Enough users for the bulk path (Prosody: its admin shell).
	var bulk []string
	for i := range harness.ProsodyBulkMin + 5 {
		bulk = append(bulk, fmt.Sprintf("harness_bulk%02d", i))
	}
	srv.CreateUsers(t, bulk...)
	Login(t, srv, bulk[len(bulk)-1])
}
