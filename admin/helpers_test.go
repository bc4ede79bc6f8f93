package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

const testDomain = "example.test"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeSyncer records calls, answers scripted results and counts how many
// Sync calls run at once.
type fakeSyncer struct {
	mu          sync.Mutex
	readyErr    error
	readyPanic  bool
	readyCalls  int
	calls       []string
	results     map[string]rostersync.Result
	release     chan struct{} // when set, Sync waits for it to close (or ctx)
	panicUser   string
	inflight    int
	maxInflight int
	causes      []error // why the contexts of Syncs that waited for release ended
	pushed      map[string]rosterhttp.Roster
}

func (f *fakeSyncer) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readyCalls++
	if f.readyPanic {
		panic("ready exploded")
	}
	return f.readyErr
}

func (f *fakeSyncer) Sync(ctx context.Context, user string) rostersync.Result {
	f.mu.Lock()
	f.calls = append(f.calls, user)
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	res, scripted := f.results[user]
	release := f.release
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	if user == f.panicUser {
		panic("sync exploded")
	}
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			f.mu.Lock()
			f.causes = append(f.causes, context.Cause(ctx))
			f.mu.Unlock()
			return rostersync.Result{User: user, Err: fmt.Errorf("sync %s: %w", user, ctx.Err())}
		}
	}
	if !scripted {
		res = rostersync.Result{Added: 1}
	}
	res.User = user
	return res
}

// Push records desired and syncs as Sync does; unless a result is
// scripted for user, it reports desired's items as added and its skipped
// contacts.
func (f *fakeSyncer) Push(ctx context.Context, user string, desired rosterhttp.Roster) rostersync.Result {
	f.mu.Lock()
	if f.pushed == nil {
		f.pushed = map[string]rosterhttp.Roster{}
	}
	f.pushed[user] = desired
	_, scripted := f.results[user]
	f.mu.Unlock()
	res := f.Sync(ctx, user)
	if !scripted && res.Err == nil {
		res.Added, res.Skipped = len(desired.Items), desired.Skipped
	}
	return res
}

// pushes returns the rosters pushed so far, by user.
func (f *fakeSyncer) pushes() map[string]rosterhttp.Roster {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.pushed)
}

func (f *fakeSyncer) snapshot() (calls []string, readyCalls, inflight, maxInflight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), f.readyCalls, f.inflight, f.maxInflight
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newServer builds a server for tests; UserDomain defaults to testDomain.
func newServer(tb testing.TB, cfg Config, s Syncer) *Server {
	tb.Helper()
	if cfg.UserDomain == "" {
		cfg.UserDomain = testDomain
	}
	srv, err := New(cfg, s, discardLogger())
	require.NoError(tb, err)
	return srv
}

// response is a recorded answer.
type response struct {
	code   int
	header http.Header
	body   string
}

// json decodes the body into a map, failing the test if it is not a JSON
// object.
func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	require.NoError(tb, json.Unmarshal([]byte(r.body), &m), "body %q", r.body)
	return m
}

// testHost is the Host of the test requests unless they set one: the
// default listen address, as curl sends it.
const testHost = DefaultListen

// do sends one request through the server's handler. header holds name,
// value pairs; a "Host" pair sets the request's Host.
func do(tb testing.TB, srv *Server, method, target string, body io.Reader, header ...string) response {
	tb.Helper()
	return doCtx(tb, context.Background(), srv, method, target, body, header...)
}

func doCtx(tb testing.TB, ctx context.Context, srv *Server, method, target string, body io.Reader, header ...string) response {
	tb.Helper()
	req := httptest.NewRequestWithContext(ctx, method, target, body)
	req.Host = testHost
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// refresh POSTs body to the bulk refresh endpoint.
func refresh(tb testing.TB, srv *Server, body string, header ...string) response {
	tb.Helper()
	return do(tb, srv, http.MethodPost, "/roster_admin/refresh", strings.NewReader(body), header...)
}

// requireJSON checks status code, content type and the exact JSON body.
func requireJSON(tb testing.TB, r response, code int, want string) {
	tb.Helper()
	require.Equal(tb, code, r.code, "body %s", r.body)
	require.Equal(tb, "application/json", r.header.Get("Content-Type"))
	require.JSONEq(tb, want, r.body)
}

// requireError checks an error answer whose message contains msg.
func requireError(tb testing.TB, r response, code int, msg string) {
	tb.Helper()
	require.Equal(tb, code, r.code, "body %s", r.body)
	require.Equal(tb, "application/json", r.header.Get("Content-Type"))
	m := r.json(tb)
	require.Len(tb, m, 2, "body %s", r.body)
	require.Equal(tb, "error", m["status"])
	require.Contains(tb, m["message"], msg)
}

// within fails the test if f does not return within d.
func within(tb testing.TB, d time.Duration, f func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		tb.Fatalf("did not return within %s", d)
	}
}
