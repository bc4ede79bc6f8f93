package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

func TestRefreshBadRequest(t *testing.T) {
	tests := []struct {
		name, body, msg string
	}{
		{"missing body", "", "request body is empty"},
		{"blank body", " \n\t", "request body is empty"},
		{"not JSON", "john", "request body is not valid JSON"},
		{"truncated", `["john"`, "request body is not valid JSON"},
		{"object", `{}`, "must be a JSON array of usernames, got an object"},
		{"null", `null`, "must be a JSON array of usernames, got null"},
		{"string", `"john"`, "must be a JSON array of usernames, got a string"},
		{"number", `1`, "must be a JSON array of usernames, got a number"},
		{"boolean", `true`, "must be a JSON array of usernames, got a boolean"},
		{"number element", `[1]`, "element 0 of the array is a number, not a string"},
		{"null element", `["john", null]`, "element 1 of the array is null, not a string"},
		{"array element", `[["john"]]`, "element 0 of the array is an array, not a string"},
		{"object element", `["a", "b", {"user": "c"}]`, "element 2 of the array is an object, not a string"},
		{"trailing garbage", `["john"] x`, "data after the JSON array"},
		{"two arrays", `["john"]["aaron"]`, "data after the JSON array"},
		{"invalid UTF-8", "[\"j\xffn\"]", "element 0 of the array is not valid UTF-8"},
		{"invalid username", `["john", "a@b@c", "aaron"]`, `invalid username "a@b@c"`},
		{"forbidden character", `["john", "o'neil"]`, `invalid username "o'neil"`},
		{"resource", `["john@example.test/phone"]`, `invalid username "john@example.test/phone"`},
		{"empty username", `["john", ""]`, `invalid username ""`},
		{"too many users", `["a", "b", "c", "d"]`, "too many usernames in one request: 4, the limit is 3"},
		{"too many users counted before duplicates", `["a", "a", "a", "a"]`, "too many usernames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSyncer{}
			srv := newServer(t, Config{MaxUsers: 3}, f)
			requireError(t, refresh(t, srv, tt.body), http.StatusBadRequest, tt.msg)
			calls, readyCalls, _, _ := f.snapshot()
			assert.Empty(t, calls, "nothing may be synced when the request is invalid")
			assert.Zero(t, readyCalls)
		})
	}
}

func TestRefreshBodyLimit(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{MaxBodyBytes: 64}, f)

	fits := `["john",` + strings.Repeat(" ", 64-len(`["john",`)-len(`"aaron"]`)) + `"aaron"]`
	require.Len(t, fits, 64)
	r := refresh(t, srv, fits)
	require.Equal(t, http.StatusOK, r.code, r.body)

	tooBig := fits + " "
	requireError(t, refresh(t, srv, tooBig), http.StatusRequestEntityTooLarge, "request body larger than 64 bytes")

	// Without Content-Length the limit holds while reading.
	chunked := io.MultiReader(strings.NewReader(tooBig))
	requireError(t, do(t, srv, http.MethodPost, "/roster_admin/refresh", chunked), http.StatusRequestEntityTooLarge,
		"request body larger than 64 bytes")

	// Even garbage is 413 when it is too large: the size is checked first.
	requireError(t, refresh(t, srv, strings.Repeat("x", 1000)), http.StatusRequestEntityTooLarge, "larger than")

	calls, _, _, _ := f.snapshot()
	assert.ElementsMatch(t, []string{"john", "aaron"}, calls)
}

func TestRefreshEmptyArray(t *testing.T) {
	for _, body := range []string{`[]`, " [ ]\n"} {
		f := &fakeSyncer{readyErr: errors.New("not connected")}
		srv := newServer(t, Config{}, f)
		requireJSON(t, refresh(t, srv, body), http.StatusOK,
			`{"status":"ok","message":"roster update complete","updated":0,"errors":0,"results":[]}`)
		calls, readyCalls, _, _ := f.snapshot()
		assert.Empty(t, calls)
		assert.Zero(t, readyCalls, "an empty array must not even ask whether the component is ready")
	}
}

func TestRefreshNotReady(t *testing.T) {
	f := &fakeSyncer{readyErr: errors.New("roster privilege not granted by the XMPP server")}
	srv := newServer(t, Config{}, f)
	r := refresh(t, srv, `["john", "John", "aaron", "john@example.test"]`)
	requireJSON(t, r, http.StatusServiceUnavailable,
		`{"status":"error","message":"roster privilege not granted by the XMPP server","updated":0,"errors":2}`)
	calls, _, _, _ := f.snapshot()
	assert.Empty(t, calls)
}

func TestRefreshMixedResults(t *testing.T) {
	f := &fakeSyncer{results: map[string]rostersync.Result{
		"john": {Added: 1, Updated: 2, Removed: 3, Skipped: []rosterhttp.Skipped{{JID: "bad@@x", Reason: "not a valid JID"}}},
		"x":    {Err: errors.New("fetch roster of x: backend answered 500 Internal Server Error")},
		"mary": {Updated: 1},
	}}
	srv := newServer(t, Config{}, f)
	r := refresh(t, srv, `["john", "x", "mary"]`)
	requireJSON(t, r, http.StatusOK, `{
		"status": "ok", "message": "roster update complete", "updated": 2, "errors": 1,
		"results": [
			{"user": "john", "status": "ok", "added": 1, "updated": 2, "removed": 3,
			 "skipped": [{"jid": "bad@@x", "reason": "not a valid JID"}]},
			{"user": "x", "status": "error", "error": "fetch roster of x: backend answered 500 Internal Server Error",
			 "added": 0, "updated": 0, "removed": 0},
			{"user": "mary", "status": "ok", "added": 0, "updated": 1, "removed": 0}
		]}`)
}

func TestRefreshAllFailed(t *testing.T) {
	f := &fakeSyncer{results: map[string]rostersync.Result{
		"a": {Err: errors.New("fetch roster of a: timeout")},
		"b": {Err: errors.New("set roster of b: item-not-found")},
	}}
	srv := newServer(t, Config{}, f)
	requireJSON(t, refresh(t, srv, `["a", "b"]`), http.StatusOK, `{
		"status": "error", "message": "roster update failed for all users", "updated": 0, "errors": 2,
		"results": [
			{"user": "a", "status": "error", "error": "fetch roster of a: timeout", "added": 0, "updated": 0, "removed": 0},
			{"user": "b", "status": "error", "error": "set roster of b: item-not-found", "added": 0, "updated": 0, "removed": 0}
		]}`)
}

func TestRefreshDuplicates(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{Concurrency: 1}, f)
	r := refresh(t, srv, `["John", "aaron", "john@example.test", "JOHN", "john", "Aaron@EXAMPLE.test", "mary"]`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	m := r.json(t)
	assert.EqualValues(t, 3, m["updated"])
	assert.EqualValues(t, 0, m["errors"])
	var users []string
	for _, res := range m["results"].([]any) {
		users = append(users, res.(map[string]any)["user"].(string))
	}
	assert.Equal(t, []string{"john", "aaron", "mary"}, users, "results in the order of first appearance")
	calls, _, _, _ := f.snapshot()
	assert.ElementsMatch(t, []string{"john", "aaron", "mary"}, calls, "each user synced once")
}

func TestRefreshUser(t *testing.T) {
	tests := []struct {
		path, user string
	}{
		{"/roster_admin/refresh/john", "john"},
		{"/roster_admin/refresh/John", "john"},
		{"/roster_admin/refresh/john@example.test", "john"},
		{"/roster_admin/refresh/John%40example.test", "john"},
		{"/roster_admin/refresh/hash%23tag", "hash#tag"},
		{"/roster_admin/refresh/q%3Fmark", "q?mark"},
		{"/roster_admin/refresh/jos%C3%A9", "josé"},
		{"/roster_admin/refresh/jos%c3%a9", "josé"},  // non-canonical escaping: Echo routes on the raw path
		{"/roster_admin/refresh/%6Aohn", "john"},     // needlessly escaped letter
		{"/roster_admin/refresh/100%25", "100%"},     // an escaped percent is decoded once
		{"/roster_admin/refresh/50%25%2B1", "50%+1"}, // and stays decoded once on the raw path
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(method+" "+tt.path, func(t *testing.T) {
				f := &fakeSyncer{}
				srv := newServer(t, Config{}, f)
				r := do(t, srv, method, tt.path, nil)
				requireJSON(t, r, http.StatusOK, fmt.Sprintf(
					`{"status":"ok","message":"roster update complete","user":%q,"added":1,"updated":0,"removed":0}`, tt.user))
				calls, _, _, _ := f.snapshot()
				assert.Equal(t, []string{tt.user}, calls)
			})
		}
	}
}

func TestRefreshUserSkipped(t *testing.T) {
	f := &fakeSyncer{results: map[string]rostersync.Result{
		"john": {Removed: 2, Skipped: []rosterhttp.Skipped{{JID: "a/b", Reason: "has a resource"}}},
	}}
	srv := newServer(t, Config{}, f)
	requireJSON(t, do(t, srv, http.MethodGet, "/roster_admin/refresh/john", nil), http.StatusOK,
		`{"status":"ok","message":"roster update complete","user":"john","added":0,"updated":0,"removed":2,
		  "skipped":[{"jid":"a/b","reason":"has a resource"}]}`)
}

func TestRefreshUserErrors(t *testing.T) {
	t.Run("invalid username", func(t *testing.T) {
		for _, path := range []string{
			"/roster_admin/refresh/a%2Fb",
			"/roster_admin/refresh/a%40b%40c",
			"/roster_admin/refresh/o%27neil",
			"/roster_admin/refresh/john@other.test",
			"/roster_admin/refresh/with%20space",
			"/roster_admin/refresh/%00",
		} {
			t.Run(path, func(t *testing.T) {
				f := &fakeSyncer{}
				srv := newServer(t, Config{}, f)
				requireError(t, do(t, srv, http.MethodGet, path, nil), http.StatusBadRequest, "invalid username")
				calls, readyCalls, _, _ := f.snapshot()
				assert.Empty(t, calls)
				assert.Zero(t, readyCalls)
			})
		}
	})
	t.Run("invalid percent-encoding", func(t *testing.T) {
		// net/http answers 400 itself to such a request line; a handler
		// can still be given one.
		f := &fakeSyncer{}
		srv := newServer(t, Config{}, f)
		req := httptest.NewRequest(http.MethodGet, "/roster_admin/refresh/x", nil)
		req.Host = testHost
		req.URL.RawPath = "/roster_admin/refresh/" + strings.Repeat("é", 100) + "%zz"
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		requireJSON(t, response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}, http.StatusBadRequest,
			`{"status":"error","message":"invalid percent-encoding in username: invalid URL escape \"%zz\""}`)
		calls, readyCalls, _, _ := f.snapshot()
		assert.Empty(t, calls)
		assert.Zero(t, readyCalls)
	})
	t.Run("empty username", func(t *testing.T) {
		srv := newServer(t, Config{}, &fakeSyncer{})
		requireError(t, do(t, srv, http.MethodGet, "/roster_admin/refresh/", nil), http.StatusNotFound, "not found")
	})
	t.Run("not ready", func(t *testing.T) {
		f := &fakeSyncer{readyErr: errors.New("not connected to the XMPP server")}
		srv := newServer(t, Config{}, f)
		requireJSON(t, do(t, srv, http.MethodPost, "/roster_admin/refresh/john", nil), http.StatusServiceUnavailable,
			`{"status":"error","message":"not connected to the XMPP server"}`)
		calls, _, _, _ := f.snapshot()
		assert.Empty(t, calls)
	})
	t.Run("sync failed", func(t *testing.T) {
		f := &fakeSyncer{results: map[string]rostersync.Result{
			"john": {Err: errors.New("fetch roster of john: backend answered 500")},
		}}
		srv := newServer(t, Config{}, f)
		requireJSON(t, do(t, srv, http.MethodGet, "/roster_admin/refresh/john", nil), http.StatusBadGateway,
			`{"status":"error","message":"fetch roster of john: backend answered 500"}`)
	})
	t.Run("timeout", func(t *testing.T) {
		f := &fakeSyncer{release: make(chan struct{})}
		srv := newServer(t, Config{RequestTimeout: 50 * time.Millisecond}, f)
		var r response
		within(t, 5*time.Second, func() { r = do(t, srv, http.MethodGet, "/roster_admin/refresh/john", nil) })
		requireError(t, r, http.StatusGatewayTimeout, "context deadline exceeded")
	})
}

func TestRefreshSyncPanic(t *testing.T) {
	f := &fakeSyncer{panicUser: "bad"}
	srv := newServer(t, Config{}, f)
	r := refresh(t, srv, `["bad", "good"]`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	m := r.json(t)
	assert.EqualValues(t, 1, m["updated"])
	assert.EqualValues(t, 1, m["errors"])
	res := m["results"].([]any)[0].(map[string]any)
	assert.Equal(t, "error", res["status"])
	assert.Contains(t, res["error"], "internal error")
}

// Each request syncs at most Concurrency users at once; two simultaneous
// requests together run at most twice that (the server-wide bound is the
// Syncer's).
func TestRefreshConcurrencyBound(t *testing.T) {
	const concurrency = 3
	f := &fakeSyncer{release: make(chan struct{})}
	srv := newServer(t, Config{Concurrency: concurrency}, f)

	bodies := []string{`["a1","a2","a3","a4","a5","a6"]`, `["b1","b2","b3","b4","b5","b6"]`}
	answers := make([]response, len(bodies))
	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Go(func() { answers[i] = refresh(t, srv, body) })
	}
	require.Eventually(t, func() bool {
		_, _, inflight, _ := f.snapshot()
		return inflight == 2*concurrency
	}, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond) // give any excess Sync call time to start
	close(f.release)
	wg.Wait()

	calls, _, _, maxInflight := f.snapshot()
	assert.Equal(t, 2*concurrency, maxInflight)
	assert.Len(t, calls, 12)
	for _, a := range answers {
		require.Equal(t, http.StatusOK, a.code, a.body)
		assert.EqualValues(t, 6, a.json(t)["updated"])
	}
}

// When RequestTimeout ends, the running Sync sees its context end and the
// users still waiting for a slot fail with "request cancelled"; the handler
// returns.
func TestRefreshTimeout(t *testing.T) {
	f := &fakeSyncer{release: make(chan struct{})} // never released
	srv := newServer(t, Config{Concurrency: 1, RequestTimeout: 100 * time.Millisecond}, f)
	var r response
	within(t, 5*time.Second, func() { r = refresh(t, srv, `["a", "b", "c"]`) })
	require.Equal(t, http.StatusOK, r.code, r.body)
	m := r.json(t)
	assert.Equal(t, "error", m["status"])
	assert.Equal(t, "roster update failed for all users", m["message"])
	assert.EqualValues(t, 3, m["errors"])
	results := m["results"].([]any)
	require.Len(t, results, 3)
	assert.Equal(t, "sync a: context deadline exceeded", results[0].(map[string]any)["error"])
	for _, res := range results[1:] {
		assert.Equal(t, "request cancelled: refresh took longer than the request timeout of 100ms",
			res.(map[string]any)["error"])
	}
	calls, _, _, _ := f.snapshot()
	assert.Equal(t, []string{"a"}, calls)
}

// A client that goes away cancels the users not yet synced.
func TestRefreshClientGone(t *testing.T) {
	f := &fakeSyncer{release: make(chan struct{})}
	srv := newServer(t, Config{Concurrency: 1}, f)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	var r response
	within(t, 5*time.Second, func() {
		r = doCtx(t, ctx, srv, http.MethodPost, "/roster_admin/refresh", strings.NewReader(`["a", "b"]`))
	})
	require.Equal(t, http.StatusOK, r.code, r.body)
	results := r.json(t)["results"].([]any)
	assert.Equal(t, "request cancelled: context canceled", results[1].(map[string]any)["error"])
}
