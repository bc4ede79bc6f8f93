package component

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
)

// RosterSince against a server that ignores ver (Prosody's mod_privilege)
// returns the whole roster and no version, whatever ver is.
func TestRosterSinceWithoutVersioning(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetRoster("john@example.test", map[string]componenttest.Item{"a@example.test": {Name: "A", Subscription: "both"}})
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	for _, ver := range []string{"", "v1"} {
		items, version, unchanged, err := c.RosterSince(context.Background(), "john@example.test", ver)
		if err != nil || unchanged || version != "" || len(items) != 1 || items[0].Name != "A" {
			t.Fatalf("RosterSince(%q) = %v, %q, %v, %v", ver, items, version, unchanged, err)
		}
	}
}

// Against a server that honours versioning (ejabberd with mod_roster
// versioning), an unchanged roster costs an empty result.
func TestRosterSinceWithVersioning(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.Versioning()
	srv.SetRoster("john@example.test", map[string]componenttest.Item{"a@example.test": {Name: "A", Subscription: "both"}})
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	ctx := context.Background()
	items, v1, unchanged, err := c.RosterSince(ctx, "john@example.test", "")
	if err != nil || unchanged || v1 == "" || len(items) != 1 {
		t.Fatalf(`RosterSince("") = %v, %q, %v, %v`, items, v1, unchanged, err)
	}
	items, version, unchanged, err := c.RosterSince(ctx, "john@example.test", v1)
	if err != nil || !unchanged || items != nil || version != "" {
		t.Fatalf("RosterSince(current version) = %v, %q, %v, %v", items, version, unchanged, err)
	}
	if err := c.Put(ctx, "john@example.test", roster.Item{JID: "b@example.test", Subscription: "both"}); err != nil {
		t.Fatal(err)
	}
	items, v2, unchanged, err := c.RosterSince(ctx, "john@example.test", v1)
	if err != nil || unchanged || v2 == "" || v2 == v1 || len(items) != 2 {
		t.Fatalf("RosterSince(old version) = %v, %q, %v, %v", items, v2, unchanged, err)
	}
	// Roster without the ver attribute: the whole roster, as ever.
	if items, err := c.Roster(ctx, "john@example.test"); err != nil || len(items) != 2 {
		t.Fatalf("Roster = %v, %v", items, err)
	}
	if n := srv.VersionedGets(); n != 1 {
		t.Fatalf("%d GETs answered unchanged, want 1", n)
	}
}

// The version is sent as given, escaped; an empty result to a GET
// without a version is an empty roster, not "unchanged".
func TestRosterSinceSendsVersion(t *testing.T) {
	srv := componenttest.NewServer(t)
	var mu sync.Mutex
	var got []string
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		if iq.Query != nil && iq.Query.Ver != nil {
			mu.Lock()
			got = append(got, *iq.Query.Ver)
			mu.Unlock()
		}
		return fmt.Sprintf(`<iq type='result' id='%s' from='%s' to='%s'/>`, iq.ID, iq.To, iq.From), 0
	})
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	ctx := context.Background()
	items, _, unchanged, err := c.RosterSince(ctx, "john@example.test", "")
	if err != nil || unchanged || items != nil {
		t.Fatalf(`empty result to ver="": %v, %v, %v`, items, unchanged, err)
	}
	const odd = `a"b<c>&'d`
	if _, _, unchanged, err := c.RosterSince(ctx, "john@example.test", odd); err != nil || !unchanged {
		t.Fatalf("empty result to a version: %v, %v", unchanged, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "" || got[1] != odd {
		t.Fatalf("versions sent: %q", got)
	}
}
