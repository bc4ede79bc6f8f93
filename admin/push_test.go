package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// pushBody POSTs body to the push endpoint.
func pushBody(tb testing.TB, srv *Server, body string, header ...string) response {
	tb.Helper()
	return do(tb, srv, http.MethodPost, "/roster_admin/push", strings.NewReader(body), header...)
}

func TestPushBadRequest(t *testing.T) {
	tests := []struct {
		name, body, msg string
	}{
		{"missing body", "", "request body is empty: expected a JSON object of rosters keyed by username"},
		{"blank body", " \n", "request body is empty"},
		{"not JSON", "john", "request body is not valid JSON"},
		{"truncated", `{"john": {}`, "request body is not valid JSON"},
		{"invalid roster JSON", `{"john": {"marie@example.test": {"name": }}}`, "request body is not valid JSON"},
		{"array", `["john"]`, "must be a JSON object of rosters keyed by username, got an array"},
		{"null", `null`, "got null"},
		{"string", `"john"`, "got a string"},
		{"trailing garbage", `{"john": {}} x`, "data after the JSON object"},
		{"two objects", `{"john": {}}{"aaron": {}}`, "data after the JSON object"},
		{"invalid username", `{"john": {}, "a@b@c": {}}`, `invalid username "a@b@c"`},
		{"empty username", `{"": {}}`, `invalid username ""`},
		{"invalid UTF-8 username", "{\"j\xffn\": {}}", "invalid username"},
		{"key repeated", `{"john": {}, "aaron": {}, "john": {"marie@example.test": {}}}`, `user "john" is given twice: push one roster per user`},
		{"user spelt twice", `{"john": {}, "JOHN@example.test": {}}`, `user "john" is given twice (as "john" and "JOHN@example.test")`},
		{"too many users", `{"a": {}, "b": {}, "c": {}, "d": {}}`, "too many users in one push: 4, the limit is 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSyncer{}
			srv := newServer(t, Config{MaxUsers: 3}, f)
			requireError(t, pushBody(t, srv, tt.body), http.StatusBadRequest, tt.msg)
			requireNothingStarted(t, f)
			assert.Empty(t, f.pushes())
		})
	}
}

func TestPushBodyLimit(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{MaxBodyBytes: 32}, f)
	fits := `{"john":{"m@example.test":null}}`
	require.LessOrEqual(t, len(fits), 32)
	require.Equal(t, http.StatusOK, pushBody(t, srv, fits).code)
	requireError(t, pushBody(t, srv, fits+strings.Repeat(" ", 33-len(fits))), http.StatusRequestEntityTooLarge,
		"request body larger than 32 bytes")
	requireError(t, pushBody(t, srv, strings.Repeat("x", 100)), http.StatusRequestEntityTooLarge, "larger than")
	calls, _, _, _ := f.snapshot()
	assert.Equal(t, []string{"john"}, calls)
}

func TestPushEmptyObject(t *testing.T) {
	for _, body := range []string{`{}`, " { }\n"} {
		f := &fakeSyncer{readyErr: errors.New("not connected")}
		srv := newServer(t, Config{}, f)
		requireJSON(t, pushBody(t, srv, body), http.StatusOK,
			`{"status":"ok","message":"roster update complete","updated":0,"errors":0,"results":[]}`)
		requireNothingStarted(t, f)
	}
}

func TestPushNotReady(t *testing.T) {
	f := &fakeSyncer{readyErr: errors.New("roster privilege not granted by the XMPP server")}
	srv := newServer(t, Config{}, f)
	requireJSON(t, pushBody(t, srv, `{"john": {}, "aaron": [], "bob": {"x@example.test": {}}}`), http.StatusServiceUnavailable,
		`{"status":"error","message":"roster privilege not granted by the XMPP server","updated":0,"errors":3}`)
	calls, _, _, _ := f.snapshot()
	assert.Empty(t, calls)
}

// Each user's roster is parsed as a backend answer with the backend's
// limits; one that fails to parse fails that user alone, and the answer is
// the bulk refresh's, in the order of the keys.
func TestPushResults(t *testing.T) {
	f := &fakeSyncer{results: map[string]rostersync.Result{
		"gina": {Err: errors.New("3 of 3 roster changes failed, first: no answer from the XMPP server")},
	}}
	var logs strings.Builder
	srv, err := New(Config{
		UserDomain:     testDomain,
		MaxRosterBytes: 200,
		RosterLimits:   rosterhttp.Limits{MaxItems: 3, MaxNameBytes: 8},
	}, f, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	body := `{
		"john": {"marie@example.test": {"name": "Marie", "groups": {"Friends": true}}, "Judy@Example.TEST": null,
		         "long@example.test": {"name": "Much too long"}},
		"aaron": ["marie@example.test"],
		"bob": null,
		"carol": {"a@example.test": {}, "b@example.test": {}, "c@example.test": {}, "d@example.test": {}},
		"dave": {"x@example.test": {"name": "X", "note": "` + strings.Repeat("n", 200) + `"}},
		"Erin@example.test": {},
		"frank": {"z@example.test": {"subscription": "weird"}},
		"gina": {"y@example.test": {}}
	}`
	r := pushBody(t, srv, body)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var resp RefreshResponse
	require.NoError(t, json.Unmarshal([]byte(r.body), &resp))
	assert.Equal(t, "ok", resp.Status)
	assert.Equal(t, messageComplete, resp.Message)
	assert.Equal(t, 3, resp.Updated)
	assert.Equal(t, 5, resp.Errors)

	var users []string
	for _, res := range resp.Results {
		users = append(users, res.User)
	}
	require.Equal(t, []string{"john", "aaron", "bob", "carol", "dave", "erin", "frank", "gina"}, users)
	byUser := map[string]UserResult{}
	for _, res := range resp.Results {
		byUser[res.User] = res
	}
	john := byUser["john"]
	assert.Equal(t, "ok", john.Status)
	assert.Equal(t, 2, john.Added)
	require.Len(t, john.Skipped, 1)
	assert.Equal(t, "long@example.test", john.Skipped[0].JID)
	assert.Contains(t, john.Skipped[0].Reason, "name is 13 bytes, more than the limit of 8")
	for user, msg := range map[string]string{
		"aaron": "pushed roster of aaron@example.test is a JSON array, not an object",
		"bob":   "pushed roster of bob@example.test is a JSON null, not an object",
		"carol": "pushed roster of carol@example.test lists 4 contacts, more than the limit of 3",
		"dave":  "pushed roster of dave@example.test is 245 bytes, more than the limit of 200",
		"gina":  "3 of 3 roster changes failed",
	} {
		res := byUser[user]
		assert.Equal(t, "error", res.Status, user)
		assert.Contains(t, res.Error, msg, user)
		assert.Zero(t, res.Added+res.Updated+res.Removed, user)
	}
	assert.Equal(t, UserResult{User: "erin", Status: "ok"}, byUser["erin"])
	frank := byUser["frank"]
	assert.Equal(t, "ok", frank.Status)
	require.Len(t, frank.Skipped, 1)
	assert.Contains(t, frank.Skipped[0].Reason, `subscription "weird" is not one of both, to, from, none`)

	// What reached the Syncer: the parsed rosters, and none for the users
	// whose roster did not parse.
	pushed := f.pushes()
	assert.Equal(t, []string{"erin", "frank", "gina", "john"}, slices.Sorted(maps.Keys(pushed)))
	assert.Equal(t, []roster.Item{
		{JID: "judy@example.test", Subscription: "both"},
		{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}, Subscription: "both"},
	}, pushed["john"].Items)
	assert.Empty(t, pushed["erin"].Items)

	assert.Contains(t, logs.String(), `level=WARN msg="admin: roster push failed" user=aaron error="pushed roster of aaron@example.test is a JSON array, not an object"`)
	assert.Contains(t, logs.String(), `level=WARN msg="admin: roster push failed" user=gina error="3 of 3 roster changes failed`)
	assert.Contains(t, logs.String(), `level=INFO msg="admin: roster push" users=8 updated=3 errors=5 duration=`)
}

// Every user of the push failed: the status is error, as for a refresh.
func TestPushAllFailed(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{}, f)
	r := pushBody(t, srv, `{"john": [], "aaron": "x"}`)
	requireJSON(t, r, http.StatusOK, `{"status":"error","message":"roster update failed for all users","updated":0,"errors":2,"results":[
		{"user":"john","status":"error","error":"pushed roster of john@example.test is a JSON array, not an object","added":0,"updated":0,"removed":0},
		{"user":"aaron","status":"error","error":"pushed roster of aaron@example.test is a JSON string, not an object","added":0,"updated":0,"removed":0}]}`)
	calls, _, _, _ := f.snapshot()
	assert.Empty(t, calls)
}

func TestPushSyncPanic(t *testing.T) {
	f := &fakeSyncer{panicUser: "aaron"}
	srv := newServer(t, Config{}, f)
	r := pushBody(t, srv, `{"john": {}, "aaron": {}}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	assert.Contains(t, r.body, `"user":"aaron","status":"error","error":"sync aaron: internal error: panic: sync exploded"`)
}

// memLink is always ready.
type memLink struct{}

func (memLink) Ready(string) error       { return nil }
func (memLink) Changed() <-chan struct{} { return make(chan struct{}) }

// memStore keeps rosters in memory.
type memStore struct {
	mu      sync.Mutex
	rosters map[string]map[string]roster.Item
}

func (m *memStore) Roster(_ context.Context, owner string) ([]roster.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.rosters[owner])), nil
}

func (m *memStore) Put(_ context.Context, owner string, it roster.Item) error {
	m.mu.Lock()
	defer m.mu.Unlock()
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

func (m *memStore) jids(owner string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.rosters[owner]))
}

// heldFetcher answers every user with one contact; its first fetch waits
// for release.
type heldFetcher struct {
	mu      sync.Mutex
	calls   int
	started chan struct{}
	release chan struct{}
}

func (h *heldFetcher) Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error) {
	h.mu.Lock()
	h.calls++
	first := h.calls == 1
	h.mu.Unlock()
	if first {
		close(h.started)
		select {
		case <-h.release:
		case <-ctx.Done():
			return rosterhttp.Roster{}, ctx.Err()
		}
	}
	return rosterhttp.Roster{Items: []roster.Item{{JID: "fetched@example.test", Subscription: "both"}}}, nil
}

func (h *heldFetcher) fetches() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// A push for a user whose refresh is running waits for it and is applied
// after it, with no fetch, through the real sync engine.
func TestPushJoinsRunningSync(t *testing.T) {
	store := &memStore{rosters: map[string]map[string]roster.Item{}}
	fetch := &heldFetcher{started: make(chan struct{}), release: make(chan struct{})}
	syncer := rostersync.NewSyncer(rostersync.SyncerConfig{UserDomain: testDomain, Window: 2, SyncTimeout: 10 * time.Second},
		memLink{}, store, fetch, discardLogger())
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = syncer.Run(ctx); close(stopped) }()
	defer func() { stop(); <-stopped }()
	srv := newServer(t, Config{}, syncer)

	refreshed := make(chan response, 1)
	go func() { refreshed <- refresh(t, srv, `["john"]`) }()
	<-fetch.started
	pushed := make(chan response, 1)
	go func() { pushed <- pushBody(t, srv, `{"john": {"new@example.test": {"name": "New"}}}`) }()
	select {
	case r := <-pushed:
		t.Fatalf("the push was answered while the user's refresh was running: %d %s", r.code, r.body)
	case <-time.After(200 * time.Millisecond):
	}
	close(fetch.release)

	r := <-refreshed
	requireJSON(t, r, http.StatusOK, `{"status":"ok","message":"roster update complete","updated":1,"errors":0,"results":[
		{"user":"john","status":"ok","added":1,"updated":0,"removed":0}]}`)
	r = <-pushed
	requireJSON(t, r, http.StatusOK, `{"status":"ok","message":"roster update complete","updated":1,"errors":0,"results":[
		{"user":"john","status":"ok","added":1,"updated":0,"removed":1}]}`)
	assert.Equal(t, []string{"new@example.test"}, store.jids("john@example.test"))
	assert.Equal(t, 1, fetch.fetches(), "the push fetched")
}
