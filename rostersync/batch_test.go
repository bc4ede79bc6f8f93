package rostersync

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// newHelperSyncer is newTestSyncer against a server with the helper.
func newHelperSyncer(t *testing.T, srv *componenttest.Server) (*Syncer, *fakeFetcher) {
	t.Helper()
	srv.SetHelper(true)
	cfg := testConfig(srv.Addr())
	cfg.UserDomains = []string{"example.test"}
	cfg.DetectHelper = true
	c := startConn(t, cfg)
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second}, c, c, f, discard)
	run(t, s.Run)
	return s, f
}

func TestSyncThroughHelper(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newHelperSyncer(t, srv)
	ctx := context.Background()

	f.set("john", item("marie@example.test", "Marie", "Friends"), item("michael@example.test", "Michael"))
	res := s.Sync(ctx, "john")
	if res.Err != nil || res.Added != 2 || res.Updated != 0 || res.Removed != 0 {
		t.Fatalf("first sync = %+v", res)
	}
	f.set("john", item("marie@example.test", "Marie C.", "Work"), item("new@example.test", "New"))
	res = s.Sync(ctx, "john")
	if res.Err != nil || res.Added != 1 || res.Updated != 1 || res.Removed != 1 {
		t.Fatalf("second sync = %+v", res)
	}
	want := []string{"marie@example.test|Marie C.|both|Work", "new@example.test|New|both|"}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, want) {
		t.Fatalf("roster = %v, want %v", got, want)
	}
	res = s.Sync(ctx, "john")
	if n := srv.Counts(); res.Err != nil || res.Added+res.Updated+res.Removed != 0 || n.Sets != 2 || n.Batches != 2 {
		t.Fatalf("no-op sync = %+v; server saw %+v, want 2 batch requests and nothing else", res, n)
	}
}

// The helper is unloaded while the sidecar runs: the refused request
// changes nothing, and the sync writes item by item instead.
func TestSyncFallsBackWhenHelperGone(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newHelperSyncer(t, srv)
	ctx := context.Background()
	f.set("john", item("marie@example.test", "Marie"))
	if res := s.Sync(ctx, "john"); res.Err != nil || res.Added != 1 {
		t.Fatalf("sync = %+v", res)
	}
	srv.SetHelper(false)
	f.set("john", item("marie@example.test", "Marie"), item("a@example.test", "A"), item("b@example.test", "B"))
	if res := s.Sync(ctx, "john"); res.Err != nil || res.Added != 2 {
		t.Fatalf("sync = %+v", res)
	}
	if n := srv.Counts(); n.Batches != 2 || n.Sets != 4 {
		t.Errorf("server saw %+v, want 2 batch requests (one refused) and 2 SETs", n)
	}
	if got := srv.Roster("john@example.test"); len(got) != 3 {
		t.Errorf("roster = %v", got)
	}
}

// batchStore is a BatchStore in memory whose ApplyBatch fails the items
// listed in fail.
type batchStore struct {
	mu      sync.Mutex
	items   map[string]roster.Item
	fail    map[string]error
	refuse  error // ApplyBatch's err
	can     bool
	batches int
	puts    int
}

func (b *batchStore) Roster(context.Context, string) ([]roster.Item, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []roster.Item
	for _, it := range b.items {
		out = append(out, it)
	}
	return out, nil
}

func (b *batchStore) Put(_ context.Context, _ string, it roster.Item) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.puts++
	b.items[it.JID] = it
	return nil
}

func (b *batchStore) Remove(_ context.Context, _, contact string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.puts++
	delete(b.items, contact)
	return nil
}

func (b *batchStore) CanBatch(context.Context, string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.can
}

func (b *batchStore) ApplyBatch(_ context.Context, _ string, remove []string, set []roster.Item) (removeErrs, setErrs []error, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches++
	if b.refuse != nil {
		return nil, nil, b.refuse
	}
	for i, j := range remove {
		if e := b.fail[j]; e != nil {
			if removeErrs == nil {
				removeErrs = make([]error, len(remove))
			}
			removeErrs[i] = e
			continue
		}
		delete(b.items, j)
	}
	for i, it := range set {
		if e := b.fail[it.JID]; e != nil {
			if setErrs == nil {
				setErrs = make([]error, len(set))
			}
			setErrs[i] = e
			continue
		}
		b.items[it.JID] = it
	}
	return removeErrs, setErrs, nil
}

// fakeLink is always ready.
type fakeLink struct{}

func (fakeLink) Ready(string) error       { return nil }
func (fakeLink) Changed() <-chan struct{} { return make(chan struct{}) }

func TestBatchCountsPerItemFailures(t *testing.T) {
	errUpd, errAdd := errors.New("update refused"), errors.New("add refused")
	store := &batchStore{can: true, items: map[string]roster.Item{
		"gone@example.test": item("gone@example.test", "Gone"),
		"upd1@example.test": item("upd1@example.test", "Old"),
		"upd2@example.test": item("upd2@example.test", "Old"),
	}, fail: map[string]error{"upd2@example.test": errUpd, "add2@example.test": errAdd}}
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, CompareSubscription: CompareAlways}, fakeLink{}, store, f, discard)
	run(t, s.Run)
	f.set("john", item("upd1@example.test", "New"), item("upd2@example.test", "New"),
		item("add1@example.test", "A"), item("add2@example.test", "B"), item("add3@example.test", "C"))
	res := s.Sync(context.Background(), "john")
	if res.Added != 2 || res.Updated != 1 || res.Removed != 1 || !errors.Is(res.Err, errUpd) {
		t.Fatalf("sync = %+v, want added 2, updated 1, removed 1 and the first failure", res)
	}
	if res.Err.Error() != "2 of 6 roster changes failed, first: update refused" {
		t.Errorf("error %q", res.Err)
	}
	if store.batches != 1 || store.puts != 0 {
		t.Errorf("%d batches, %d single writes", store.batches, store.puts)
	}

	// A refused request while the store still batches fails the whole
	// plan, without single writes.
	store.refuse = errors.New("timeout")
	store.fail = nil
	res = s.Sync(context.Background(), "john")
	if res.Added+res.Updated+res.Removed != 0 || res.Err == nil || res.Err.Error() != "2 of 2 roster changes failed, first: timeout" {
		t.Errorf("sync = %+v", res)
	}
	if store.puts != 0 {
		t.Errorf("%d single writes after a refused batch", store.puts)
	}

	// Without CanBatch: item by item.
	store.can = false
	res = s.Sync(context.Background(), "john")
	if res.Err != nil || res.Added != 1 || res.Updated != 1 || store.puts != 2 {
		t.Errorf("sync = %+v with %d single writes", res, store.puts)
	}
}
