package rostersync

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// restartedRosters gives n users the same roster on the server as a
// previous process wrote it: the backend's contacts, stored with
// subscription stored (ejabberd stores "none" for every privileged SET).
func restartedRosters(srv *componenttest.Server, f *fakeFetcher, n int, stored string) []string {
	var users []string
	for i := range n {
		user := fmt.Sprintf("u%d", i)
		users = append(users, user)
		f.set(user, item("marie@example.test", "Marie"), item("paul@example.test", "Paul", "Work"))
		srv.SetRoster(user+"@example.test", map[string]componenttest.Item{
			"marie@example.test": {Name: "Marie", Subscription: stored},
			"paul@example.test":  {Name: "Paul", Subscription: stored, Groups: []string{"Work"}},
		})
	}
	return users
}

// syncAll syncs users at once and returns the total updates.
func syncAll(t *testing.T, s *Syncer, users []string) int {
	t.Helper()
	var wg sync.WaitGroup
	results := make([]Result, len(users))
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.Sync(context.Background(), u)
		}()
	}
	wg.Wait()
	updated := 0
	for _, r := range results {
		if r.Err != nil || r.Added != 0 || r.Removed != 0 {
			t.Fatalf("sync = %+v", r)
		}
		updated += r.Updated
	}
	return updated
}

// After a restart against a server that does not keep subscriptions
// (ejabberd), items that differ only in subscription are not rewritten:
// one of them is written to learn it, once per process, however many
// users are synced at once.
func TestNoRewriteAfterRestart(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.IgnoreSubscription()
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	users := restartedRosters(srv, f, 8, "none")
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, Concurrency: 8}, c, c, f, discard)
	run(t, s.Run)

	if updated := syncAll(t, s, users); updated != 1 || srv.Counts().Sets != 1 {
		t.Fatalf("first syncs after a restart: %d updated, %d SETs; want the one write that learns", updated, srv.Counts().Sets)
	}
	if kept, known := s.subscriptionKnown(); !known || kept {
		t.Fatalf("learnt kept=%v known=%v", kept, known)
	}
	if updated := syncAll(t, s, users); updated != 0 || srv.Counts().Sets != 1 {
		t.Fatalf("second syncs: %d updated, %d SETs in all", updated, srv.Counts().Sets)
	}
	// A real change is still written.
	f.set("u0", item("marie@example.test", "Marie Curie"), item("paul@example.test", "Paul", "Work"))
	if res := s.Sync(context.Background(), "u0"); res.Err != nil || res.Updated != 1 {
		t.Fatalf("rename: %+v", res)
	}
}

// On a server that keeps subscriptions (Prosody) the same items are
// updated in the same sync, every user's.
func TestSubscriptionOnlyChangesAppliedWhereKept(t *testing.T) {
	srv := componenttest.NewServer(t)
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	users := restartedRosters(srv, f, 8, "none")
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, Concurrency: 8}, c, c, f, discard)
	run(t, s.Run)

	if updated := syncAll(t, s, users); updated != 2*len(users) {
		t.Fatalf("%d updated, want %d", updated, 2*len(users))
	}
	for _, u := range users {
		want := []string{"marie@example.test|Marie|both|", "paul@example.test|Paul|both|Work"}
		if got := srv.Roster(u + "@example.test"); !slices.Equal(got, want) {
			t.Fatalf("%s: roster %v, want %v", u, got, want)
		}
	}
	if kept, known := s.subscriptionKnown(); !known || !kept {
		t.Fatalf("learnt kept=%v known=%v", kept, known)
	}
	if updated := syncAll(t, s, users); updated != 0 {
		t.Fatalf("second syncs: %d updated", updated)
	}
}

// An addition that is written anyway teaches it without a write that may
// be spurious; an item asking for subscription none is written without
// learning (every server stores that).
func TestLearnFromAnAddition(t *testing.T) {
	for _, ignores := range []bool{true, false} {
		t.Run(fmt.Sprintf("ignores=%v", ignores), func(t *testing.T) {
			srv := componenttest.NewServer(t)
			if ignores {
				srv.IgnoreSubscription()
			}
			c := startConn(t, testConfig(srv.Addr()))
			waitReady(t, c)
			f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
			restartedRosters(srv, f, 1, "none")
			f.set("u0", item("marie@example.test", "Marie"), item("paul@example.test", "Paul", "Work"), item("new@example.test", "New"))
			s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second}, c, c, f, discard)
			run(t, s.Run)
			res := s.Sync(context.Background(), "u0")
			wantUpdated := map[bool]int{true: 0, false: 2}[ignores]
			if res.Err != nil || res.Added != 1 || res.Updated != wantUpdated || srv.Counts().Sets != 1+wantUpdated {
				t.Fatalf("sync = %+v with %d SETs; want 1 added, %d updated", res, srv.Counts().Sets, wantUpdated)
			}
			if kept, known := s.subscriptionKnown(); !known || kept == ignores {
				t.Fatalf("learnt kept=%v known=%v", kept, known)
			}
		})
	}

	srv := componenttest.NewServer(t)
	srv.IgnoreSubscription()
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	restartedRosters(srv, f, 1, "both") // e.g. set through ejabberd's API
	f.set("u0", roster.Item{JID: "marie@example.test", Name: "Marie", Subscription: "none"}, item("paul@example.test", "Paul", "Work"))
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second}, c, c, f, discard)
	run(t, s.Run)
	// marie asks for none: written; paul differs only in subscription
	// (both on both sides): nothing.
	if res := s.Sync(context.Background(), "u0"); res.Err != nil || res.Updated != 1 || srv.Counts().Sets != 1 {
		t.Fatalf("sync = %+v with %d SETs", res, srv.Counts().Sets)
	}
	if _, known := s.subscriptionKnown(); known {
		t.Fatal("learnt from a write asking for none")
	}
}
