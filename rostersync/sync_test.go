package rostersync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/component"
	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// fakeFetcher serves desired rosters from memory.
type fakeFetcher struct {
	mu      sync.Mutex
	rosters map[string]rosterhttp.Roster
	err     error
	delay   time.Duration
	calls   atomic.Int64
	started chan string // optional: receives the user at each fetch start
}

func (f *fakeFetcher) Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	f.calls.Add(1)
	f.mu.Lock()
	r, err, delay := f.rosters[owner.Localpart()], f.err, f.delay
	f.mu.Unlock()
	if f.started != nil {
		f.started <- owner.Localpart()
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return rosterhttp.Roster{}, ctx.Err()
	}
	return r, err
}

func (f *fakeFetcher) set(user string, items ...roster.Item) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rosters[user] = rosterhttp.Roster{Items: items}
}

func item(j, name string, groups ...string) roster.Item {
	return roster.Item{JID: j, Name: name, Groups: groups, Subscription: "both"}
}

func newTestSyncer(t *testing.T, srv *componenttest.Server) (*Syncer, *fakeFetcher) {
	t.Helper()
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second}, c, c, f, discard)
	run(t, s.Run)
	return s, f
}

func TestSyncPopulatesUpdatesAndRemoves(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newTestSyncer(t, srv)
	ctx := context.Background()

	f.set("john", item("marie@example.test", "Marie", "Friends"), item("michael@example.test", "Michael"))
	res := s.Sync(ctx, "john")
	if res.Err != nil || res.Added != 2 || res.Updated != 0 || res.Removed != 0 {
		t.Fatalf("first sync = %+v", res)
	}
	want := []string{"marie@example.test|Marie|both|Friends", "michael@example.test|Michael|both|"}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, want) {
		t.Fatalf("roster = %v, want %v", got, want)
	}

	f.set("john", item("marie@example.test", "Marie C.", "Work"), item("new@example.test", "New"))
	res = s.Sync(ctx, "john")
	if res.Err != nil || res.Added != 1 || res.Updated != 1 || res.Removed != 1 {
		t.Fatalf("second sync = %+v", res)
	}
	want = []string{"marie@example.test|Marie C.|both|Work", "new@example.test|New|both|"}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, want) {
		t.Fatalf("roster = %v, want %v", got, want)
	}

	setsBefore := srv.Counts().Sets
	res = s.Sync(ctx, "john")
	setsAfter := srv.Counts().Sets
	if res.Err != nil || res.Added+res.Updated+res.Removed != 0 || setsAfter != setsBefore {
		t.Fatalf("no-op sync = %+v with %d SETs", res, setsAfter-setsBefore)
	}
}

func TestSyncBackendErrorLeavesRosterUntouched(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newTestSyncer(t, srv)
	srv.SetRoster("john@example.test", map[string]componenttest.Item{"keep@example.test": {Name: "Keep", Subscription: "both"}})
	f.err = errors.New("backend answered 500")
	res := s.Sync(context.Background(), "john")
	if res.Err == nil {
		t.Fatal("sync succeeded despite a backend error")
	}
	if n := srv.Counts(); n.Gets != 0 || n.Sets != 0 {
		t.Fatalf("server saw %d GETs and %d SETs after a backend error", n.Gets, n.Sets)
	}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{"keep@example.test|Keep|both|"}) {
		t.Fatalf("roster changed: %v", got)
	}
}

func TestSyncWindowBoundsSETsInFlight(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newTestSyncer(t, srv)
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		return srv.AnswerRoster(iq), 20 * time.Millisecond
	})
	var items []roster.Item
	for i := range 20 {
		items = append(items, item("c"+string(rune('a'+i))+"@example.test", ""))
	}
	f.set("john", items...)
	res := s.Sync(context.Background(), "john")
	if res.Err != nil || res.Added != 20 {
		t.Fatalf("sync = %+v", res)
	}
	if maxIn := srv.Counts().MaxInFlight; maxIn < 2 || maxIn > 4 {
		t.Fatalf("max SETs in flight = %d, want 2..4 (window 4)", maxIn)
	}
}

func TestSyncOverlappingRequestsConvergeToLatest(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newTestSyncer(t, srv)
	f.started = make(chan string, 10)
	f.delay = 100 * time.Millisecond
	f.set("john", item("old@example.test", "Old"))

	first := make(chan Result)
	go func() { first <- s.Sync(context.Background(), "john") }()
	<-f.started // the first sync has fetched the old state
	f.set("john", item("latest@example.test", "Latest"))
	var wg sync.WaitGroup
	results := make([]Result, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.Sync(context.Background(), "john")
		}()
	}
	<-first
	wg.Wait()
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("backend fetched %d times, want 2 (one running, one shared follow-up)", n)
	}
	for _, r := range results {
		if r.Err != nil || r.Added != 1 || r.Removed != 1 {
			t.Fatalf("follow-up result = %+v, want the shared one", r)
		}
	}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{"latest@example.test|Latest|both|"}) {
		t.Fatalf("roster = %v, want the latest backend state", got)
	}
}

func TestSyncNotReady(t *testing.T) {
	c := component.NewConn(testConfig("127.0.0.1:1"), discard)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: time.Second}, c, c, f, discard)
	run(t, s.Run)
	if err := s.Ready(); !errors.Is(err, component.ErrDisconnected) {
		t.Fatalf("Ready = %v", err)
	}
	if res := s.Sync(context.Background(), "john"); !errors.Is(res.Err, component.ErrDisconnected) || f.calls.Load() != 0 {
		t.Fatalf("Sync = %+v, fetches %d", res, f.calls.Load())
	}
}

func TestSyncLearnsWhetherTheServerKeepsSubscriptions(t *testing.T) {
	for _, ignores := range []bool{false, true} {
		t.Run(fmt.Sprintf("server ignores subscription=%v", ignores), func(t *testing.T) {
			srv := componenttest.NewServer(t)
			if ignores {
				srv.IgnoreSubscription()
			}
			s, f := newTestSyncer(t, srv)
			f.set("john", item("a@example.test", "A"), item("b@example.test", "B"))
			if res := s.Sync(context.Background(), "john"); res.Err != nil || res.Added != 2 {
				t.Fatalf("first sync = %+v", res)
			}
			before := srv.Counts().Sets
			res := s.Sync(context.Background(), "john")
			if res.Err != nil || res.Updated != 0 || srv.Counts().Sets != before {
				t.Fatalf("unchanged roster rewritten: %+v, %d SETs", res, srv.Counts().Sets-before)
			}
			// A subscription change is applied only where the server keeps it.
			f.set("john", roster.Item{JID: "a@example.test", Name: "A", Subscription: "to"}, item("b@example.test", "B"))
			res = s.Sync(context.Background(), "john")
			if want := map[bool]int{false: 1, true: 0}[ignores]; res.Err != nil || res.Updated != want {
				t.Fatalf("subscription change: %+v, want %d updated", res, want)
			}
		})
	}
}

// Syncs go on when their requesters stop waiting; MaxPending bounds them
// all together, so callers that give up cannot pile up work.
func TestSyncPendingIsBounded(t *testing.T) {
	srv := componenttest.NewServer(t)
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}, delay: 300 * time.Millisecond}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, Concurrency: 1, MaxPending: 3}, c, c, f, discard)
	run(t, s.Run)
	gone, cancel := context.WithCancel(context.Background())
	cancel() // callers who do not wait
	for _, u := range []string{"u1", "u2", "u3"} {
		if res := s.Sync(gone, u); !errors.Is(res.Err, context.Canceled) {
			t.Fatalf("Sync(%s) = %+v", u, res)
		}
	}
	if res := s.Sync(context.Background(), "u4"); !errors.Is(res.Err, ErrBusy) {
		t.Fatalf("fourth user: %+v, want ErrBusy", res)
	}
	if res := s.Sync(context.Background(), "u1"); res.Err != nil { // joins its own queue
		t.Fatalf("a user already pending: %+v", res)
	}
	componenttest.WaitFor(t, "the pending syncs to end", func() bool { return s.Sync(context.Background(), "u4").Err == nil })
}

// A contact the backend lists but that cannot be applied is left as it is:
// a backend mistake in one field does not remove a friend.
func TestSyncKeepsSkippedContacts(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetRoster("john@example.test", map[string]componenttest.Item{
		"marie@example.test": {Name: "Marie", Subscription: "both"},
		"old@example.test":   {Name: "Old", Subscription: "both"},
	})
	s, f := newTestSyncer(t, srv)
	f.mu.Lock()
	f.rosters["john"] = rosterhttp.Roster{Skipped: []rosterhttp.Skipped{
		{JID: "Marie@Example.TEST", Reason: `subscription "Both" is not one of both, to, from, none`, Contact: "marie@example.test"},
		{JID: "not a jid", Reason: "not a JID"},
	}}
	f.mu.Unlock()
	res := s.Sync(context.Background(), "john")
	if res.Err != nil || res.Removed != 1 || len(res.Skipped) != 2 {
		t.Fatalf("Sync = %+v, want old removed and marie kept", res)
	}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{"marie@example.test|Marie|both|"}) {
		t.Fatalf("roster = %v", got)
	}
}
