package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// Preview records the call with Sync's and answers as Sync would, turned
// into a preview: an error for a failing user; otherwise as many additions,
// updates and removals as the scripted result's counts (c0@.., u0@..,
// r0@..), and its skipped contacts. Without a script: one addition.
func (f *fakeSyncer) Preview(ctx context.Context, user string) (rostersync.Preview, error) {
	res := f.Sync(ctx, user)
	p := rostersync.Preview{User: user, Skipped: res.Skipped}
	if res.Err != nil {
		return p, res.Err
	}
	for i := range res.Added {
		p.Add = append(p.Add, rostersync.Change{JID: fmt.Sprintf("c%d@example.test", i),
			Want: roster.Item{JID: fmt.Sprintf("c%d@example.test", i), Name: "New", Groups: []string{"G"}, Subscription: "both"}})
	}
	for i := range res.Updated {
		jid := fmt.Sprintf("u%d@example.test", i)
		p.Update = append(p.Update, rostersync.Change{JID: jid, Fields: []string{rostersync.FieldName},
			Want: roster.Item{JID: jid, Name: "Michael", Subscription: "both"}, Have: roster.Item{JID: jid, Name: "Mike", Subscription: "both"}})
	}
	for i := range res.Removed {
		jid := fmt.Sprintf("r%d@example.test", i)
		p.Remove = append(p.Remove, rostersync.Change{JID: jid, Have: roster.Item{JID: jid, Groups: []string{"Old"}}})
	}
	return p, nil
}

func (f failingSyncer) Preview(ctx context.Context, user string) (rostersync.Preview, error) {
	res := f.Sync(ctx, user)
	return rostersync.Preview{User: user}, res.Err
}

func (c *countingSyncer) Preview(_ context.Context, user string) (rostersync.Preview, error) {
	c.n.Add(1)
	return rostersync.Preview{User: user}, nil
}

// jsonUnmarshal decodes the JSON text s into v.
func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// diff POSTs body to the diff endpoint.
func diff(tb testing.TB, srv *Server, body string, header ...string) response {
	tb.Helper()
	return do(tb, srv, http.MethodPost, "/roster_admin/diff", strings.NewReader(body), header...)
}

func TestDiffAnswersWhatARefreshWouldChange(t *testing.T) {
	f := &fakeSyncer{results: map[string]rostersync.Result{
		"john":  {Added: 1, Updated: 1, Removed: 1, Skipped: []rosterhttp.Skipped{{JID: "not a jid", Reason: "not a valid JID"}}},
		"aaron": {},
		"bad":   {Err: errors.New("fetch roster of bad@example.test: backend answered 500")},
	}}
	srv := newServer(t, Config{}, f)
	r := diff(t, srv, `["john", "aaron", "John@example.test", "bad"]`)
	requireJSON(t, r, http.StatusOK, `{
		"status": "ok", "message": "roster diff complete", "changed": 1, "unchanged": 1, "errors": 1,
		"results": [
			{"user": "john", "status": "ok",
			 "add": [{"jid": "c0@example.test", "want": {"name": "New", "groups": ["G"], "subscription": "both"}}],
			 "update": [{"jid": "u0@example.test", "fields": ["name"],
			             "want": {"name": "Michael", "groups": [], "subscription": "both"},
			             "have": {"name": "Mike", "groups": [], "subscription": "both"}}],
			 "remove": [{"jid": "r0@example.test", "have": {"name": "", "groups": ["Old"], "subscription": "none"}}],
			 "skipped": [{"jid": "not a jid", "reason": "not a valid JID"}]},
			{"user": "aaron", "status": "ok"},
			{"user": "bad", "status": "error", "error": "fetch roster of bad@example.test: backend answered 500"}
		]}`)
	calls, _, _, _ := f.snapshot()
	slices.Sort(calls)
	require.Equal(t, []string{"aaron", "bad", "john"}, calls, "each distinct user previewed once")

	// The answer reads back into the previews it was made from.
	var decoded DiffResponse
	require.NoError(t, jsonUnmarshal(r.body, &decoded))
	p := decoded.Results[0].Preview()
	require.Equal(t, 3, p.Changes())
	require.Equal(t, "Mike", p.Update[0].Have.Name)
	require.Equal(t, []string{"Old"}, p.Remove[0].Have.Groups)

	// Every user failed: status error.
	r = diff(t, srv, `["bad"]`)
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "error", r.json(t)["status"])
	require.Equal(t, messageDiffAllFailed, r.json(t)["message"])

	// Nothing to do.
	requireJSON(t, diff(t, srv, ` [] `), http.StatusOK,
		`{"status": "ok", "message": "roster diff complete", "changed": 0, "unchanged": 0, "errors": 0, "results": []}`)
}

// The diff body is the bulk refresh's, held to the same limits, and is
// validated before anything is read.
func TestDiffValidatesLikeTheRefresh(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{MaxUsers: 2, MaxBodyBytes: 64}, f)
	requireError(t, diff(t, srv, `{"john": true}`), http.StatusBadRequest, "must be a JSON array of usernames")
	requireError(t, diff(t, srv, `["a", "b", "c"]`), http.StatusBadRequest, "too many usernames in one request: 3, the limit is 2")
	requireError(t, diff(t, srv, `["john", "bad user"]`), http.StatusBadRequest, "")
	requireError(t, diff(t, srv, `["`+strings.Repeat("a", 80)+`"]`), http.StatusRequestEntityTooLarge, "request body larger than 64 bytes")
	requireError(t, diff(t, srv, ``), http.StatusBadRequest, "request body is empty")
	calls, readyCalls, _, _ := f.snapshot()
	require.Empty(t, calls)
	require.Zero(t, readyCalls, "readiness asked before the body was valid")
}

func TestDiffNotReady(t *testing.T) {
	f := &fakeSyncer{readyErr: errors.New("not connected to the XMPP server")}
	srv := newServer(t, Config{}, f)
	requireJSON(t, diff(t, srv, `["john"]`), http.StatusServiceUnavailable,
		`{"status": "error", "message": "not connected to the XMPP server"}`)
	calls, _, _, _ := f.snapshot()
	require.Empty(t, calls)
}

// Previews run at most Concurrency at once, and the request timeout fails
// the users not previewed yet, each alone.
func TestDiffConcurrencyAndTimeout(t *testing.T) {
	f := &fakeSyncer{release: make(chan struct{})}
	srv := newServer(t, Config{Concurrency: 2, RequestTimeout: 100 * time.Millisecond}, f)
	var r response
	within(t, 5*time.Second, func() { r = diff(t, srv, `["u1", "u2", "u3", "u4", "u5"]`) })
	require.Equal(t, http.StatusOK, r.code, r.body)
	var resp DiffResponse
	require.NoError(t, jsonUnmarshal(r.body, &resp))
	require.Equal(t, 5, resp.Errors)
	require.Equal(t, "error", resp.Status)
	cut := 0
	for _, u := range resp.Results {
		require.Equal(t, "error", u.Status)
		if strings.Contains(u.Error, "request cancelled: diff took longer than the request timeout of 100ms") {
			cut++
		}
	}
	require.Equal(t, 3, cut, "the users not started fail for the timeout: %+v", resp.Results)
	_, _, inflight, maxInflight := f.snapshot()
	require.Zero(t, inflight)
	require.Equal(t, 2, maxInflight)
}

func TestDiffPanicFailsOneUser(t *testing.T) {
	f := &fakeSyncer{panicUser: "boom"}
	srv := newServer(t, Config{}, f)
	r := diff(t, srv, `["john", "boom"]`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var resp DiffResponse
	require.NoError(t, jsonUnmarshal(r.body, &resp))
	require.Equal(t, 1, resp.Changed)
	require.Equal(t, 1, resp.Errors)
	require.Equal(t, "diff boom: internal error: panic: sync exploded", resp.Results[1].Error)
}

func TestStatus(t *testing.T) {
	t.Run("without a link source", func(t *testing.T) {
		srv := newServer(t, Config{MaxUsers: 50, MaxBodyBytes: 4096, Concurrency: 3, RequestTimeout: 1500 * time.Millisecond}, &fakeSyncer{})
		requireJSON(t, do(t, srv, http.MethodGet, "/roster_admin/status", nil), http.StatusOK, `{
			"status": "ok", "ready": true, "user_domain": "example.test",
			"limits": {"max_users": 50, "max_body_bytes": 4096, "concurrency": 3, "request_timeout_seconds": 2}}`)
	})
	t.Run("with the link, not ready", func(t *testing.T) {
		srv := newServer(t, Config{}, &fakeSyncer{readyErr: errors.New("roster privilege not granted for example.test")})
		calls := 0
		srv.SetStatus("v1.2.3 (test)", func() LinkStatus {
			calls++
			return LinkStatus{
				Mode: ModePrivilege, Address: "127.0.0.1:5347", Component: "roster.example.test", Connected: true,
				Privileges: []DomainPrivileges{{Domain: "example.test", Roster: "get", Message: "outgoing"}},
				Helper:     HelperMissing, CompareSubscription: "auto",
				Problem: &Problem{What: "the server granted roster=get only (need get and set)", Fix: "set roster = both"},
			}
		})
		requireJSON(t, do(t, srv, http.MethodGet, "/roster_admin/status", nil), http.StatusOK, `{
			"status": "ok", "ready": false, "reason": "roster privilege not granted for example.test",
			"version": "v1.2.3 (test)", "user_domain": "example.test",
			"limits": {"max_users": 10000, "max_body_bytes": 1048576, "concurrency": 8, "request_timeout_seconds": 300},
			"link": {"mode": "xep-0356", "address": "127.0.0.1:5347", "component": "roster.example.test", "connected": true,
			         "privileges": [{"domain": "example.test", "roster": "get", "message": "outgoing"}],
			         "helper": "missing", "compare_subscription": "auto",
			         "problem": {"what": "the server granted roster=get only (need get and set)", "fix": "set roster = both"}}}`)
		require.Equal(t, 1, calls)
	})
	t.Run("no privileges is an empty list", func(t *testing.T) {
		srv := newServer(t, Config{}, &fakeSyncer{readyErr: errors.New("not connected")})
		srv.SetStatus("", func() LinkStatus {
			return LinkStatus{Mode: ModeEjabberdAPI, Address: "x:1", Component: "c", Error: "connection refused", CompareSubscription: "always"}
		})
		r := do(t, srv, http.MethodGet, "/roster_admin/status", nil)
		require.Equal(t, http.StatusOK, r.code)
		require.Contains(t, r.body, `"privileges":[]`)
		require.NotContains(t, r.body, `"version"`)
		require.NotContains(t, r.body, `"helper"`)
	})
}

// The new routes are guarded as the refresh routes are: token or
// signature, cross-origin pages, foreign Host names.
func TestBulkRoutesAreProtected(t *testing.T) {
	routes := []struct{ method, target, body string }{
		{http.MethodPost, "/roster_admin/diff", `["john"]`},
		{http.MethodGet, "/roster_admin/status", ``},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.target, func(t *testing.T) {
			f := &fakeSyncer{}
			send := func(srv *Server, header ...string) response {
				return do(t, srv, rt.method, rt.target, strings.NewReader(rt.body), header...)
			}
			withToken := newServer(t, Config{Token: "tok"}, f)
			requireError(t, send(withToken), http.StatusUnauthorized, "missing or invalid bearer token")
			requireError(t, send(withToken, "Authorization", "Bearer nope"), http.StatusUnauthorized, "missing or invalid bearer token")
			require.Equal(t, http.StatusOK, send(withToken, "Authorization", "Bearer tok").code)

			signing := newSigningServer(t, Config{HMACSecret: testSecret}, f)
			requireError(t, send(signing), http.StatusUnauthorized, "missing request signature")
			good := signedHeader(testSecret, testNow.Unix(), rt.method, rt.target, rt.body)
			require.Equal(t, http.StatusOK, send(signing, good...).code)
			requireError(t, send(signing, good...), http.StatusUnauthorized, "")

			open := newServer(t, Config{}, f)
			requireError(t, send(open, "Sec-Fetch-Site", "cross-site"), http.StatusForbidden, "cross-origin request refused")
			requireError(t, send(open, "Origin", "https://evil.example"), http.StatusForbidden, "cross-origin request refused")
			requireError(t, send(open, "Host", "evil.example:5380"), http.StatusForbidden, "Host is a loopback name")
			require.Equal(t, http.StatusOK, send(open, "Sec-Fetch-Site", "same-origin").code)
			calls, _, _, _ := f.snapshot()
			require.Len(t, calls, map[bool]int{true: 3, false: 0}[rt.body != ""], "previews run only for the accepted diffs")
		})
	}
}

// SignRequest makes the signature the server checks, over the target as
// the client sends it.
func TestSignRequest(t *testing.T) {
	f := &fakeSyncer{}
	srv := newSigningServer(t, Config{HMACSecret: testSecret}, f)
	for _, target := range []string{"/roster_admin/diff", "/roster_admin/diff?batch=2", "/roster_admin/refresh/hash%23tag"} {
		body := []byte(`["john"]`)
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:5380"+target, strings.NewReader(string(body)))
		SignRequest(req, testSecret, body, testNow)
		require.Equal(t, signedHeader(testSecret, testNow.Unix(), http.MethodPost, target, string(body)),
			[]string{HeaderTimestamp, req.Header.Get(HeaderTimestamp), HeaderSignature, req.Header.Get(HeaderSignature)})
		req.Host = testHost
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	}
	req := httptest.NewRequest(http.MethodGet, "/roster_admin/status", nil)
	SignRequest(req, "another-secret-0123456789", nil, testNow)
	req.Host = testHost
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
}

// bulkProbes are openAPIProbes' requests for the routes of bulk.go's
// commands: /roster_admin/diff and /roster_admin/status.
func bulkProbes() []probe {
	const (
		diffPath   = "/roster_admin/diff"
		statusPath = "/roster_admin/status"
		token      = "probe-token"
	)
	notReady := func() *fakeSyncer { return &fakeSyncer{readyErr: errors.New("not connected to the XMPP server")} }
	panicking := func() *fakeSyncer { return &fakeSyncer{readyPanic: true} }
	mixed := func() *fakeSyncer {
		return &fakeSyncer{results: map[string]rostersync.Result{
			"john":  {Added: 2, Updated: 1, Removed: 1, Skipped: []rosterhttp.Skipped{{JID: "x y@example.test", Reason: "invalid JID"}}},
			"aaron": {Err: errors.New("fetch roster of aaron: backend answered 500")},
			"mary":  {},
		}}
	}
	crossSite := []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	foreignHost := []string{"Host", "evil.example:5380"}
	badSignature := []string{HeaderTimestamp, "1", HeaderSignature, "v1=" + strings.Repeat("0", 64)}
	var ps []probe
	add := func(p probe) { ps = append(ps, p) }
	add(probe{method: "POST", path: diffPath, code: 200, target: diffPath, body: `["john","aaron","mary","john@example.test"]`, syncer: mixed()})
	add(probe{method: "POST", path: diffPath, code: 200, target: diffPath, body: `[]`})
	add(probe{method: "POST", path: diffPath, code: 400, target: diffPath, body: `"john"`})
	add(probe{method: "POST", path: diffPath, code: 401, target: diffPath, body: `["john"]`, cfg: Config{Token: token}})
	add(probe{method: "POST", path: diffPath, code: 401, target: diffPath, body: `["john"]`, header: badSignature, cfg: Config{HMACSecret: testSecret}})
	add(probe{method: "POST", path: diffPath, code: 403, target: diffPath, body: `["john"]`, header: crossSite})
	add(probe{method: "POST", path: diffPath, code: 403, target: diffPath, body: `["john"]`, header: foreignHost})
	add(probe{method: "POST", path: diffPath, code: 413, target: diffPath, body: `["` + strings.Repeat("a", 64) + `"]`, cfg: Config{MaxBodyBytes: 16}})
	add(probe{method: "POST", path: diffPath, code: 500, target: diffPath, body: `["john"]`, syncer: panicking()})
	add(probe{method: "POST", path: diffPath, code: 503, target: diffPath, body: `["john"]`, syncer: notReady()})
	add(probe{method: "GET", path: statusPath, code: 200, target: statusPath})
	add(probe{method: "GET", path: statusPath, code: 200, target: statusPath, syncer: notReady(), link: true})
	add(probe{method: "GET", path: statusPath, code: 401, target: statusPath, cfg: Config{Token: token}})
	add(probe{method: "GET", path: statusPath, code: 401, target: statusPath, header: badSignature, cfg: Config{HMACSecret: testSecret}})
	add(probe{method: "GET", path: statusPath, code: 403, target: statusPath, header: crossSite})
	add(probe{method: "GET", path: statusPath, code: 403, target: statusPath, header: foreignHost})
	add(probe{method: "GET", path: statusPath, code: 500, target: statusPath, syncer: panicking()})
	return ps
}

// probeLink is the link status of the status probes that ask for one.
func probeLink() LinkStatus {
	return LinkStatus{
		Mode: ModePrivilege, Address: "127.0.0.1:5347", Component: "roster.example.test", Connected: true,
		Privileges: []DomainPrivileges{{Domain: "example.test", Roster: "get", Message: "outgoing", Presence: "managed_entity"}},
		Helper:     HelperUnknown, CompareSubscription: "auto", Error: "stream error: conflict",
		Problem: &Problem{What: "the server granted roster=get only (need get and set)", Fix: "set roster = both"},
	}
}

// The documented properties of the new answers are exactly the JSON
// fields of their Go types.
func TestOpenAPIBulkSchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := doc.resolve(t, doc.resolve(t, doc.root["components"])["schemas"])
	for name, v := range map[string]any{
		"DiffResponse":     DiffResponse{},
		"UserDiff":         UserDiff{},
		"DiffChange":       DiffChange{},
		"DiffItem":         DiffItem{},
		"ServerStatus":     ServerStatus{},
		"Limits":           Limits{},
		"LinkStatus":       LinkStatus{},
		"DomainPrivileges": DomainPrivileges{},
		"Problem":          Problem{},
	} {
		t.Run(name, func(t *testing.T) {
			props, _ := doc.resolve(t, schemas[name])["properties"].(map[string]any)
			var got []string
			for k := range props {
				got = append(got, k)
			}
			slices.Sort(got)
			require.Equal(t, jsonFields(v), got)
		})
	}
}
