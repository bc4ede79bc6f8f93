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

// loginFetcher serves every user the same one-contact roster, records
// fetches per user and the most fetches at once, and can hold fetches back.
type loginFetcher struct {
	delay time.Duration
	fail  atomic.Bool

	mu            sync.Mutex
	calls         map[string]int
	order         []string
	at            []time.Time
	inFlight, max int
}

func (f *loginFetcher) Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[owner.Localpart()]++
	f.order = append(f.order, owner.Localpart())
	f.at = append(f.at, time.Now())
	f.inFlight++
	f.max = max(f.max, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return rosterhttp.Roster{}, ctx.Err()
	}
	if f.fail.Load() {
		return rosterhttp.Roster{}, errors.New("backend down")
	}
	return rosterhttp.Roster{Items: []roster.Item{item("friend@example.test", "Friend")}}, nil
}

func (f *loginFetcher) count(user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[user]
}

func (f *loginFetcher) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

// loginRig is a Conn, Syncer and LoginRefresher against the fake server.
type loginRig struct {
	srv   *componenttest.Server
	conn  *component.Conn
	sync  *Syncer
	login *loginCounts
	fetch *loginFetcher
}

func newLoginRig(t *testing.T, srv *componenttest.Server, fetch *loginFetcher, cfg LoginConfig) *loginRig {
	t.Helper()
	counts := &loginCounts{}
	cfg.Observer = counts
	c := component.NewConn(testConfig(srv.Addr()), discard)
	s := NewSyncer(SyncerConfig{UserDomain: componenttest.UserDomain, Window: 4, SyncTimeout: 5 * time.Second,
		Concurrency: 8, RememberSyncs: cfg.MinInterval}, c, c, fetch, discard)
	l := NewLoginRefresher(cfg, s, discard)
	c.SetPresenceListener(l)
	// Stopped in reverse order: the link last.
	run(t, c.Run)
	run(t, s.Run)
	run(t, l.Run)
	waitReady(t, c)
	return &loginRig{srv: srv, conn: c, sync: s, login: counts, fetch: fetch}
}

func TestLoginRefreshesANewSessionOnce(t *testing.T) {
	srv := componenttest.NewServer(t)
	r := newLoginRig(t, srv, &loginFetcher{}, LoginConfig{MinInterval: 300 * time.Millisecond, Rate: 1000, QueueSize: 10, Concurrency: 2})

	srv.SendPresence("alice@example.test/phone", "")
	componenttest.WaitFor(t, "alice's roster", func() bool {
		return slices.Equal(srv.Roster("alice@example.test"), []string{"friend@example.test|Friend|both|"})
	})
	componenttest.WaitFor(t, "the refresh to end", func() bool { return r.login.Stats().OK == 1 })
	// Status changes of the same session and a second session soon after
	// do not refresh again.
	srv.SendPresence("alice@example.test/phone", "")
	srv.SendPresence("alice@example.test/laptop", "")
	srv.SendToAll(`<presence from='alice@example.test/phone' to='roster.example.test'><show>away</show></presence>`)
	time.Sleep(100 * time.Millisecond)
	if n := r.fetch.count("alice"); n != 1 {
		t.Fatalf("alice fetched %d times, want 1", n)
	}
	if st := r.login.Stats(); st.Queued != 1 || st.OK != 1 || st.Recent != 1 {
		t.Fatalf("stats = %+v, want 1 queued, 1 ok, 1 recent (the laptop)", st)
	}
	// After the interval, a new session refreshes again; a status change
	// still does not.
	time.Sleep(300 * time.Millisecond)
	srv.SendPresence("alice@example.test/phone", "")
	time.Sleep(100 * time.Millisecond)
	if n := r.fetch.count("alice"); n != 1 {
		t.Fatalf("a status change refreshed: %d fetches", n)
	}
	srv.SendPresence("alice@example.test/phone", "unavailable")
	srv.SendPresence("alice@example.test/phone", "")
	componenttest.WaitFor(t, "second refresh", func() bool { return r.fetch.count("alice") == 2 })
}

func TestLoginIgnoresOtherPresences(t *testing.T) {
	srv := componenttest.NewServer(t)
	r := newLoginRig(t, srv, &loginFetcher{}, LoginConfig{MinInterval: time.Minute, Rate: 1000, QueueSize: 10, Concurrency: 2})
	for _, raw := range []string{
		componenttest.Presence("bob@other.test/r", ""),                                           // other domain
		componenttest.Presence("example.test", ""),                                               // no localpart
		componenttest.Presence("bob@example.test/r", "subscribe"),                                // not a session
		componenttest.Presence("bob@example.test/r", "probe"),                                    // not a session
		componenttest.Presence("bob@example.test/r", "error"),                                    // not a session
		`<presence from='not a jid@@' to='roster.example.test'/>`,                                // invalid
		`<presence from='carol@example.test/r' to='roster.example.test' type='unavailable'/>`,    // never online
		`<message from='dave@example.test/r' to='roster.example.test'><body>hi</body></message>`, // not presence
	} {
		srv.SendToAll(raw)
	}
	time.Sleep(200 * time.Millisecond)
	if n := r.fetch.total(); n != 0 {
		t.Fatalf("%d fetches for presences that are no login: %v", n, r.fetch.order)
	}
	if n := r.login.Online(); n != 0 {
		t.Fatalf("%d users online", n)
	}
}

// A presence whose children the library cannot decode (an out-of-range
// priority in any namespace, a MUC history with a bad date) must neither
// end the connection nor be lost: Prosody would send it again at every
// reconnect. Neither may messages or IQs users send the component.
func TestMalformedPresenceKeepsTheLink(t *testing.T) {
	srv := componenttest.NewServer(t)
	r := newLoginRig(t, srv, &loginFetcher{}, LoginConfig{MinInterval: time.Minute, Rate: 1000, QueueSize: 10, Concurrency: 2})
	srv.SendToAll(`<presence from='eve@example.test/r' to='roster.example.test'><priority>300</priority>` +
		`<x xmlns='http://jabber.org/protocol/muc'><history since='garbage' maxchars='x'/></x><status>hi</status></presence>`)
	srv.SendToAll(`<presence xmlns='jabber:client' from='mal@example.test/r' to='roster.example.test'><x xmlns='urn:a'><priority>128</priority></x><priority xmlns=''>abc</priority></presence>`)
	// Messages and IQs users send the component's JID, with payloads the
	// library decodes into ints.
	srv.SendToAll(`<message from='mal@example.test/r' to='roster.example.test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items max_items='x'/></event></message>`)
	srv.SendToAll(`<iq type='result' id='nobody' from='mal@example.test/r' to='roster.example.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items max_items='x'/></pubsub></iq>`)
	srv.SendToAll(`<iq type='get' id='q1' from='mal@example.test/r' to='roster.example.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><set xmlns='http://jabber.org/protocol/rsm'><count>abc</count></set></pubsub></iq>`)
	componenttest.WaitFor(t, "both refreshed", func() bool { return r.fetch.count("eve") == 1 && r.fetch.count("mal") == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := srv.Counts().Accepted; n != 1 {
		t.Fatalf("%d connections: the presence broke the link", n)
	}
	if _, err := r.conn.Roster(context.Background(), "eve@example.test"); err != nil {
		t.Fatalf("link unusable: %v", err)
	}
}

// Prosody announces every online session when the component connects. The
// burst is handled without blocking the receive goroutine, queued up to
// QueueSize, started at most Rate per second and Concurrency at once; the
// users dropped from the full queue are refreshed once it has room.
func TestLoginBurstAtConnectIsBoundedAndComplete(t *testing.T) {
	const users, queue, rate, conc = 60, 20, 200.0, 3
	srv := componenttest.NewServer(t)
	var burst []string
	for i := range users {
		burst = append(burst, componenttest.Presence(fmt.Sprintf("u%d@example.test/r", i), ""))
	}
	// u0 logs out during the burst: its drop must not lead to a refresh.
	burst = append(burst, componenttest.Presence("u59@example.test/r", "unavailable"))
	srv.AnnounceAtConnect(burst...)
	fetch := &loginFetcher{delay: 20 * time.Millisecond}
	start := time.Now()
	r := newLoginRig(t, srv, fetch, LoginConfig{MinInterval: time.Minute, Rate: rate, QueueSize: queue, Concurrency: conc})

	// The whole burst is taken in at once, long before the refreshes end.
	componenttest.WaitFor(t, "the burst to be read", func() bool { return r.login.Online() == users-1 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("reading the burst took %v", d)
	}
	componenttest.WaitFor(t, "every online user refreshed", func() bool { return fetch.total() == users-1 })
	time.Sleep(100 * time.Millisecond)
	st := r.login.Stats()
	if st.Dropped == 0 || st.OK != users-1 || st.Queued < users-1 || st.Queued > users {
		t.Errorf("stats = %+v: want drops from the full queue, and every online user queued once and refreshed", st)
	}
	if fetch.count("u59") != 0 {
		t.Error("u59, offline again, was refreshed")
	}
	fetch.mu.Lock()
	defer fetch.mu.Unlock()
	if fetch.max > conc {
		t.Errorf("%d refreshes at once, want at most %d", fetch.max, conc)
	}
	if span, minSpan := fetch.at[len(fetch.at)-1].Sub(fetch.at[0]), time.Duration(float64(users-2)/rate*float64(time.Second)); span < minSpan*9/10 {
		t.Errorf("%d refreshes started within %v, faster than %v/s", users-1, span, rate)
	}
}

// A login while the user's sync runs joins it: no second fetch.
func TestLoginJoinsARunningSync(t *testing.T) {
	srv := componenttest.NewServer(t)
	fetch := &loginFetcher{delay: 200 * time.Millisecond}
	r := newLoginRig(t, srv, fetch, LoginConfig{MinInterval: time.Minute, Rate: 1000, QueueSize: 10, Concurrency: 2})
	done := make(chan Result)
	go func() { done <- r.sync.Sync(context.Background(), "alice") }()
	componenttest.WaitFor(t, "the sync to start", func() bool { return fetch.count("alice") == 1 })
	srv.SendPresence("alice@example.test/phone", "")
	if res := <-done; res.Err != nil {
		t.Fatal(res.Err)
	}
	componenttest.WaitFor(t, "the login to end", func() bool { return r.login.Stats().OK == 1 })
	if n := fetch.count("alice"); n != 1 {
		t.Fatalf("alice fetched %d times, want 1", n)
	}
}

// A failed refresh is not remembered: the next login tries again.
func TestLoginRetriesAfterAFailedRefresh(t *testing.T) {
	srv := componenttest.NewServer(t)
	fetch := &loginFetcher{}
	fetch.fail.Store(true)
	r := newLoginRig(t, srv, fetch, LoginConfig{MinInterval: time.Minute, Rate: 1000, QueueSize: 10, Concurrency: 2})
	srv.SendPresence("alice@example.test/a", "")
	componenttest.WaitFor(t, "a failed refresh", func() bool { return r.login.Stats().Error == 1 })
	fetch.fail.Store(false)
	srv.SendPresence("alice@example.test/b", "")
	componenttest.WaitFor(t, "a good refresh", func() bool { return r.login.Stats().OK == 1 })
}

// A reconnect forgets the sessions; the ones the server announces again are
// logins again (and refreshed unless recent).
func TestLoginSessionsResetOnReconnect(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.AnnounceAtConnect(componenttest.Presence("alice@example.test/a", ""))
	fetch := &loginFetcher{}
	r := newLoginRig(t, srv, fetch, LoginConfig{MinInterval: 50 * time.Millisecond, Rate: 1000, QueueSize: 10, Concurrency: 2})
	componenttest.WaitFor(t, "first refresh", func() bool { return fetch.count("alice") == 1 })
	srv.SendPresence("bob@example.test/b", "")
	componenttest.WaitFor(t, "bob's refresh", func() bool { return fetch.count("bob") == 1 })
	time.Sleep(60 * time.Millisecond)
	srv.AnnounceAtConnect() // bob left while the link was down
	srv.DropAll()
	componenttest.WaitFor(t, "reconnect", func() bool { return srv.Counts().Accepted == 2 && r.conn.Ready("example.test") == nil })
	componenttest.WaitFor(t, "sessions forgotten", func() bool { return r.login.Online() == 0 })
	srv.AnnounceAtConnect(componenttest.Presence("alice@example.test/a", ""))
	srv.DropAll()
	componenttest.WaitFor(t, "second refresh after reconnect", func() bool { return fetch.count("alice") == 2 })
	if r.login.Online() != 1 {
		t.Fatalf("online = %d, want only alice", r.login.Online())
	}
}

func TestRunStopsAtOnceWhenIdle(t *testing.T) {
	c := component.NewConn(testConfig("127.0.0.1:1"), discard)
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 1, SyncTimeout: time.Second}, c, c, &loginFetcher{}, discard)
	l := NewLoginRefresher(LoginConfig{}, s, discard)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); _ = s.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run blocked after its context ended")
	}
}

func TestSyncedWithinRemembersSuccessesOnly(t *testing.T) {
	srv := componenttest.NewServer(t)
	c := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	fetch := &loginFetcher{}
	s := NewSyncer(SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: time.Second, RememberSyncs: 100 * time.Millisecond}, c, c, fetch, discard)
	run(t, s.Run)
	if s.SyncedWithin("alice", time.Hour) {
		t.Fatal("never synced, yet synced")
	}
	s.Sync(context.Background(), "alice")
	if !s.SyncedWithin("alice", time.Hour) || s.SyncedWithin("alice", 0) {
		t.Fatal("SyncedWithin after a sync is wrong")
	}
	fetch.fail.Store(true)
	time.Sleep(20 * time.Millisecond)
	s.Sync(context.Background(), "bob")
	if s.SyncedWithin("bob", time.Hour) {
		t.Fatal("a failed sync counts as synced")
	}
	// Many users: the map is pruned of entries older than RememberSyncs.
	fetch.fail.Store(false)
	for i := range minPruneSize {
		s.recordSync(fmt.Sprint("old", i), time.Now().Add(-time.Second))
	}
	s.recordSync("fresh@example.test", time.Now())
	s.mu.Lock()
	n := len(s.synced)
	s.mu.Unlock()
	if n > 10 {
		t.Fatalf("%d remembered syncs after pruning", n)
	}
	if !s.SyncedWithin("fresh", time.Hour) {
		t.Fatal("pruning removed a fresh entry")
	}
}

// A user who goes offline before its turn is not refreshed (the next login
// will be), and does not count against the queue.
func TestLoginOfflineBeforeItsTurnIsNotRefreshed(t *testing.T) {
	srv := componenttest.NewServer(t)
	fetch := &loginFetcher{delay: 200 * time.Millisecond}
	r := newLoginRig(t, srv, fetch, LoginConfig{MinInterval: time.Minute, Rate: 1000, QueueSize: 2, Concurrency: 1})
	srv.SendPresence("alice@example.test/a", "")
	componenttest.WaitFor(t, "alice's refresh to start", func() bool { return fetch.count("alice") == 1 })
	for i := range 100 { // churn: queued and gone again, many times
		srv.SendPresence(fmt.Sprintf("bob%d@example.test/b", i), "")
		srv.SendPresence(fmt.Sprintf("bob%d@example.test/b", i), "unavailable")
	}
	srv.SendPresence("carol@example.test/c", "")
	srv.SendPresence("dave@example.test/d", "")
	componenttest.WaitFor(t, "carol and dave", func() bool { return fetch.count("carol") == 1 && fetch.count("dave") == 1 })
	if n := fetch.total(); n != 3 {
		t.Fatalf("%d fetches (%v), want alice, carol and dave only", n, fetch.order)
	}
	if st := r.login.Stats(); st.Dropped != 0 {
		t.Fatalf("stats = %+v: users gone offline filled the queue", st)
	}
}
