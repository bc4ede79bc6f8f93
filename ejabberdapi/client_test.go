package ejabberdapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

const (
	apiUser = "roster-sidecar@example.test"
	apiPass = "api-secret"
)

// fakeItem is a roster item as the fake ejabberd stores it.
type fakeItem struct {
	Nick, Sub string
	Groups    []string
}

// fakeEjabberd is an httptest fake of mod_http_api with mod_admin_extra's
// three roster commands. It checks HTTP Basic credentials and models what
// matters for roster-sidecar: add_rosteritem stores the subscription it is
// given and changes nobody else's roster; delete_rosteritem, like ejabberd,
// sends the contact unsubscribe (item had "to") and unsubscribed (item had
// "from"), which a local contact's roster applies.
type fakeEjabberd struct {
	*httptest.Server
	mu      sync.Mutex
	rosters map[string]map[string]fakeItem // user JID -> contact JID -> item
	calls   []string
	// probes records each send_stanza's arguments.
	probes []map[string]any
	// online lists the users user_resources finds a session of.
	online map[string]bool
	// naiveDelete, when set on the client under test, is not used; the
	// fake always behaves like ejabberd.
	failNext map[string]int // command -> HTTP status to answer once
}

func newFake(t *testing.T) *fakeEjabberd {
	f := &fakeEjabberd{rosters: map[string]map[string]fakeItem{}, failNext: map[string]int{}, online: map[string]bool{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEjabberd) client(t *testing.T) *Client {
	c, err := New(Config{URL: f.URL + "/api", User: apiUser, Password: apiPass, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeEjabberd) serve(w http.ResponseWriter, r *http.Request) {
	command, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if u, p, okAuth := r.BasicAuth(); !okAuth || u != apiUser || p != apiPass {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"status":"error","code":10,"message":"You are not authorized to call this command."}`)
		return
	}
	var args map[string]any
	if !ok || r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&args) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	str := func(k string) string { s, _ := args[k].(string); return s }
	bare := func(u, h string) string {
		if u == "" {
			return h
		}
		return u + "@" + h
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, command)
	if code := f.failNext[command]; code != 0 {
		delete(f.failNext, command)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"status":"error","code":32,"message":"scripted failure"}`)
		return
	}
	switch command {
	case "get_roster":
		out := []map[string]any{}
		for j, it := range f.rosters[bare(str("user"), str("host"))] {
			out = append(out, map[string]any{"jid": j, "nick": it.Nick, "subscription": it.Sub, "pending": "undefined", "groups": it.Groups})
		}
		_ = json.NewEncoder(w).Encode(out)
	case "add_rosteritem":
		owner := bare(str("localuser"), str("localhost"))
		var groups []string
		for _, g := range args["groups"].([]any) {
			groups = append(groups, g.(string))
		}
		if f.rosters[owner] == nil {
			f.rosters[owner] = map[string]fakeItem{}
		}
		f.rosters[owner][bare(str("user"), str("host"))] = fakeItem{Nick: str("nick"), Sub: str("subs"), Groups: groups}
		_, _ = io.WriteString(w, "0")
	case "delete_rosteritem":
		owner, contact := bare(str("localuser"), str("localhost")), bare(str("user"), str("host"))
		old, existed := f.rosters[owner][contact]
		delete(f.rosters[owner], contact)
		if existed {
			if old.Sub == "to" || old.Sub == "both" {
				f.inbound(contact, owner, "unsubscribe")
			}
			if old.Sub == "from" || old.Sub == "both" {
				f.inbound(contact, owner, "unsubscribed")
			}
		}
		_, _ = io.WriteString(w, "0")
	case "user_resources":
		out := []string{}
		if f.online[bare(str("user"), str("host"))] {
			out = append(out, "phone")
		}
		_ = json.NewEncoder(w).Encode(out)
	case "send_stanza":
		f.probes = append(f.probes, args)
		_, _ = io.WriteString(w, "0")
	default:
		http.Error(w, "unknown command", http.StatusNotFound)
	}
}

// inbound applies a subscription stanza from sender to the roster of user,
// as RFC 6121 section 3 says ejabberd does. f.mu is held.
func (f *fakeEjabberd) inbound(user, sender, typ string) {
	it, ok := f.rosters[user][sender]
	if !ok {
		return
	}
	switch {
	case typ == "unsubscribe" && it.Sub == "from":
		it.Sub = "none"
	case typ == "unsubscribe" && it.Sub == "both":
		it.Sub = "to"
	case typ == "unsubscribed" && it.Sub == "to":
		it.Sub = "none"
	case typ == "unsubscribed" && it.Sub == "both":
		it.Sub = "from"
	}
	f.rosters[user][sender] = it
}

func (f *fakeEjabberd) set(user, contact, sub string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rosters[user] == nil {
		f.rosters[user] = map[string]fakeItem{}
	}
	f.rosters[user][contact] = fakeItem{Sub: sub}
}

// roster returns "contact|nick|sub|groups" lines, sorted.
func (f *fakeEjabberd) roster(user string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for j, it := range f.rosters[user] {
		g := slices.Clone(it.Groups)
		sort.Strings(g)
		out = append(out, j+"|"+it.Nick+"|"+it.Sub+"|"+strings.Join(g, ","))
	}
	sort.Strings(out)
	return out
}

func (f *fakeEjabberd) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func TestGetAndSetThroughTheAPI(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()
	err := c.Put(ctx, "alice@example.test", roster.Item{JID: "bob@example.test", Name: "Bob", Groups: []string{"Friends", "Work"}, Subscription: "both"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "alice@example.test", roster.Item{JID: "elsewhere.test", Subscription: "to"}); err != nil {
		t.Fatal(err)
	}
	items, err := c.Roster(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].JID < items[j].JID })
	if len(items) != 2 || items[0].JID != "bob@example.test" || items[0].Name != "Bob" || items[0].Subscription != "both" ||
		!slices.Equal(items[0].Groups, []string{"Friends", "Work"}) || items[1].JID != "elsewhere.test" || items[1].Subscription != "to" {
		t.Fatalf("roster = %+v", items)
	}
}

// A removal first clears the item's subscription, then deletes it: the
// contact's roster is untouched (a plain delete_rosteritem would send it
// unsubscribe and unsubscribed).
func TestRemoveLeavesTheContactAlone(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	f.set("alice@example.test", "bob@example.test", "both")
	f.set("bob@example.test", "alice@example.test", "both")
	f.takeCalls()
	if err := c.Remove(context.Background(), "alice@example.test", "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	if calls := f.takeCalls(); !slices.Equal(calls, []string{"add_rosteritem", "delete_rosteritem"}) {
		t.Fatalf("calls = %v", calls)
	}
	if got := f.roster("alice@example.test"); len(got) != 0 {
		t.Fatalf("alice = %v", got)
	}
	if got := f.roster("bob@example.test"); !slices.Equal(got, []string{"alice@example.test||both|"}) {
		t.Fatalf("bob's roster changed: %v", got)
	}
}

type mapFetcher map[string][]roster.Item

func (m mapFetcher) Fetch(_ context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	items, ok := m[owner.Localpart()]
	if !ok {
		return rosterhttp.Roster{}, errors.New("no such user")
	}
	return rosterhttp.Roster{Items: items}, nil
}

func both(j string) roster.Item {
	return roster.Item{JID: j, Subscription: roster.SubscriptionBoth}
}

// After refreshing both users of a pair, both rosters equal the backend,
// whatever the order of the two syncs and even when they overlap: every
// API call the sync makes changes only the synced user's roster.
func TestPairRefreshConvergesInAnyOrder(t *testing.T) {
	cases := []struct {
		name    string
		server  map[string]map[string]string // user -> contact -> subscription
		backend mapFetcher
	}{
		{"unfriend on one side only",
			map[string]map[string]string{"alice": {"bob": "both"}, "bob": {"alice": "both"}},
			mapFetcher{"alice": nil, "bob": {both("alice@example.test")}}},
		{"unfriend both",
			map[string]map[string]string{"alice": {"bob": "both"}, "bob": {"alice": "both"}},
			mapFetcher{"alice": nil, "bob": nil}},
		{"one-way subscriptions",
			map[string]map[string]string{"alice": {"bob": "to"}, "bob": {"alice": "from"}},
			mapFetcher{"alice": nil, "bob": {{JID: "alice@example.test", Subscription: "from"}}}},
		{"befriend",
			map[string]map[string]string{},
			mapFetcher{"alice": {both("bob@example.test")}, "bob": {both("alice@example.test")}}},
	}
	orders := map[string]func(s *rostersync.Syncer){
		"alice then bob": func(s *rostersync.Syncer) { s.Sync(context.Background(), "alice"); s.Sync(context.Background(), "bob") },
		"bob then alice": func(s *rostersync.Syncer) { s.Sync(context.Background(), "bob"); s.Sync(context.Background(), "alice") },
		"concurrently": func(s *rostersync.Syncer) {
			var wg sync.WaitGroup
			for _, u := range []string{"alice", "bob"} {
				wg.Add(1)
				go func() { defer wg.Done(); s.Sync(context.Background(), u) }()
			}
			wg.Wait()
		},
	}
	for _, tc := range cases {
		for name, run := range orders {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				f := newFake(t)
				for u, contacts := range tc.server {
					for ct, sub := range contacts {
						f.set(u+"@example.test", ct+"@example.test", sub)
					}
				}
				c := f.client(t)
				s := rostersync.NewSyncer(rostersync.SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, Concurrency: 2, CompareSubscription: rostersync.CompareAlways},
					alwaysReady{}, c, tc.backend, slog.New(slog.NewTextHandler(io.Discard, nil)))
				run(s)
				for _, u := range []string{"alice", "bob"} {
					var want []string
					for _, it := range tc.backend[u] {
						want = append(want, it.JID+"||"+it.Subscription+"|")
					}
					if got := f.roster(u + "@example.test"); !slices.Equal(got, want) {
						t.Errorf("%s: roster %v, backend %v", u, got, want)
					}
				}
			})
		}
	}
}

// A second sync of an unchanged roster calls only get_roster: subscriptions
// are compared, and they match.
func TestUnchangedRosterIsNotRewritten(t *testing.T) {
	f := newFake(t)
	// API mode compares subscriptions always: the API stores them.
	c := f.client(t)
	s := rostersync.NewSyncer(rostersync.SyncerConfig{UserDomain: "example.test", Window: 4, SyncTimeout: 5 * time.Second, CompareSubscription: rostersync.CompareAlways},
		alwaysReady{}, c, mapFetcher{"alice": {both("bob@example.test"), {JID: "carol@example.test", Name: "C", Groups: []string{"G"}, Subscription: "to"}}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if res := s.Sync(context.Background(), "alice"); res.Err != nil || res.Added != 2 {
		t.Fatalf("first sync = %+v", res)
	}
	f.takeCalls()
	if res := s.Sync(context.Background(), "alice"); res.Err != nil || res.Added+res.Updated+res.Removed != 0 {
		t.Fatalf("second sync = %+v", res)
	}
	if calls := f.takeCalls(); !slices.Equal(calls, []string{"get_roster"}) {
		t.Fatalf("calls = %v", calls)
	}
	// A subscription changed behind the sidecar's back is put back.
	f.set("alice@example.test", "bob@example.test", "from")
	if res := s.Sync(context.Background(), "alice"); res.Err != nil || res.Updated != 1 {
		t.Fatalf("sync after a change = %+v", res)
	}
}

func TestErrors(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	bad, err := New(Config{URL: f.URL + "/api", User: apiUser, Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Roster(ctx, "alice@example.test")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || !strings.Contains(err.Error(), "ejabberd_api.user") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	c := f.client(t)
	f.mu.Lock()
	f.failNext["add_rosteritem"] = 403
	f.mu.Unlock()
	err = c.Put(ctx, "alice@example.test", roster.Item{JID: "bob@example.test", Subscription: "both"})
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || !strings.Contains(err.Error(), "scripted failure") {
		t.Fatalf("403: %v", err)
	}
	// A failed first step of a removal stops it: the delete is not sent.
	f.set("alice@example.test", "bob@example.test", "both")
	f.takeCalls()
	f.mu.Lock()
	f.failNext["add_rosteritem"] = 500
	f.mu.Unlock()
	if err := c.Remove(ctx, "alice@example.test", "bob@example.test"); err == nil {
		t.Fatal("removal succeeded despite a failure")
	}
	if calls := f.takeCalls(); !slices.Equal(calls, []string{"add_rosteritem"}) {
		t.Fatalf("calls = %v", calls)
	}
	for _, tc := range []struct{ user, contact, sub string }{
		{"alice", "bob@example.test", "both"},                // no domain
		{"alice@example.test/r", "bob@example.test", "both"}, // resource
		{"alice@example.test", "bob@example.test/r", "both"},
		{"alice@example.test", "bob@example.test", "bogus"}, // ejabberd would store it
	} {
		if err := c.Put(ctx, tc.user, roster.Item{JID: tc.contact, Subscription: tc.sub}); err == nil {
			t.Errorf("Put(%q, %q, %q) succeeded", tc.user, tc.contact, tc.sub)
		}
	}
	for _, u := range []string{"", "ftp://x/api", "http:///api", "http://u:p@host/api"} {
		if _, err := New(Config{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<html>") }))
	defer garbage.Close()
	g, _ := New(Config{URL: garbage.URL})
	if _, err := g.Roster(ctx, "alice@example.test"); err == nil || !strings.Contains(err.Error(), "unexpected answer") {
		t.Fatalf("garbage answer: %v", err)
	}
	if err := g.Put(ctx, "alice@example.test", roster.Item{JID: "b@example.test", Subscription: "both"}); err == nil {
		t.Fatal("a non-zero result code succeeded")
	}
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer slow.Close()
	sc, _ := New(Config{URL: slow.URL, Timeout: 50 * time.Millisecond})
	start := time.Now()
	if _, err := sc.Roster(ctx, "alice@example.test"); err == nil || time.Since(start) > time.Second {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}
}

// alwaysReady is a rostersync.Link that is always ready.
type alwaysReady struct{}

func (alwaysReady) Ready(string) error       { return nil }
func (alwaysReady) Changed() <-chan struct{} { return nil }

var _ rostersync.Store = (*Client)(nil)

// ProbePresence sends one send_stanza per contact: a probe from the owner's
// bare JID to the contact's, with exactly the three arguments of the
// command. A refused call is reported with the count of those sent, and the
// others are still tried.
func TestProbePresence(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()
	// alice is offline: only her sessions are asked for.
	sent, err := c.ProbePresence(ctx, "alice@example.test", []string{"bob@example.test"})
	if calls := f.takeCalls(); err != nil || sent != 0 || !slices.Equal(calls, []string{"user_resources"}) {
		t.Fatalf("offline: ProbePresence = %d, %v with calls %v", sent, err, calls)
	}
	f.mu.Lock()
	f.online["alice@example.test"] = true
	f.mu.Unlock()
	sent, err = c.ProbePresence(ctx, "alice@example.test", []string{"bob@example.test", "carol@example.net"})
	if err != nil || sent != 2 {
		t.Fatalf("ProbePresence = %d, %v", sent, err)
	}
	want := []map[string]any{
		{"from": "alice@example.test", "to": "bob@example.test", "stanza": "<presence type='probe'/>"},
		{"from": "alice@example.test", "to": "carol@example.net", "stanza": "<presence type='probe'/>"},
	}
	f.mu.Lock()
	got := f.probes
	f.probes = nil
	f.mu.Unlock()
	// Sent concurrently: in any order.
	slices.SortFunc(got, func(a, b map[string]any) int { return strings.Compare(a["to"].(string), b["to"].(string)) })
	if len(got) != len(want) {
		t.Fatalf("send_stanza calls %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != 3 || got[i]["from"] != want[i]["from"] || got[i]["to"] != want[i]["to"] || got[i]["stanza"] != want[i]["stanza"] {
			t.Errorf("send_stanza %d = %v, want %v", i, got[i], want[i])
		}
	}

	// Refused (e.g. send_stanza missing from the API permissions): the
	// error says so, the next contact is still probed.
	f.mu.Lock()
	f.failNext["send_stanza"] = http.StatusForbidden
	f.mu.Unlock()
	sent, err = c.ProbePresence(ctx, "alice@example.test", []string{"bob@example.test", "dave@example.test"})
	var apiErr *Error
	if sent != 1 || !errors.As(err, &apiErr) || apiErr.Command != "send_stanza" || apiErr.Status != http.StatusForbidden {
		t.Fatalf("ProbePresence = %d, %v", sent, err)
	}
	if !strings.HasPrefix(err.Error(), "1 of 2 presence probes for alice@example.test failed, first: probe ") ||
		!strings.Contains(err.Error(), " for alice@example.test: ejabberd API send_stanza: HTTP 403") {
		t.Errorf("error %q", err)
	}
	sent, err = c.ProbePresence(ctx, "alice@example.test", []string{"carol@example.test/phone"})
	if sent != 0 || err == nil || err.Error() != `1 of 1 presence probes for alice@example.test failed, first: probe "carol@example.test/phone" for alice@example.test: not a bare JID` {
		t.Errorf("a full contact JID: %d, %v", sent, err)
	}
	if _, err := c.ProbePresence(ctx, "alice@example.test/phone", []string{"bob@example.test"}); err == nil {
		t.Error("a full owner JID was accepted")
	}
	// user_resources refused: nothing sent, the error says why.
	f.mu.Lock()
	f.failNext["user_resources"] = http.StatusForbidden
	f.mu.Unlock()
	if sent, err := c.ProbePresence(ctx, "alice@example.test", []string{"bob@example.test"}); sent != 0 || !errors.As(err, &apiErr) || apiErr.Command != "user_resources" {
		t.Errorf("user_resources refused: %d, %v", sent, err)
	}
}

// A sync through the API probes, after its writes, the contacts whose item
// gained "to", and no one else.
func TestSyncProbesThroughTheAPI(t *testing.T) {
	f := newFake(t)
	f.set("alice@example.test", "bob@example.test", "from")
	f.set("alice@example.test", "carol@example.test", "both")
	f.online["alice@example.test"] = true
	c := f.client(t)
	s := rostersync.NewSyncer(rostersync.SyncerConfig{UserDomain: "example.test", Window: 1, SyncTimeout: 5 * time.Second, CompareSubscription: rostersync.CompareAlways},
		alwaysReady{}, c, mapFetcher{"alice": {both("bob@example.test"), {JID: "carol@example.test", Name: "C", Subscription: "both"},
			{JID: "dave@example.test", Subscription: "from"}, {JID: "erin@example.test", Subscription: "to"}}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if res := s.Sync(context.Background(), "alice"); res.Err != nil || res.Added != 2 || res.Updated != 2 || res.Probed != 2 {
		t.Fatalf("sync = %+v", res)
	}
	calls := f.takeCalls()
	if want := []string{"get_roster", "add_rosteritem", "add_rosteritem", "add_rosteritem", "add_rosteritem", "user_resources", "send_stanza", "send_stanza"}; !slices.Equal(calls, want) {
		t.Fatalf("calls = %v, want %v", calls, want)
	}
	var to []string
	f.mu.Lock()
	for _, p := range f.probes {
		to = append(to, p["to"].(string))
	}
	f.mu.Unlock()
	slices.Sort(to)
	if !slices.Equal(to, []string{"bob@example.test", "erin@example.test"}) {
		t.Fatalf("probed %v", to)
	}
}

// Sessions lists the resources of a user's sessions with user_resources,
// and reports a refused call (check uses it to see whether the account may
// list sessions, which presence probes need).
func TestSessions(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()
	if got, err := c.Sessions(ctx, "alice@example.test"); err != nil || len(got) != 0 {
		t.Fatalf("offline: Sessions = %q, %v", got, err)
	}
	f.mu.Lock()
	f.online["alice@example.test"] = true
	f.failNext["user_resources"] = http.StatusForbidden
	f.mu.Unlock()
	var apiErr *Error
	if _, err := c.Sessions(ctx, "alice@example.test"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Fatalf("refused: Sessions error %v, want an *Error with status 403", err)
	}
	if got, err := c.Sessions(ctx, "alice@example.test"); err != nil || !slices.Equal(got, []string{"phone"}) {
		t.Fatalf("online: Sessions = %q, %v", got, err)
	}
	if _, err := c.Sessions(ctx, "not a jid"); err == nil {
		t.Fatal("Sessions of a malformed JID succeeded")
	}
}
