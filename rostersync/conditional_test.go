package rostersync

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// condFetcher is a backend with validators, as rosterhttp.Client sees it:
// each user's roster has a version, bumped by set; FetchChanged remembers
// the version it answered and answers NotModified when asked and it is
// still current.
type condFetcher struct {
	mu           sync.Mutex
	rosters      map[string][]roster.Item
	version      map[string]int
	remembered   map[string]int // the client's cache: version last answered
	noValidators bool
	always304    bool // answers NotModified even when not asked (a broken fetcher)
	fail         error
	// calls records each fetch: "plain", "if-changed 304", "if-changed 200",
	// "unconditional".
	calls []string
}

func newCondFetcher() *condFetcher {
	return &condFetcher{rosters: map[string][]roster.Item{}, version: map[string]int{}, remembered: map[string]int{}}
}

func (f *condFetcher) set(user string, items ...roster.Item) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rosters[user] = items
	f.version[user]++
}

func (f *condFetcher) Fetch(_ context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "plain")
	return rosterhttp.Roster{Items: slices.Clone(f.rosters[owner.Localpart()])}, nil
}

func (f *condFetcher) FetchChanged(_ context.Context, owner jid.JID, ifChanged bool) (rosterhttp.Roster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := owner.Localpart()
	if f.fail != nil {
		f.calls = append(f.calls, "failed")
		delete(f.remembered, u)
		return rosterhttp.Roster{}, f.fail
	}
	v, ok := f.remembered[u]
	if f.always304 || ifChanged && ok && v == f.version[u] {
		f.calls = append(f.calls, "if-changed 304")
		return rosterhttp.Roster{NotModified: true}, nil
	}
	if ifChanged {
		f.calls = append(f.calls, "if-changed 200")
	} else {
		f.calls = append(f.calls, "unconditional")
	}
	r := rosterhttp.Roster{Items: slices.Clone(f.rosters[u])}
	if f.noValidators {
		delete(f.remembered, u)
	} else {
		f.remembered[u] = f.version[u]
		r.Validated = true
	}
	return r, nil
}

// takeCalls returns the fetches since the last call.
func (f *condFetcher) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func newCondSyncer(t *testing.T, srv *componenttest.Server, interval time.Duration, remember int) (*Syncer, *condFetcher) {
	t.Helper()
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	f := newCondFetcher()
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second,
		RememberUsers: remember, ReconcileInterval: interval}, c, c, f, discard)
	run(t, s.Run)
	return s, f
}

// expectSync syncs user and checks the result and the fetches it made.
func expectSync(t *testing.T, s *Syncer, f *condFetcher, user string, notModified bool, read string, changes int, calls ...string) Result {
	t.Helper()
	res := s.Sync(context.Background(), user)
	got := f.takeCalls()
	if res.Err != nil || res.NotModified != notModified || res.Read != read || res.Added+res.Updated+res.Removed != changes || !slices.Equal(got, calls) {
		t.Fatalf("sync of %s = %+v with fetches %q; want not_modified %v, read %q, %d changes, fetches %q",
			user, res, got, notModified, read, changes, calls)
	}
	return res
}

// age makes the user's last full read look d older.
func age(s *Syncer, user string, d time.Duration) {
	st, ok := s.states.Get(keyOfUser(user + "@example.test"))
	if ok {
		st.readAt = st.readAt.Add(-d)
		s.states.Put(keyOfUser(user+"@example.test"), st)
	}
}

// On a server without versioned reads (Prosody), a 304 within the
// reconcile interval skips the sync: no read, no write. A change made
// behind the sidecar's back then survives until the first sync after the
// interval, which reads in full and reverts it.
func TestConditionalSyncReconcileInterval(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.set("john", item("marie@example.test", "Marie"), item("paul@example.test", "Paul"))
	want := []string{"marie@example.test|Marie|both|", "paul@example.test|Paul|both|"}

	expectSync(t, s, f, "john", false, ReadFull, 2, "unconditional")
	before := srv.Counts()
	expectSync(t, s, f, "john", true, ReadSkipped, 0, "if-changed 304")
	if after := srv.Counts(); after.Gets != before.Gets || after.Sets != before.Sets {
		t.Fatalf("a skipped sync made %d GETs and %d SETs", after.Gets-before.Gets, after.Sets-before.Sets)
	}

	// Changed behind the sidecar's back: not seen within the interval.
	srv.SetRoster("john@example.test", map[string]componenttest.Item{"marie@example.test": {Name: "Not Marie", Subscription: "both"}})
	expectSync(t, s, f, "john", true, ReadSkipped, 0, "if-changed 304")
	// The first sync after it reads in full (the fetch is not
	// conditional: a 304 could not end it) and reverts the change.
	age(s, "john", time.Hour)
	expectSync(t, s, f, "john", false, ReadFull, 2, "unconditional")
	if got := srv.Roster("john@example.test"); !slices.Equal(got, want) {
		t.Fatalf("roster = %v, want %v", got, want)
	}
	// Then 304s skip again, counted from that read.
	expectSync(t, s, f, "john", true, ReadSkipped, 0, "if-changed 304")

	// A change at the backend is applied at once.
	f.set("john", item("marie@example.test", "Marie C."), item("paul@example.test", "Paul"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "if-changed 200")
	expectSync(t, s, f, "john", true, ReadSkipped, 0, "if-changed 304")
}

// With a zero reconcile interval and no versioned read, every sync reads
// in full, and the fetch is never conditional (a 304 could not end it).
func TestConditionalSyncIntervalZeroAlwaysReads(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, 0, 100)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
	expectSync(t, s, f, "john", false, ReadFull, 0, "unconditional")
	srv.SetRoster("john@example.test", map[string]componenttest.Item{})
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
}

// On a server with versioned reads (ejabberd with mod_roster versioning),
// once a full read has found the roster in line, a 304 costs a versioned
// read answered "unchanged"; a change behind the sidecar's back is seen by
// it at once, and the backend is asked again for the roster to revert it.
func TestConditionalSyncVersionedRead(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.Versioning()
	s, f := newCondSyncer(t, srv, 0, 100)
	f.set("john", item("marie@example.test", "Marie"), item("paul@example.test", "Paul"))
	want := []string{"marie@example.test|Marie|both|", "paul@example.test|Paul|both|"}

	expectSync(t, s, f, "john", false, ReadFull, 2, "unconditional")
	// It wrote: the version it read is stale, and with no reconcile
	// interval the next sync reads in full, learning the version.
	expectSync(t, s, f, "john", false, ReadFull, 0, "unconditional")
	gets, sets := srv.Counts().Gets, srv.Counts().Sets
	for range 3 {
		expectSync(t, s, f, "john", true, ReadUnchanged, 0, "if-changed 304")
	}
	if n := srv.VersionedGets(); n != 3 || srv.Counts().Gets != gets+3 || srv.Counts().Sets != sets {
		t.Fatalf("3 no-op syncs: %d versioned GETs answered unchanged, %d GETs, %d SETs", n, srv.Counts().Gets-gets, srv.Counts().Sets-sets)
	}

	srv.SetRoster("john@example.test", map[string]componenttest.Item{
		"marie@example.test": {Name: "Not Marie", Subscription: "both"},
		"paul@example.test":  {Name: "Paul", Subscription: "both"},
		"stray@example.test": {Name: "Stray", Subscription: "both"},
	})
	expectSync(t, s, f, "john", false, ReadFull, 2, "if-changed 304", "unconditional")
	if got := srv.Roster("john@example.test"); !slices.Equal(got, want) {
		t.Fatalf("roster = %v, want %v", got, want)
	}
	expectSync(t, s, f, "john", false, ReadFull, 0, "unconditional")
	expectSync(t, s, f, "john", true, ReadUnchanged, 0, "if-changed 304")
}

// With a reconcile interval, a server with versioned reads skips the read
// after a sync that wrote, like one without, until a full read has found
// the roster in line; then versioned reads take over.
func TestConditionalSyncVersionedWithInterval(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.Versioning()
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
	expectSync(t, s, f, "john", true, ReadSkipped, 0, "if-changed 304")
	age(s, "john", time.Hour)
	expectSync(t, s, f, "john", false, ReadFull, 0, "unconditional")
	expectSync(t, s, f, "john", true, ReadUnchanged, 0, "if-changed 304")
	srv.SetRoster("john@example.test", map[string]componenttest.Item{})
	expectSync(t, s, f, "john", false, ReadFull, 1, "if-changed 304", "unconditional")
}

// A backend that sends no validators is fetched and read in full every
// time, exactly as without conditional fetches.
func TestConditionalSyncBackendWithoutValidators(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.Versioning()
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.noValidators = true
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
	for range 2 {
		expectSync(t, s, f, "john", false, ReadFull, 0, "unconditional")
	}
	if n := srv.VersionedGets(); n != 0 {
		t.Fatalf("%d versioned GETs", n)
	}
	if s.states.Len() != 0 {
		t.Fatalf("%d users remembered", s.states.Len())
	}
}

// Without RememberUsers, or when the Fetcher cannot fetch conditionally,
// syncs fetch and read in full.
func TestConditionalSyncOff(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 0)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "plain")
	expectSync(t, s, f, "john", false, ReadFull, 0, "plain")

	s2, f2 := newTestSyncer(t, srv) // a plain Fetcher
	f2.set("john", item("marie@example.test", "Marie"))
	if res := s2.Sync(context.Background(), "john"); res.Err != nil || res.Read != ReadFull || res.NotModified {
		t.Fatalf("plain fetcher: %+v", res)
	}
}

// A failed sync forgets the user: the next sync is not conditional.
func TestConditionalSyncFailureForgets(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")

	// The writes of a sync fail.
	f.set("john", item("marie@example.test", "Marie"), item("new@example.test", "New"))
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		if iq.Type == "set" {
			return fmt.Sprintf(`<iq type='error' id='%s' from='%s' to='%s'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, iq.ID, iq.To, iq.From), 0
		}
		return srv.AnswerRoster(iq), 0
	})
	if res := s.Sync(context.Background(), "john"); res.Err == nil {
		t.Fatalf("sync with failing SETs = %+v", res)
	}
	f.takeCalls()
	srv.SetReply(nil)
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")

	// The fetch fails.
	f.mu.Lock()
	f.fail = errors.New("backend answered 500")
	f.mu.Unlock()
	if res := s.Sync(context.Background(), "john"); res.Err == nil || res.Read != "" {
		t.Fatalf("sync with a failing fetch = %+v", res)
	}
	f.takeCalls()
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	expectSync(t, s, f, "john", false, ReadFull, 0, "unconditional")
	expectSync(t, s, f, "john", true, ReadSkipped, 0, "if-changed 304")
}

// At most RememberUsers users are remembered, the least recently synced
// forgotten first.
func TestConditionalSyncRememberBound(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 2)
	for _, u := range []string{"u1", "u2", "u3"} {
		f.set(u, item("marie@example.test", "Marie"))
		expectSync(t, s, f, u, false, ReadFull, 1, "unconditional")
	}
	if n := s.states.Len(); n != 2 {
		t.Fatalf("%d users remembered, want 2", n)
	}
	expectSync(t, s, f, "u2", true, ReadSkipped, 0, "if-changed 304")
	expectSync(t, s, f, "u3", true, ReadSkipped, 0, "if-changed 304")
	expectSync(t, s, f, "u1", false, ReadFull, 0, "unconditional")
}

// When the link to the server is lost, every user is forgotten: the
// server may come back with other rosters.
func TestConditionalSyncLinkLossForgets(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
	accepted := srv.Counts().Accepted
	srv.DropAll()
	componenttest.WaitFor(t, "forgotten", func() bool { return s.states.Len() == 0 })
	componenttest.WaitFor(t, "reconnected", func() bool { return srv.Counts().Accepted > accepted && s.Ready() == nil })
	srv.SetRoster("john@example.test", map[string]componenttest.Item{})
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
}

// Preview fetches and reads in full, and leaves the remembered state alone.
func TestConditionalSyncPreview(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
	f.set("john", item("marie@example.test", "Marie"), item("new@example.test", "New"))
	p, err := s.Preview(context.Background(), "john")
	if err != nil || len(p.Add) != 1 {
		t.Fatalf("Preview = %+v, %v", p, err)
	}
	if got := f.takeCalls(); !slices.Equal(got, []string{"plain"}) {
		t.Fatalf("Preview fetched %q", got)
	}
	expectSync(t, s, f, "john", false, ReadFull, 1, "if-changed 200")
}

// TestRememberedUserMemory measures what a remembered user costs the
// Syncer, so that the figure in docs/configuration.md
// (backend.conditional_cache) stays true: a full cache of 20,000 users
// with ejabberd's 40-character roster versions.
func TestRememberedUserMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a full cache")
	}
	const n = 20_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	states := newStates(n)
	for i := range n + n/2 {
		states.Put(keyOfUser(fmt.Sprintf("user-%d", i)), syncState{readAt: time.Now(), version: fmt.Sprintf("%040x", i)})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per remembered user (documented: about %d)", per, stateBytes)
	if per > stateBytes*1.25 {
		t.Errorf("%.0f bytes per remembered user, more than the documented %d", per, stateBytes)
	}
	runtime.KeepAlive(states)
}

// A NotModified the Syncer did not ask for fails the sync rather than
// skip it.
func TestConditionalSyncUnaskedNotModified(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, 0, 100)
	f.set("john", item("marie@example.test", "Marie"))
	f.always304 = true
	if res := s.Sync(context.Background(), "john"); res.Err == nil || res.NotModified || res.Read != "" {
		t.Fatalf("sync = %+v, want an error", res)
	}
	if n := srv.Counts(); n.Gets != 0 || n.Sets != 0 {
		t.Fatalf("server saw %+v", n)
	}
}

// A push changes the server roster without a backend answer: the next
// refresh must not let a 304 skip the read, so the backend's roster comes
// back.
func TestConditionalSyncAfterAPush(t *testing.T) {
	srv := componenttest.NewServer(t)
	s, f := newCondSyncer(t, srv, time.Hour, 100)
	f.set("john", item("marie@example.test", "Marie"))
	expectSync(t, s, f, "john", false, ReadFull, 1, "unconditional")
	if res := s.Push(context.Background(), "john", rosterhttp.Roster{Items: []roster.Item{item("paul@example.test", "Paul")}}); res.Err != nil || res.Added != 1 || res.Removed != 1 {
		t.Fatalf("Push = %+v", res)
	}
	f.takeCalls()
	expectSync(t, s, f, "john", false, ReadFull, 2, "unconditional")
	if got := srv.Roster("john@example.test"); !slices.Equal(got, []string{"marie@example.test|Marie|both|"}) {
		t.Fatalf("roster after the refresh = %v, want the backend's", got)
	}
}
