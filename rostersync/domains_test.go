package rostersync

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// domainLink is a Link whose readiness is set per domain.
type domainLink struct {
	mu      sync.Mutex
	errs    map[string]error // by domain; missing: ready
	changed chan struct{}
}

func newDomainLink() *domainLink {
	return &domainLink{errs: map[string]error{}, changed: make(chan struct{})}
}

func (l *domainLink) Ready(domain string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs[domain]
}

func (l *domainLink) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// set makes domain not ready with err (nil: ready) and tells the waiters.
func (l *domainLink) set(domain string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		delete(l.errs, domain)
	} else {
		l.errs[domain] = err
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// memStore keeps rosters in memory, by owner's bare JID.
type memStore struct {
	mu      sync.Mutex
	rosters map[string]map[string]roster.Item
}

func (m *memStore) Roster(_ context.Context, owner string) ([]roster.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var items []roster.Item
	for _, it := range m.rosters[owner] {
		items = append(items, it)
	}
	return items, nil
}

func (m *memStore) Put(_ context.Context, owner string, it roster.Item) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rosters == nil {
		m.rosters = map[string]map[string]roster.Item{}
	}
	if m.rosters[owner] == nil {
		m.rosters[owner] = map[string]roster.Item{}
	}
	m.rosters[owner][it.JID] = it
	return nil
}

func (m *memStore) Remove(_ context.Context, owner, contact string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rosters[owner], contact)
	return nil
}

// contacts returns the contacts of owner's roster, sorted.
func (m *memStore) contacts(owner string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for c := range m.rosters[owner] {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// jidFetcher serves rosters by the owner's bare JID and records fetches as
// "bare JID" or, for conditional ones, "bare JID if-changed".
type jidFetcher struct {
	mu      sync.Mutex
	rosters map[string][]roster.Item
	seen    map[string]bool // answered by FetchChanged: a 304 may follow
	calls   []string
}

func (f *jidFetcher) Fetch(_ context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, owner.String())
	return rosterhttp.Roster{Items: slices.Clone(f.rosters[owner.String()])}, nil
}

func (f *jidFetcher) FetchChanged(_ context.Context, owner jid.JID, ifChanged bool) (rosterhttp.Roster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := owner.String()
	if ifChanged {
		f.calls = append(f.calls, u+" if-changed")
		if f.seen[u] {
			return rosterhttp.Roster{NotModified: true}, nil
		}
	} else {
		f.calls = append(f.calls, u)
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	f.seen[u] = true
	return rosterhttp.Roster{Items: slices.Clone(f.rosters[u]), Validated: true}, nil
}

func (f *jidFetcher) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

var errNotGranted = errors.New("roster privilege not granted: the server sent no privilege for nopriv.test")

// domainsSyncer is a Syncer of example.test (the default), other.test and
// nopriv.test, whose privilege is not granted.
func domainsSyncer(t *testing.T, cfg SyncerConfig) (*Syncer, *domainLink, *memStore, *jidFetcher) {
	t.Helper()
	link, store := newDomainLink(), &memStore{}
	link.set("nopriv.test", errNotGranted)
	f := &jidFetcher{rosters: map[string][]roster.Item{
		"john@example.test": {item("anna@example.test", "Anna")},
		"john@other.test":   {item("bert@other.test", "Bert"), item("anna@example.test", "Anna")},
	}}
	cfg.UserDomain, cfg.UserDomains = "example.test", []string{"Other.TEST", "nopriv.test", "example.test"}
	cfg.Window, cfg.SyncTimeout = 4, 5*time.Second
	s := NewSyncer(cfg, link, store, f, discard)
	run(t, s.Run)
	return s, link, store, f
}

func TestSyncSeveralDomains(t *testing.T) {
	s, _, store, f := domainsSyncer(t, SyncerConfig{RememberSyncs: time.Hour})
	ctx := context.Background()
	if got := s.Domains(); !slices.Equal(got, []string{"example.test", "other.test", "nopriv.test"}) {
		t.Errorf("Domains() = %q", got)
	}

	// A localpart is the default domain's user; a bare JID names its domain.
	res := s.Sync(ctx, "john")
	if res.Err != nil || res.User != "john" || res.Domain != "example.test" || res.Added != 1 {
		t.Fatalf("Sync(john) = %+v", res)
	}
	res = s.Sync(ctx, "john@OTHER.test")
	if res.Err != nil || res.User != "john@other.test" || res.Domain != "other.test" || res.Added != 2 {
		t.Fatalf("Sync(john@other.test) = %+v", res)
	}
	if got := store.contacts("john@example.test"); !slices.Equal(got, []string{"anna@example.test"}) {
		t.Errorf("roster of john@example.test: %q", got)
	}
	if got := store.contacts("john@other.test"); !slices.Equal(got, []string{"anna@example.test", "bert@other.test"}) {
		t.Errorf("roster of john@other.test: %q", got)
	}
	// The default domain spelt out is the same user.
	res = s.Sync(ctx, "john@example.test")
	if res.Err != nil || res.User != "john" || res.Added+res.Updated+res.Removed != 0 {
		t.Errorf("Sync(john@example.test) = %+v", res)
	}
	if got := f.takeCalls(); !slices.Equal(got, []string{"john@example.test", "john@other.test", "john@example.test"}) {
		t.Errorf("fetches %q", got)
	}

	// A domain served but not ready fails that user, before any fetch.
	res = s.Sync(ctx, "john@nopriv.test")
	if !errors.Is(res.Err, errNotGranted) || res.User != "john@nopriv.test" || res.Domain != "nopriv.test" {
		t.Errorf("Sync(john@nopriv.test) = %+v", res)
	}
	// A domain not served fails at once.
	res = s.Sync(ctx, "john@third.test")
	if !errors.Is(res.Err, rosterhttp.ErrDomainNotServed) || res.Domain != "" ||
		!strings.Contains(res.Err.Error(), "domain third.test is not one of the user domains served here (example.test, other.test, nopriv.test)") {
		t.Errorf("Sync(john@third.test) = %+v", res)
	}
	if got := f.takeCalls(); len(got) != 0 {
		t.Errorf("fetches %q for users that cannot be synced", got)
	}

	// Remembered syncs are per bare JID.
	for user, want := range map[string]bool{"john": true, "john@example.test": true, "john@other.test": true,
		"john@nopriv.test": false, "john@third.test": false, "mary@other.test": false} {
		if got := s.SyncedWithin(user, time.Hour); got != want {
			t.Errorf("SyncedWithin(%s) = %v, want %v", user, got, want)
		}
	}

	// Pushes and previews take bare JIDs too.
	res = s.Push(ctx, "mary@other.test", rosterhttp.Roster{Items: []roster.Item{item("bert@other.test", "Bert")}})
	if res.Err != nil || res.User != "mary@other.test" || res.Added != 1 {
		t.Errorf("Push(mary@other.test) = %+v", res)
	}
	if got := store.contacts("mary@other.test"); !slices.Equal(got, []string{"bert@other.test"}) {
		t.Errorf("roster of mary@other.test: %q", got)
	}
	if res := s.Push(ctx, "mary@third.test", rosterhttp.Roster{}); !errors.Is(res.Err, rosterhttp.ErrDomainNotServed) {
		t.Errorf("Push(mary@third.test) = %+v", res)
	}
	f.rosters["john@other.test"] = nil
	p, err := s.Preview(ctx, "john@other.test")
	if err != nil || p.User != "john@other.test" || len(p.Remove) != 2 {
		t.Errorf("Preview(john@other.test) = %+v, %v", p, err)
	}
	if _, err := s.Preview(ctx, "john@third.test"); !errors.Is(err, rosterhttp.ErrDomainNotServed) {
		t.Errorf("Preview(john@third.test): %v", err)
	}
}

func TestReadySeveralDomains(t *testing.T) {
	s, link, _, _ := domainsSyncer(t, SyncerConfig{})
	// The default domain decides; the others are reported.
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready() = %v with the default domain granted", err)
	}
	got := s.ReadyDomains()
	if len(got) != 3 || got[0] != (DomainReady{Domain: "example.test", Default: true}) || got[1] != (DomainReady{Domain: "other.test"}) ||
		got[2].Domain != "nopriv.test" || !errors.Is(got[2].Err, errNotGranted) {
		t.Errorf("ReadyDomains() = %+v", got)
	}

	errDefault := errors.New("roster privilege not granted for example.test")
	link.set("example.test", errDefault)
	err := s.Ready()
	var nr *NotReadyError
	if !errors.As(err, &nr) || !errors.Is(err, errDefault) || !errors.Is(err, errNotGranted) {
		t.Fatalf("Ready() = %v", err)
	}
	if want := "not ready for example.test, nopriv.test: " + errDefault.Error() + "; " + errNotGranted.Error(); err.Error() != want {
		t.Errorf("Ready() = %q\nwant %q", err, want)
	}

	// The same reason everywhere (not connected) is said once.
	errDown := errors.New("not connected to the XMPP server")
	for _, d := range []string{"example.test", "other.test", "nopriv.test"} {
		link.set(d, errDown)
	}
	if err := s.Ready(); err != errDown {
		t.Errorf("Ready() = %v, want %v", err, errDown)
	}
}

func TestConditionalStatePerBareJID(t *testing.T) {
	s, link, _, f := domainsSyncer(t, SyncerConfig{RememberUsers: 10, ReconcileInterval: time.Hour})
	ctx := context.Background()
	for _, user := range []string{"john", "john@other.test", "john", "john@other.test"} {
		if res := s.Sync(ctx, user); res.Err != nil {
			t.Fatalf("Sync(%s): %v", user, res.Err)
		}
	}
	// john@other.test's first sync does not use john@example.test's state.
	want := []string{"john@example.test", "john@other.test", "john@example.test if-changed", "john@other.test if-changed"}
	if got := f.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("fetches %q, want %q", got, want)
	}

	// Losing one domain that was ready forgets what is remembered: the
	// server may come back with other rosters.
	link.set("other.test", errors.New("privilege lost"))
	componenttest.WaitFor(t, "forgotten", func() bool { return s.states.Len() == 0 })
	link.set("other.test", nil)
	if res := s.Sync(ctx, "john"); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := f.takeCalls(); !slices.Equal(got, []string{"john@example.test"}) {
		t.Errorf("fetches %q after the loss, want a plain one", got)
	}
}

func TestLoginSeveralDomains(t *testing.T) {
	s, _, store, f := domainsSyncer(t, SyncerConfig{RememberSyncs: time.Hour})
	f.rosters["bob@other.test"] = []roster.Item{item("bert@other.test", "Bert")}
	counts := &loginCounts{}
	l := NewLoginRefresher(LoginConfig{Observer: counts, MinInterval: time.Hour}, s, discard)
	run(t, l.Run)
	for _, from := range []string{"x@third.test/r", "bob@other.test/phone", "john@example.test/pc"} {
		l.Presence(jid.MustParse(from), true)
	}
	componenttest.WaitFor(t, "two login refreshes", func() bool { return counts.Stats().OK == 2 })
	if got := f.takeCalls(); !slices.Contains(got, "bob@other.test") || !slices.Contains(got, "john@example.test") || len(got) != 2 {
		t.Errorf("fetches %q", got)
	}
	if got := store.contacts("bob@other.test"); !slices.Equal(got, []string{"bert@other.test"}) {
		t.Errorf("roster of bob@other.test: %q", got)
	}
	if counts.Online() != 2 {
		t.Errorf("online = %d, want bob and john, not the user of a domain not served", counts.Online())
	}
	// Synced at login: a second session of each is recent.
	l.Presence(jid.MustParse("bob@other.test/laptop"), true)
	componenttest.WaitFor(t, "recent", func() bool { return counts.Stats().Recent == 1 })
}
