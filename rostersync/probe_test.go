package rostersync

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// probeStore is a PresenceProber in memory: it records every write and
// every probe in one log, in order, and fails the Puts of the JIDs in fail
// and every probe while probeErr is set.
type probeStore struct {
	mu       sync.Mutex
	items    map[string]roster.Item
	fail     map[string]error
	probeErr error
	offline  bool     // ProbePresence sends nothing, without an error
	log      []string // "put JID", "remove JID", "probe JID,JID..."
	probes   [][]string
}

func (p *probeStore) Roster(context.Context, string) ([]roster.Item, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []roster.Item
	for _, it := range p.items {
		out = append(out, it)
	}
	return out, nil
}

func (p *probeStore) Put(_ context.Context, _ string, it roster.Item) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, "put "+it.JID)
	if err := p.fail[it.JID]; err != nil {
		return err
	}
	p.items[it.JID] = it
	return nil
}

func (p *probeStore) Remove(_ context.Context, _, contact string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, "remove "+contact)
	delete(p.items, contact)
	return nil
}

func (p *probeStore) ProbePresence(_ context.Context, owner string, contacts []string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if owner != "john@example.test" {
		return 0, errors.New("wrong owner " + owner)
	}
	sorted := slices.Sorted(slices.Values(contacts))
	p.log = append(p.log, "probe")
	p.probes = append(p.probes, sorted)
	if p.offline {
		return 0, nil
	}
	if p.probeErr != nil {
		return len(contacts) - 1, p.probeErr
	}
	return len(contacts), nil
}

// take returns the log and the probes since the last call.
func (p *probeStore) take() (log []string, probes [][]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	log, probes = p.log, p.probes
	p.log, p.probes = nil, nil
	return log, probes
}

func sub(j, s string) roster.Item { return roster.Item{JID: j, Subscription: s} }

// Probes go, once the writes are done, exactly to the contacts whose item
// gained "to" (none or from, or no item, before; to or both after) and
// whose write succeeded; a failed probe is counted and does not fail the
// sync.
func TestSyncProbesOnlyContactsThatGainedTo(t *testing.T) {
	errPut := errors.New("put refused")
	store := &probeStore{items: map[string]roster.Item{
		"none2both@example.test": sub("none2both@example.test", "none"),
		"from2to@example.test":   sub("from2to@example.test", "from"),
		"to2both@example.test":   sub("to2both@example.test", "to"),
		"both2none@example.test": sub("both2none@example.test", "both"),
		"rename@example.test":    sub("rename@example.test", "both"),
		"gone@example.test":      sub("gone@example.test", "none"),
		"failing@example.test":   sub("failing@example.test", "none"),
	}, fail: map[string]error{"failing@example.test": errPut, "newfail@example.test": errPut}}
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, CompareSubscription: CompareAlways}, fakeLink{}, store, f, discard)
	run(t, s.Run)
	f.set("john",
		sub("none2both@example.test", "both"),                                    // gained to
		sub("from2to@example.test", "to"),                                        // gained to
		sub("to2both@example.test", "both"),                                      // had to already
		sub("both2none@example.test", "none"),                                    // lost it
		roster.Item{JID: "rename@example.test", Name: "R", Subscription: "both"}, // had both
		sub("failing@example.test", "both"),                                      // would gain to, but the write fails
		sub("newboth@example.test", "both"),                                      // new: gained to
		sub("newto@example.test", "to"),                                          // new: gained to
		sub("newfrom@example.test", "from"),                                      // new, one-way from: no
		sub("newnone@example.test", "none"),                                      // new, none: no
		sub("newfail@example.test", "both"),                                      // new, write fails
	)
	res := s.Sync(context.Background(), "john")
	if !errors.Is(res.Err, errPut) || res.Added != 4 || res.Updated != 5 || res.Removed != 1 {
		t.Fatalf("sync = %+v", res)
	}
	log, probes := store.take()
	if want := [][]string{{"from2to@example.test", "newboth@example.test", "newto@example.test", "none2both@example.test"}}; !slices.EqualFunc(probes, want, slices.Equal) {
		t.Fatalf("probes %v, want %v", probes, want)
	}
	if i := slices.Index(log, "probe"); i != len(log)-1 || len(log) != 13 {
		t.Fatalf("the probe was not sent after every write: %v", log)
	}
	if res.Probed != 4 || res.ProbesFailed != 0 {
		t.Errorf("probes counted %d sent, %d failed", res.Probed, res.ProbesFailed)
	}

	// The next sync writes only the two that failed; one probe fails:
	// counted, logged, and the sync still succeeds.
	delete(store.fail, "failing@example.test")
	delete(store.fail, "newfail@example.test")
	store.probeErr = errors.New("send_stanza not allowed")
	res = s.Sync(context.Background(), "john")
	if res.Err != nil || res.Added != 1 || res.Updated != 1 || res.Probed != 1 || res.ProbesFailed != 1 {
		t.Fatalf("second sync = %+v", res)
	}
	if _, probes := store.take(); !slices.EqualFunc(probes, [][]string{{"failing@example.test", "newfail@example.test"}}, slices.Equal) {
		t.Fatalf("probes %v", probes)
	}

	// Nothing to write: no probe.
	if res := s.Sync(context.Background(), "john"); res.Err != nil || res.Added+res.Updated+res.Removed+res.Probed != 0 {
		t.Fatalf("third sync = %+v", res)
	}
	if log, probes := store.take(); len(probes) != 0 || len(log) != 0 {
		t.Fatalf("no-op sync: log %v, probes %v", log, probes)
	}
}

// A sync whose every write fails sends no probe.
func TestSyncNoProbeWithoutSuccessfulWrite(t *testing.T) {
	errPut := errors.New("put refused")
	store := &probeStore{items: map[string]roster.Item{}, fail: map[string]error{"a@example.test": errPut}}
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, CompareSubscription: CompareAlways}, fakeLink{}, store, f, discard)
	run(t, s.Run)
	f.set("john", sub("a@example.test", "both"))
	if res := s.Sync(context.Background(), "john"); !errors.Is(res.Err, errPut) || res.Probed+res.ProbesFailed != 0 {
		t.Fatalf("sync = %+v", res)
	}
	if _, probes := store.take(); len(probes) != 0 {
		t.Fatalf("probes %v", probes)
	}
}

// batchProber is a BatchStore that is also a PresenceProber.
type batchProber struct {
	*batchStore
	probes [][]string
}

func (b *batchProber) ProbePresence(_ context.Context, _ string, contacts []string) (int, error) {
	b.probes = append(b.probes, slices.Sorted(slices.Values(contacts)))
	return len(contacts), nil
}

// Through a batch, only the items the batch applied are probed.
func TestBatchProbesAppliedItemsOnly(t *testing.T) {
	store := &batchProber{batchStore: &batchStore{can: true, items: map[string]roster.Item{
		"upd@example.test": item("upd@example.test", "Old"),
	}, fail: map[string]error{"add2@example.test": errors.New("add refused")}}}
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, CompareSubscription: CompareAlways}, fakeLink{}, store, f, discard)
	run(t, s.Run)
	f.set("john", item("upd@example.test", "New"), item("add1@example.test", "A"), item("add2@example.test", "B"), item("add3@example.test", "C"))
	res := s.Sync(context.Background(), "john")
	if res.Err == nil || res.Added != 2 || res.Updated != 1 || res.Probed != 2 {
		t.Fatalf("sync = %+v", res)
	}
	if want := [][]string{{"add1@example.test", "add3@example.test"}}; !slices.EqualFunc(store.probes, want, slices.Equal) {
		t.Fatalf("probes %v, want %v", store.probes, want)
	}
}

// Probes the store did not send for want of an online user are not
// failures.
func TestSyncProbeOfOfflineUserIsNoFailure(t *testing.T) {
	store := &probeStore{items: map[string]roster.Item{}, offline: true}
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, CompareSubscription: CompareAlways}, fakeLink{}, store, f, discard)
	run(t, s.Run)
	f.set("john", sub("a@example.test", "both"))
	if res := s.Sync(context.Background(), "john"); res.Err != nil || res.Added != 1 || res.Probed != 0 || res.ProbesFailed != 0 {
		t.Fatalf("sync = %+v", res)
	}
	if _, probes := store.take(); len(probes) != 1 {
		t.Fatalf("probes %v", probes)
	}
}
