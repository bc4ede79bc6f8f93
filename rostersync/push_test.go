package rostersync

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// gateFetcher serves rosters from memory; while gate is set, each fetch
// reports its start on started and waits for gate to close.
type gateFetcher struct {
	mu      sync.Mutex
	rosters map[string][]roster.Item
	calls   int
	gate    chan struct{}
	started chan string
}

func (f *gateFetcher) Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	f.mu.Lock()
	f.calls++
	items, gate := f.rosters[owner.Localpart()], f.gate
	f.mu.Unlock()
	if gate != nil {
		f.started <- owner.Localpart()
		select {
		case <-gate:
		case <-ctx.Done():
			return rosterhttp.Roster{}, ctx.Err()
		}
	}
	return rosterhttp.Roster{Items: items}, nil
}

func (f *gateFetcher) set(user string, items ...roster.Item) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rosters[user] = items
}

func (f *gateFetcher) fetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// hold makes the next fetches wait until the returned function is called.
func (f *gateFetcher) hold() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate, f.started = make(chan struct{}), make(chan string, 16)
	gate := f.gate
	return func() {
		f.mu.Lock()
		f.gate = nil
		f.mu.Unlock()
		close(gate)
	}
}

func newPushSyncer(t *testing.T) (*Syncer, *gateFetcher, *componenttest.Server) {
	t.Helper()
	srv := componenttest.NewServer(t)
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := &gateFetcher{rosters: map[string][]roster.Item{}}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second}, c, c, f, discard)
	run(t, s.Run)
	return s, f, srv
}

// queued waits until the sync queued after user's running one satisfies
// cond.
func queued(t *testing.T, s *Syncer, user string, cond func(*syncCall) bool) {
	t.Helper()
	componenttest.WaitFor(t, "the queued sync", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		q := s.users[user+"@example.test"]
		return q != nil && q.next != nil && cond(q.next)
	})
}

// async runs f in a goroutine and returns a channel with its result.
func async(f func() Result) <-chan Result {
	ch := make(chan Result, 1)
	go func() { ch <- f() }()
	return ch
}

func pushed(items ...roster.Item) rosterhttp.Roster { return rosterhttp.Roster{Items: items} }

func TestPushAppliesWithoutFetch(t *testing.T) {
	s, f, srv := newPushSyncer(t)
	srv.SetRoster("john@example.test", map[string]componenttest.Item{"old@example.test": {Name: "Old", Subscription: "both"}})
	skipped := []rosterhttp.Skipped{{JID: "a@b@c", Reason: "not a valid JID"}}
	desired := pushed(item("marie@example.test", "Marie", "Friends"))
	desired.Skipped = skipped
	res := s.Push(context.Background(), "john", desired)
	if res.Err != nil || res.Added != 1 || res.Removed != 1 || !slices.Equal(res.Skipped, skipped) {
		t.Fatalf("Push = %+v", res)
	}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{"marie@example.test|Marie|both|Friends"}) {
		t.Fatalf("roster = %v", got)
	}
	if n := f.fetches(); n != 0 {
		t.Fatalf("backend fetched %d times for a push", n)
	}
	// A refresh afterwards fetches again: the push is not remembered.
	f.set("john", item("kim@example.test", "Kim"))
	if res := s.Sync(context.Background(), "john"); res.Err != nil || res.Added != 1 || res.Removed != 1 || f.fetches() != 1 {
		t.Fatalf("Sync after Push = %+v, %d fetches", res, f.fetches())
	}
}

// A push that arrives while a refresh runs is applied after it.
func TestPushWhileRefreshRuns(t *testing.T) {
	s, f, srv := newPushSyncer(t)
	f.set("john", item("old@example.test", "Old"))
	release := f.hold()
	refresh := async(func() Result { return s.Sync(context.Background(), "john") })
	<-f.started
	push := async(func() Result { return s.Push(context.Background(), "john", pushed(item("new@example.test", "New"))) })
	queued(t, s, "john", func(c *syncCall) bool { return c.pushed != nil })
	release()
	if r := <-refresh; r.Err != nil || r.Added != 1 {
		t.Fatalf("refresh = %+v", r)
	}
	if r := <-push; r.Err != nil || r.Added != 1 || r.Removed != 1 {
		t.Fatalf("push = %+v", r)
	}
	if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{"new@example.test|New|both|"}) {
		t.Fatalf("roster = %v, want the push", got)
	}
	if n := f.fetches(); n != 1 {
		t.Fatalf("%d fetches, want 1 (the running refresh)", n)
	}
}

// The latest request to arrive decides what the queued sync applies, and
// every request waiting for it gets its result.
func TestPushAndRefreshQueuedLastWins(t *testing.T) {
	for _, tt := range []struct {
		name    string
		order   []string // requests queued behind the running sync, in order of arrival
		want    string   // the roster item it ends with, as jid|name
		fetches int
	}{
		{"refresh then push", []string{"refresh", "push1"}, "push1@example.test|push1", 1},
		{"push then refresh", []string{"push1", "refresh"}, "fetched@example.test|F", 2},
		{"push then push", []string{"push1", "push2"}, "push2@example.test|push2", 1},
		{"push, refresh, push", []string{"push1", "refresh", "push2"}, "push2@example.test|push2", 1},
		{"push then login", []string{"push1", "login"}, "push1@example.test|push1", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, f, srv := newPushSyncer(t)
			f.set("john", item("running@example.test", "R"))
			release := f.hold()
			running := async(func() Result { return s.Sync(context.Background(), "john") })
			<-f.started
			f.set("john", item("fetched@example.test", "F"))
			var waiting []<-chan Result
			for _, req := range tt.order {
				switch req {
				case "refresh":
					waiting = append(waiting, async(func() Result { return s.Sync(context.Background(), "john") }))
					queued(t, s, "john", func(c *syncCall) bool { return c.pushed == nil })
				case "login":
					waiting = append(waiting, async(func() Result { return s.SyncJoin(context.Background(), "john") }))
					time.Sleep(50 * time.Millisecond) // a join changes nothing to wait for
				default:
					desired := pushed(item(req+"@example.test", req))
					waiting = append(waiting, async(func() Result { return s.Push(context.Background(), "john", desired) }))
					queued(t, s, "john", func(c *syncCall) bool {
						return c.pushed != nil && c.pushed.Items[0].JID == req+"@example.test"
					})
				}
			}
			release()
			if r := <-running; r.Err != nil {
				t.Fatalf("running sync = %+v", r)
			}
			var first Result
			for i, ch := range waiting {
				r := <-ch
				if r.Err != nil || r.Added != 1 || r.Removed != 1 {
					t.Fatalf("%s: %+v, want the shared queued sync", tt.order[i], r)
				}
				if i == 0 {
					first = r
				} else if r.Added != first.Added || r.Removed != first.Removed {
					t.Fatalf("%s: %+v, not the shared result %+v", tt.order[i], r, first)
				}
			}
			if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{tt.want + "|both|"}) {
				t.Fatalf("roster = %v, want %s", got, tt.want)
			}
			if n := f.fetches(); n != tt.fetches {
				t.Fatalf("%d fetches, want %d", n, tt.fetches)
			}
		})
	}
}
