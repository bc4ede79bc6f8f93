package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Answers to refused browser requests.
const (
	crossOriginAnswer = `{"status":"error","message":"` + msgCrossOrigin + `"}`
	foreignHostAnswer = `{"status":"error","message":"` + msgForeignHost + `"}`
)

// browserRequest is one request as a browser (or curl) would send it.
type browserRequest struct {
	name, method, target, body string
	header                     []string // name, value pairs; "Host" sets the Host
}

func (b browserRequest) do(t *testing.T, srv *Server) response {
	t.Helper()
	var body io.Reader
	if b.body != "" {
		body = strings.NewReader(b.body)
	}
	return do(t, srv, b.method, b.target, body, b.header...)
}

// newBrowserServer is a server whose Syncer is f, with /metrics mounted.
func newBrowserServer(t *testing.T, cfg Config, f *fakeSyncer) *Server {
	t.Helper()
	srv := newServer(t, cfg, f)
	mountMetrics(srv)
	return srv
}

// requireNothingStarted fails unless f was not even asked whether it is
// ready.
func requireNothingStarted(t *testing.T, f *fakeSyncer) {
	t.Helper()
	calls, readyCalls, _, _ := f.snapshot()
	require.Empty(t, calls, "a refused request must not sync")
	require.Zero(t, readyCalls, "a refused request must not reach a handler")
}

// A web page in the browser of someone on the sidecar's host can send
// requests to 127.0.0.1:5380; none of them may start a sync, whatever the
// method and content type, with or without a token.
func TestCrossOriginRequestsRefused(t *testing.T) {
	const token = "browser-token"
	auth := []string{"Authorization", "Bearer " + token}
	for _, tt := range []struct {
		browserRequest
		token, signed bool
	}{
		{browserRequest: browserRequest{
			name: "cross-site push text/plain", method: http.MethodPost, target: "/roster_admin/push", body: `{"alice":{}}`,
			header: []string{"Content-Type", "text/plain;charset=UTF-8", "Origin", "https://evil.example",
				"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "empty"},
		}},
		{browserRequest: browserRequest{
			name: "Origin mismatch push without Sec-Fetch", method: http.MethodPost, target: "/roster_admin/push",
			body: `{"alice":{}}`, header: []string{"Origin", "https://evil.example"},
		}},
		{browserRequest: browserRequest{
			name: "cross-site POST text/plain", method: http.MethodPost, target: "/roster_admin/refresh", body: `["alice"]`,
			header: []string{"Content-Type", "text/plain;charset=UTF-8", "Origin", "https://evil.example",
				"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "empty"},
		}},
		{browserRequest: browserRequest{
			name: "same-site POST from another port", method: http.MethodPost, target: "/roster_admin/refresh", body: `["alice"]`,
			header: []string{"Content-Type", "text/plain", "Origin", "http://127.0.0.1:8080", "Sec-Fetch-Site", "same-site"},
		}},
		{browserRequest: browserRequest{
			name: "cross-site GET of one user (an img tag)", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"},
		}},
		{browserRequest: browserRequest{
			name: "same-site GET of one user", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: []string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"},
		}},
		{browserRequest: browserRequest{
			name: "cross-site form POST of one user", method: http.MethodPost, target: "/roster_admin/refresh/alice",
			body: "x=1", header: []string{"Content-Type", "application/x-www-form-urlencoded",
				"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"},
		}},
		{browserRequest: browserRequest{
			name: "unknown Sec-Fetch-Site", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: []string{"Sec-Fetch-Site", "elsewhere"},
		}},
		{browserRequest: browserRequest{
			name: "Origin mismatch without Sec-Fetch POST", method: http.MethodPost, target: "/roster_admin/refresh",
			body: `["alice"]`, header: []string{"Content-Type", "text/plain", "Origin", "https://evil.example"},
		}},
		{browserRequest: browserRequest{
			name: "Origin mismatch without Sec-Fetch GET", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: []string{"Origin", "http://evil.example"},
		}},
		{browserRequest: browserRequest{
			name: "Origin on another port without Sec-Fetch", method: http.MethodPost, target: "/roster_admin/refresh",
			body: `["alice"]`, header: []string{"Origin", "http://127.0.0.1:8080"},
		}},
		{browserRequest: browserRequest{
			name: "Origin null (sandboxed frame)", method: http.MethodPost, target: "/roster_admin/refresh/alice",
			header: []string{"Origin", "null"},
		}},
		{browserRequest: browserRequest{
			name: "cross-site POST with a valid token", method: http.MethodPost, target: "/roster_admin/refresh", body: `["alice"]`,
			header: append([]string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, auth...),
		}, token: true},
		{browserRequest: browserRequest{
			name: "cross-site GET with a valid token", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: append([]string{"Sec-Fetch-Site", "cross-site", "Host", "admin.example.test"}, auth...),
		}, token: true},
		{browserRequest: browserRequest{
			name: "cross-site push with a valid signature", method: http.MethodPost, target: "/roster_admin/push", body: `{"alice":{}}`,
			header: append([]string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"},
				signedHeader(testSecret, testNow.Unix(), http.MethodPost, "/roster_admin/push", `{"alice":{}}`)...),
		}, signed: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSyncer{}
			cfg := Config{}
			if tt.token {
				cfg.Token = token
			}
			if tt.signed {
				cfg.HMACSecret = testSecret
			}
			srv := newBrowserServer(t, cfg, f)
			srv.now = func() time.Time { return testNow }
			requireJSON(t, tt.do(t, srv), http.StatusForbidden, crossOriginAnswer)
			requireNothingStarted(t, f)
		})
	}
}

// A DNS-rebinding page (its own name now resolving to 127.0.0.1) is
// same-origin to the browser and could read every answer; without a token
// only loopback names are served.
func TestForeignHostRefusedWithoutToken(t *testing.T) {
	routes := []browserRequest{
		{method: http.MethodPost, target: "/roster_admin/refresh", body: `["alice"]`},
		{method: http.MethodPost, target: "/roster_admin/push", body: `{"alice":{}}`},
		{method: http.MethodGet, target: "/roster_admin/refresh/alice"},
		{method: http.MethodPost, target: "/roster_admin/refresh/alice"},
		{method: http.MethodGet, target: "/healthz"},
		{method: http.MethodGet, target: "/readyz"},
		{method: http.MethodGet, target: "/metrics"},
		{method: http.MethodGet, target: "/openapi.yaml"},
		{method: http.MethodGet, target: "/nope"},
	}
	for _, host := range []string{
		"evil.example", "evil.example:5380", "localhost.evil.example:5380", "127.0.0.1.nip.io:5380",
		"localhost.:5380", "192.0.2.1:5380", "0.0.0.0:5380", "[::2]:5380", "[::]:5380", "127.0.0.1:5380.evil.example",
	} {
		for _, r := range routes {
			t.Run(host+" "+r.method+" "+r.target, func(t *testing.T) {
				f := &fakeSyncer{}
				srv := newBrowserServer(t, Config{}, f)
				// What the rebinding page sends: same-origin in the browser's eyes.
				r.header = []string{"Host", host, "Origin", "http://" + host, "Sec-Fetch-Site", "same-origin",
					"Content-Type", "text/plain"}
				requireJSON(t, r.do(t, srv), http.StatusForbidden, foreignHostAnswer)
				r.header = []string{"Host", host} // and without any browser header
				requireJSON(t, r.do(t, srv), http.StatusForbidden, foreignHostAnswer)
				requireNothingStarted(t, f)
			})
		}
	}
}

// Backends and curl send no Sec-Fetch-* and no Origin: they work as before,
// as do same-origin requests and typed URLs; the read-only routes answer
// any page.
func TestNonBrowserRequestsAllowed(t *testing.T) {
	const token = "backend-token"
	auth := []string{"Authorization", "Bearer " + token}
	var cases []browserRequest
	for _, host := range []string{
		"127.0.0.1:5380", "127.0.0.1", "127.1.2.3:5380", "localhost:5380", "localhost", "LocalHost:5380",
		"[::1]:5380", "[::1]", "[::ffff:127.0.0.1]:5380", "", // "": HTTP/1.0 without Host
	} {
		cases = append(cases,
			browserRequest{name: "curl POST Host " + host, method: http.MethodPost, target: "/roster_admin/refresh",
				body: `["alice"]`, header: []string{"Host", host, "Content-Type", "application/json"}},
			browserRequest{name: "curl GET Host " + host, method: http.MethodGet, target: "/roster_admin/refresh/alice",
				header: []string{"Host", host}})
	}
	cases = append(cases,
		browserRequest{name: "curl POST text/plain", method: http.MethodPost, target: "/roster_admin/refresh",
			body: `["alice"]`, header: []string{"Content-Type", "text/plain"}},
		browserRequest{name: "curl POST one user", method: http.MethodPost, target: "/roster_admin/refresh/alice"},
		browserRequest{name: "curl push", method: http.MethodPost, target: "/roster_admin/push", body: `{"alice":{}}`},
		browserRequest{name: "same-origin POST", method: http.MethodPost, target: "/roster_admin/refresh", body: `["alice"]`,
			header: []string{"Origin", "http://" + testHost, "Sec-Fetch-Site", "same-origin", "Content-Type", "application/json"}},
		browserRequest{name: "same-origin GET", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: []string{"Sec-Fetch-Site", "same-origin"}},
		browserRequest{name: "typed URL (Sec-Fetch-Site none)", method: http.MethodGet, target: "/roster_admin/refresh/alice",
			header: []string{"Sec-Fetch-Site", "none", "Sec-Fetch-Mode", "navigate"}},
		browserRequest{name: "Origin matching Host without Sec-Fetch", method: http.MethodPost, target: "/roster_admin/refresh/alice",
			header: []string{"Origin", "http://" + testHost}},
	)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSyncer{}
			srv := newBrowserServer(t, Config{}, f)
			r := tt.do(t, srv)
			require.Equal(t, http.StatusOK, r.code, r.body)
			calls, _, _, _ := f.snapshot()
			assert.Equal(t, []string{"alice"}, calls)
		})
	}

	t.Run("read-only routes answer cross-site requests", func(t *testing.T) {
		srv := newBrowserServer(t, Config{}, &fakeSyncer{})
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
			r := do(t, srv, http.MethodGet, path, nil, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
			assert.Equal(t, http.StatusOK, r.code, "%s: %s", path, r.body)
		}
	})

	t.Run("with a token any Host is served as before", func(t *testing.T) {
		for _, host := range []string{"admin.example.test:5380", "192.0.2.10:5380", "roster-sidecar.default.svc"} {
			f := &fakeSyncer{}
			srv := newBrowserServer(t, Config{Listen: "0.0.0.0:5380", Token: token}, f)
			r := do(t, srv, http.MethodPost, "/roster_admin/refresh", strings.NewReader(`["alice"]`), append([]string{"Host", host}, auth...)...)
			require.Equal(t, http.StatusOK, r.code, r.body)
			r = do(t, srv, http.MethodGet, "/roster_admin/refresh/bob", nil, append([]string{"Host", host}, auth...)...)
			require.Equal(t, http.StatusOK, r.code, r.body)
			for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
				r := do(t, srv, http.MethodGet, path, nil, "Host", host)
				require.Equal(t, http.StatusOK, r.code, "%s: %s", path, r.body)
			}
			calls, _, _, _ := f.snapshot()
			assert.Equal(t, []string{"alice", "bob"}, calls)
			// The token is still required.
			r = do(t, srv, http.MethodGet, "/roster_admin/refresh/bob", nil, "Host", host)
			require.Equal(t, http.StatusUnauthorized, r.code, r.body)
		}
	})
}
