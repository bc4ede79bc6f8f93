package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// failingSyncer fails every user whose name contains an "x".
type failingSyncer struct{ notReady bool }

func (f failingSyncer) Ready() error {
	if f.notReady {
		return errors.New("not connected to the XMPP server")
	}
	return nil
}

func (failingSyncer) Sync(_ context.Context, user string) rostersync.Result {
	if strings.Contains(user, "x") {
		return rostersync.Result{User: user, Err: errors.New("fetch roster of " + user + ": backend answered 500")}
	}
	return rostersync.Result{User: user, Added: 1}
}

func (f failingSyncer) Push(ctx context.Context, user string, _ rosterhttp.Roster) rostersync.Result {
	return f.Sync(ctx, user)
}

// countingSyncer counts Sync calls; every sync succeeds.
type countingSyncer struct{ n atomic.Int64 }

func (*countingSyncer) Ready() error { return nil }

func (c *countingSyncer) Sync(_ context.Context, user string) rostersync.Result {
	c.n.Add(1)
	return rostersync.Result{User: user, Added: 1}
}

func (c *countingSyncer) Push(ctx context.Context, user string, _ rosterhttp.Roster) rostersync.Result {
	return c.Sync(ctx, user)
}

func FuzzRefreshBody(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `[]`, `["john"]`, `["john","aaron"]`, `["John","john@example.test"]`, `["x1","x2"]`,
		`["john","x"]`, `{}`, `null`, `"x"`, `[1]`, `[null]`, `["a"] x`, `["a"`, `["a@b@c"]`, `["hash#tag","josé"]`,
		"[\"\xff\"]", `["\ud800"]`, `["a","b","c","d","e","f","g","h","i"]`, strings.Repeat(`"a",`, 200),
	} {
		f.Add([]byte(seed))
	}
	cfg := Config{MaxBodyBytes: 512, MaxUsers: 8, Concurrency: 2}
	ready := newServer(f, cfg, failingSyncer{})
	notReady := newServer(f, cfg, failingSyncer{notReady: true})

	f.Fuzz(func(t *testing.T, body []byte) {
		srv := ready
		if len(body)%3 == 0 {
			srv = notReady
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/roster_admin/refresh", bytes.NewReader(body))
		req.Host = testHost
		srv.Handler().ServeHTTP(rec, req)

		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var answer struct {
			Status  *string      `json:"status"`
			Message string       `json:"message"`
			Updated int          `json:"updated"`
			Errors  int          `json:"errors"`
			Results []UserResult `json:"results"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body, err)
		}
		if answer.Status == nil {
			t.Fatalf("answer %q has no status", rec.Body)
		}
		want := "error"
		if rec.Code == http.StatusOK && (answer.Updated > 0 || len(answer.Results) == 0) {
			want = "ok"
		}
		if *answer.Status != want {
			t.Fatalf("status %q, want %q, in answer %q", *answer.Status, want, rec.Body)
		}
		if rec.Code == http.StatusOK && answer.Updated+answer.Errors != len(answer.Results) {
			t.Fatalf("counts do not add up in %q", rec.Body)
		}
	})
}

// FuzzBrowserGuard sends refreshes with any Host, Origin and Sec-Fetch-Site
// to a server without a token. A refused request (403) must not reach the
// Syncer; an accepted one must have a Host that net/url reads as a loopback
// name with an optional numeric port, and no Sec-Fetch-Site or Origin that
// names another site.
func FuzzBrowserGuard(f *testing.F) {
	for _, seed := range []struct {
		get                bool
		host, origin, site string
	}{
		{false, "127.0.0.1:5380", "", ""},
		{true, "localhost:5380", "", ""},
		{true, "[::1]:5380", "", "none"},
		{false, "127.0.0.1:5380", "http://127.0.0.1:5380", "same-origin"},
		{false, "127.0.0.1:5380", "https://evil.example", "cross-site"},
		{true, "127.0.0.1:5380", "", "cross-site"},
		{true, "127.0.0.1:5380", "", "same-site"},
		{false, "127.0.0.1:5380", "null", ""},
		{false, "127.0.0.1:5380", "http://127.0.0.1:8080", ""},
		{false, "evil.example:5380", "http://evil.example:5380", "same-origin"},
		{true, "127.0.0.1:5380.evil.example", "", ""},
		{true, "[::ffff:127.0.0.1]", "", ""},
		{true, "[::1%25lo]:5380", "", ""},
		{true, "localhost.", "", ""},
		{true, "", "", ""},
	} {
		f.Add(seed.get, seed.host, seed.origin, seed.site)
	}
	syncer := &countingSyncer{}
	srv := newServer(f, Config{}, syncer)
	f.Fuzz(func(t *testing.T, get bool, host, origin, site string) {
		before := syncer.n.Load()
		req := httptest.NewRequest(http.MethodPost, "/roster_admin/refresh", strings.NewReader(`["alice"]`))
		if get {
			req = httptest.NewRequest(http.MethodGet, "/roster_admin/refresh/alice", nil)
		}
		req.Host = host
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)

		synced := syncer.n.Load() - before
		if rec.Code == http.StatusForbidden {
			if synced != 0 {
				t.Fatalf("refused, yet synced %d users", synced)
			}
			return
		}
		if rec.Code != http.StatusOK || synced != 1 {
			t.Fatalf("status %d, %d users synced: %s", rec.Code, synced, rec.Body)
		}
		if site != "" && site != "same-origin" && site != "none" {
			t.Fatalf("accepted Sec-Fetch-Site %q", site)
		}
		if site == "" && origin != "" {
			if u, err := url.Parse(origin); err != nil || u.Host != host {
				t.Fatalf("accepted Origin %q for Host %q", origin, host)
			}
		}
		if host == "" {
			return // HTTP/1.0 without Host: no browser sends that
		}
		u, err := url.Parse("http://" + host + "/")
		// net/url decodes an IPv6 zone's "%25".
		if err != nil || u.Host != strings.ReplaceAll(host, "%25", "%") || strings.Trim(u.Port(), "0123456789") != "" {
			t.Fatalf("accepted Host %q, which is not host[:port] (%v)", host, err)
		}
		name := u.Hostname()
		if !strings.EqualFold(name, "localhost") {
			ip, err := netip.ParseAddr(name)
			if err != nil || !ip.Unmap().IsLoopback() {
				t.Fatalf("accepted Host %q, whose name %q is not loopback", host, name)
			}
		}
	})
}

// FuzzPushBody sends any body to the push endpoint: the answer is one of
// the documented statuses with a JSON body whose counts add up, and only
// users whose roster parses reach the Syncer.
func FuzzPushBody(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `[]`, `null`, `{"john":{}}`, `{"john":{"marie@example.test":{"name":"Marie"}},"aaron":[]}`,
		`{"x1":{},"x2":null}`, `{"john":{},"JOHN":{}}`, `{"john":{}} x`, `{"a@b@c":{}}`, `{"john":{"a@b@c":{}}}`,
		`{"john":{"m@example.test":{"groups":{"G":1},"subscription":"to"}}}`, "{\"j\xffn\":{}}",
		`{"a":{},"b":{},"c":{},"d":{},"e":{},"f":{},"g":{},"h":{},"i":{}}`,
	} {
		f.Add([]byte(seed))
	}
	cfg := Config{MaxBodyBytes: 512, MaxUsers: 8, Concurrency: 2, MaxRosterBytes: 128, RosterLimits: rosterhttp.Limits{MaxItems: 4}}
	syncer := &countingSyncer{}
	srv := newServer(f, cfg, syncer)

	f.Fuzz(func(t *testing.T, body []byte) {
		before := syncer.n.Load()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/roster_admin/push", bytes.NewReader(body))
		req.Host = testHost
		srv.Handler().ServeHTTP(rec, req)
		synced := syncer.n.Load() - before

		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if synced != 0 {
				t.Fatalf("status %d, yet %d users synced", rec.Code, synced)
			}
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		var answer RefreshResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body, err)
		}
		if rec.Code != http.StatusOK {
			return
		}
		if answer.Updated+answer.Errors != len(answer.Results) || int64(answer.Updated) != synced {
			t.Fatalf("counts do not add up (%d synced) in %q", synced, rec.Body)
		}
		if len(answer.Results) > cfg.MaxUsers {
			t.Fatalf("%d users in one push, the limit is %d", len(answer.Results), cfg.MaxUsers)
		}
	})
}

// FuzzSignatureHeaders sends a refresh with any signature headers to a
// server with an HMAC secret: the parsers read back what they accept in
// its one canonical form, and nothing but the right signature passes.
func FuzzSignatureHeaders(f *testing.F) {
	now := testNow.Unix()
	good := signedHeader(testSecret, now, http.MethodPost, "/roster_admin/refresh", `["alice"]`)
	for _, seed := range [][2]string{
		{good[1], good[3]}, {good[1], strings.ToUpper(good[3])}, {"", ""}, {"0", "v1="}, {"01767225600", good[3]},
		{"-1", good[3]}, {"+1767225600", good[3]}, {" 1767225600", good[3]}, {"1767225600 ", good[3]},
		{"99999999999999999999", good[3]}, {good[1], "v1=" + strings.Repeat("0", 64)}, {good[1], "v1=" + strings.Repeat("0", 63)},
		{good[1], "v2=" + good[3][3:]}, {good[1], good[3] + ",v1=" + good[3][3:]}, {good[1], "v1= " + good[3][3:]},
		{good[1], "V1=" + good[3][3:]}, {good[1], "v1=" + good[3][3:] + "\x00"},
	} {
		f.Add(seed[0], seed[1])
	}
	syncer := &countingSyncer{}
	srv := newServer(f, Config{HMACSecret: testSecret}, syncer)
	srv.now = func() time.Time { return testNow }
	f.Fuzz(func(t *testing.T, ts, sig string) {
		if n, err := parseTimestamp(ts); err == nil && strconv.FormatInt(n, 10) != ts {
			t.Fatalf("timestamp %q read as %d", ts, n)
		}
		if sum, err := parseSignature(sig); err == nil && formatSignature(sum) != "v1="+strings.ToLower(sig[3:]) {
			t.Fatalf("signature %q read as %x", sig, sum)
		}

		before := syncer.n.Load()
		req := httptest.NewRequest(http.MethodPost, "/roster_admin/refresh", strings.NewReader(`["alice"]`))
		req.Host = testHost
		req.Header[HeaderTimestamp] = []string{ts}
		req.Header[HeaderSignature] = []string{sig}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		synced := syncer.n.Load() - before
		valid := ts == good[1] && strings.EqualFold(sig, good[3]) && strings.HasPrefix(sig, "v1=")
		switch {
		case rec.Code == http.StatusOK && synced == 1 && valid:
			srv.seen = newReplayCache(maxSeenSignatures) // accept it again next time
		case rec.Code == http.StatusUnauthorized && synced == 0:
			if valid && !strings.Contains(rec.Body.String(), "a replay") {
				t.Fatalf("the right signature was refused: %s", rec.Body)
			}
		default:
			t.Fatalf("status %d, %d users synced, for %q %q: %s", rec.Code, synced, ts, sig, rec.Body)
		}
	})
}
