package rostersync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// contacts returns n items for a desired roster.
func contacts(n int) []roster.Item {
	items := make([]roster.Item, n)
	for i := range items {
		items[i] = item(fmt.Sprintf("c%03d@example.test", i), "")
	}
	return items
}

// A population that takes several times SyncTimeout succeeds while its
// writes are answered: the bound follows the work.
func TestSyncLongerThanTimeoutWhileWritesProgress(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		if iq.Type == "set" {
			return srv.AnswerRoster(iq), 25 * time.Millisecond
		}
		return srv.AnswerRoster(iq), 0
	})
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 1, SyncTimeout: 300 * time.Millisecond}, c, c, f, discard)
	run(t, s.Run)
	f.set("john", contacts(40)...)
	start := time.Now()
	res := s.Sync(context.Background(), "john")
	if res.Err != nil || res.Added != 40 {
		t.Fatalf("sync = %+v", res)
	}
	if d := time.Since(start); d < 3*300*time.Millisecond {
		t.Fatalf("the sync took %v: too short to show anything", d)
	}
}

// Writes that stop being answered fail the sync with ErrWritesStalled
// after SyncTimeout, before the IQ timeout, and nothing more is sent.
func TestSyncStalledWritesFailAndStopSending(t *testing.T) {
	srv := componenttest.NewServer(t)
	var mu sync.Mutex
	sets := 0
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		if iq.Type != "set" {
			return srv.AnswerRoster(iq), 0
		}
		mu.Lock()
		defer mu.Unlock()
		if sets++; sets > 5 {
			return "", 0 // never answered
		}
		return srv.AnswerRoster(iq), 0
	})
	c := startConn(t, testConfig(srv.Addr())) // IQ timeout 500 ms
	waitReady(t, c)
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 200 * time.Millisecond}, c, c, f, discard)
	run(t, s.Run)
	f.set("john", contacts(50)...)
	start := time.Now()
	res := s.Sync(context.Background(), "john")
	d := time.Since(start)
	if !errors.Is(res.Err, ErrWritesStalled) || res.Added != 5 {
		t.Fatalf("sync = %+v, want 5 added and ErrWritesStalled", res)
	}
	t.Logf("stalled after %v: %v", d, res.Err)
	if d >= 500*time.Millisecond {
		t.Errorf("the stalled sync ended after %v, want about its 200ms bound", d)
	}
	// 5 answered and the window of 4 left unanswered; none after.
	time.Sleep(300 * time.Millisecond)
	if n := srv.Counts().Sets; n != 9 {
		t.Errorf("server saw %d SETs, want 9", n)
	}
}

// stallStore is a Store whose writes after the first ok never end until
// their context does; it counts writes started after that.
type stallStore struct {
	ok int

	mu          sync.Mutex
	calls       int
	afterCancel int
}

func (*stallStore) Roster(context.Context, string) ([]roster.Item, error) { return nil, nil }

func (s *stallStore) Put(ctx context.Context, _ string, _ roster.Item) error {
	s.mu.Lock()
	s.calls++
	if ctx.Err() != nil {
		s.afterCancel++
	}
	n := s.calls
	s.mu.Unlock()
	if n <= s.ok {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stallStore) Remove(ctx context.Context, _, _ string) error {
	return s.Put(ctx, "", roster.Item{})
}

// The engine calls no Store method for a sync whose context has ended.
func TestSyncCallsNoStoreAfterStall(t *testing.T) {
	store := &stallStore{ok: 3}
	f := &fakeFetcher{rosters: map[string]rosterhttp.Roster{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 100 * time.Millisecond, CompareSubscription: CompareAlways},
		fakeLink{}, store, f, discard)
	run(t, s.Run)
	f.set("john", contacts(100)...)
	res := s.Sync(context.Background(), "john")
	if !errors.Is(res.Err, ErrWritesStalled) || res.Added != 3 {
		t.Fatalf("sync = %+v, want 3 added and ErrWritesStalled", res)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.calls != 3+4 || store.afterCancel != 0 {
		t.Errorf("%d writes, %d of them after the stall; want 7 and none", store.calls, store.afterCancel)
	}
}
