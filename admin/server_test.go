package admin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

func TestNewListen(t *testing.T) {
	tests := []struct {
		listen   string
		loopback bool
	}{
		{"127.0.0.1:5380", true},
		{"127.8.9.10:5380", true},
		{"[::1]:5380", true},
		{"localhost:5380", true},
		{"LocalHost:0", true},
		{"[::ffff:127.0.0.1]:5380", true},
		{":5380", false},
		{"0.0.0.0:5380", false},
		{"[::]:5380", false},
		{"192.0.2.10:5380", false},
		{"admin.example.test:5380", false},
		{"localhost.example.test:5380", false},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			_, err := New(Config{Listen: tt.listen, UserDomain: testDomain}, &fakeSyncer{}, discardLogger())
			if tt.loopback {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, "refusing to listen on "+tt.listen+" without admin.token or admin.hmac_secret")
			}
			_, err = New(Config{Listen: tt.listen, Token: "t", UserDomain: testDomain}, &fakeSyncer{}, discardLogger())
			require.NoError(t, err, "any address is fine with a token")
			_, err = New(Config{Listen: tt.listen, HMACSecret: testSecret, UserDomain: testDomain}, &fakeSyncer{}, discardLogger())
			require.NoError(t, err, "any address is fine with an HMAC secret")
		})
	}
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"default listen is loopback", Config{}, ""},
		{"listen without port", Config{Listen: "127.0.0.1"}, "invalid listen address"},
		{"only cert", Config{TLSCertFile: "cert.pem"}, "set both"},
		{"only key", Config{TLSKeyFile: "key.pem"}, "set both"},
		{"missing cert files", Config{TLSCertFile: "/nonexistent/c.pem", TLSKeyFile: "/nonexistent/k.pem"}, "load TLS certificate"},
		{"negative concurrency", Config{Concurrency: -1}, "concurrency must not be negative"},
		{"negative max users", Config{MaxUsers: -1}, "max users must not be negative"},
		{"negative body limit", Config{MaxBodyBytes: -1}, "max body bytes must not be negative"},
		{"negative timeout", Config{RequestTimeout: -time.Second}, "request timeout must not be negative"},
		{"negative shutdown grace", Config{ShutdownGrace: -time.Second}, "shutdown grace must not be negative"},
		{"bad user domain", Config{UserDomain: "bad domain@"}, "user domain"},
		{"short HMAC secret", Config{HMACSecret: "0123456789abcde"}, "the HMAC secret must be at least 16 bytes, got 15"},
		{"HMAC secret", Config{HMACSecret: "0123456789abcdef"}, ""},
		{"negative roster limit", Config{RosterLimits: rosterhttp.Limits{MaxItems: -1}}, "contacts per roster limit -1 is negative"},
		{"negative roster body limit", Config{MaxRosterBytes: -1}, "max roster bytes must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.UserDomain == "" {
				tt.cfg.UserDomain = testDomain
			}
			_, err := New(tt.cfg, &fakeSyncer{}, nil)
			if tt.msg == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.msg)
		})
	}
	_, err := New(Config{UserDomain: testDomain}, nil, nil)
	require.Error(t, err)
}

func TestAuth(t *testing.T) {
	const token = "s3cret-token"
	var logs bytes.Buffer
	f := &fakeSyncer{}
	srv, err := New(Config{Token: token, UserDomain: testDomain}, f, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	srv.Mount("/metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "roster_metric 1\n")
	}))

	for _, header := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer s3cret-token-longer", "Bearer s3cret",
		"Basic czNjcmV0LXRva2Vu", token, "Token " + token} {
		for _, target := range []struct{ method, path string }{
			{http.MethodPost, "/roster_admin/refresh"},
			{http.MethodGet, "/roster_admin/refresh/john"},
			{http.MethodPost, "/roster_admin/refresh/john"},
			{http.MethodGet, "/roster_admin/refresh"}, // wrong method: auth still comes first
			{http.MethodGet, "/roster_admin/unknown"},
			{http.MethodGet, "/roster_admin"},
		} {
			var hdr []string
			if header != "" {
				hdr = []string{"Authorization", header}
			}
			r := do(t, srv, target.method, target.path, strings.NewReader(`["john"]`), hdr...)
			requireJSON(t, r, http.StatusUnauthorized, `{"status":"error","message":"missing or invalid bearer token"}`)
			assert.Equal(t, "Bearer", r.header.Get("WWW-Authenticate"))
		}
	}
	calls, readyCalls, _, _ := f.snapshot()
	assert.Empty(t, calls)
	assert.Zero(t, readyCalls)

	for _, header := range []string{"Bearer " + token, "bearer " + token, "  Bearer   " + token + " "} {
		r := refresh(t, srv, `["john"]`, "Authorization", header)
		require.Equal(t, http.StatusOK, r.code, r.body)
		r = do(t, srv, http.MethodGet, "/roster_admin/refresh/john", nil, "Authorization", header)
		require.Equal(t, http.StatusOK, r.code, r.body)
	}
	requireError(t, do(t, srv, http.MethodGet, "/roster_admin/unknown", nil, "Authorization", "Bearer "+token),
		http.StatusNotFound, "not found")

	// Operations endpoints need no token.
	requireJSON(t, do(t, srv, http.MethodGet, "/healthz", nil), http.StatusOK, `{"status":"ok"}`)
	requireJSON(t, do(t, srv, http.MethodGet, "/readyz", nil), http.StatusOK, `{"status":"ok"}`)
	r := do(t, srv, http.MethodGet, "/metrics", nil)
	require.Equal(t, http.StatusOK, r.code)
	assert.Equal(t, "roster_metric 1\n", r.body)

	assert.NotContains(t, logs.String(), token)
	assert.NotContains(t, strings.ToLower(logs.String()), "authorization")
}

func TestNotFoundAndMethodNotAllowedAreJSON(t *testing.T) {
	srv := newServer(t, Config{}, &fakeSyncer{})
	requireError(t, do(t, srv, http.MethodGet, "/nope", nil), http.StatusNotFound, "not found")
	requireError(t, do(t, srv, http.MethodGet, "/roster_admin/nope", nil), http.StatusNotFound, "not found")
	r := do(t, srv, http.MethodGet, "/roster_admin/refresh", nil)
	requireJSON(t, r, http.StatusMethodNotAllowed, `{"status":"error","message":"method not allowed"}`)
	assert.Contains(t, r.header.Get("Allow"), http.MethodPost)
	requireError(t, do(t, srv, http.MethodDelete, "/roster_admin/refresh/john", nil), http.StatusMethodNotAllowed, "method not allowed")
	requireError(t, do(t, srv, http.MethodPost, "/healthz", nil), http.StatusMethodNotAllowed, "method not allowed")
}

func TestPanicIsJSON(t *testing.T) {
	var logs bytes.Buffer
	srv, err := New(Config{UserDomain: testDomain}, &fakeSyncer{readyPanic: true}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	requireJSON(t, do(t, srv, http.MethodGet, "/readyz", nil), http.StatusInternalServerError,
		`{"status":"error","message":"internal server error"}`)
	requireJSON(t, refresh(t, srv, `["john"]`), http.StatusInternalServerError,
		`{"status":"error","message":"internal server error"}`)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, logs.String())
	for i, path := range []string{"method=GET path=/readyz", "method=POST path=/roster_admin/refresh"} {
		assert.Contains(t, lines[i], `level=ERROR msg="admin: panic while serving request" `+path+` panic="ready exploded" stack="goroutine `)
		assert.Contains(t, lines[i], "(*fakeSyncer).Ready", "the stack shows where it panicked")
	}
}

func TestHealthzReadyz(t *testing.T) {
	f := &fakeSyncer{}
	srv := newServer(t, Config{}, f)
	requireJSON(t, do(t, srv, http.MethodGet, "/healthz", nil), http.StatusOK, `{"status":"ok"}`)
	requireJSON(t, do(t, srv, http.MethodGet, "/readyz", nil), http.StatusOK, `{"status":"ok"}`)

	f.mu.Lock()
	f.readyErr = errors.New("not connected to the XMPP server")
	f.mu.Unlock()
	requireJSON(t, do(t, srv, http.MethodGet, "/healthz", nil), http.StatusOK, `{"status":"ok"}`)
	requireJSON(t, do(t, srv, http.MethodGet, "/readyz", nil), http.StatusServiceUnavailable,
		`{"status":"error","message":"not connected to the XMPP server"}`)
}

type observation struct {
	method, route string
	code          int
}

type fakeObserver struct {
	mu       sync.Mutex
	requests []observation
}

func (o *fakeObserver) ObserveRequest(method, route string, code int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, observation{method, route, code})
}

func TestObserver(t *testing.T) {
	o := &fakeObserver{}
	f := &fakeSyncer{results: map[string]rostersync.Result{"b": {Err: errors.New("boom")}}}
	srv := newServer(t, Config{Observer: o, Concurrency: 1}, f)

	r := refresh(t, srv, `["a", "b"]`)
	require.Equal(t, http.StatusOK, r.code)
	body := r.json(t)
	assert.EqualValues(t, 1, body["updated"])
	assert.EqualValues(t, 1, body["errors"])
	assert.Equal(t, "boom", body["results"].([]any)[1].(map[string]any)["error"])
	require.Equal(t, http.StatusBadRequest, refresh(t, srv, `{}`).code)
	require.Equal(t, http.StatusBadGateway, do(t, srv, http.MethodGet, "/roster_admin/refresh/b", nil).code)
	require.Equal(t, http.StatusNotFound, do(t, srv, http.MethodGet, "/nope", nil).code)

	f.mu.Lock()
	f.readyPanic = true
	f.mu.Unlock()
	require.Equal(t, http.StatusInternalServerError, do(t, srv, http.MethodGet, "/readyz", nil).code)

	o.mu.Lock()
	defer o.mu.Unlock()
	assert.Equal(t, []observation{
		{http.MethodPost, "/roster_admin/refresh", http.StatusOK},
		{http.MethodPost, "/roster_admin/refresh", http.StatusBadRequest},
		{http.MethodGet, "/roster_admin/refresh/:user", http.StatusBadGateway},
		{http.MethodGet, "", http.StatusNotFound},
		{http.MethodGet, "/readyz", http.StatusInternalServerError},
	}, o.requests)
}

func TestLogging(t *testing.T) {
	var logs bytes.Buffer
	f := &fakeSyncer{results: map[string]rostersync.Result{"b": {Err: errors.New("fetch roster of b: backend answered 500")}}}
	srv, err := New(Config{UserDomain: testDomain}, f, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, refresh(t, srv, `["a", "b", "c"]`).code)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, logs.String())
	assert.Contains(t, lines[0], `level=WARN msg="admin: roster refresh failed" user=b error="fetch roster of b: backend answered 500"`)
	assert.Contains(t, lines[1], `level=INFO msg="admin: roster refresh" users=3 updated=2 errors=1 duration=`)
}

// run runs srv on a loopback listener until ctx ends and returns its
// address and a channel that yields Run's result.
func run(ctx context.Context, t *testing.T, srv *Server) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	return ln.Addr().String(), done
}

// requireReturns fails unless done yields within 5 s, and returns the value.
func requireReturns(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// answer is the outcome of one HTTP request made in the background.
type answer struct {
	code int
	body string
	err  error
}

func post(client *http.Client, url, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			ch <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		ch <- answer{code: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

func TestRunServesUntilContextEnds(t *testing.T) {
	srv := newServer(t, Config{}, &fakeSyncer{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := run(ctx, t, srv)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	a := <-post(client, "http://"+addr+"/roster_admin/refresh/hash%23tag", "")
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.JSONEq(t, `{"status":"ok","message":"roster update complete","user":"hash#tag","added":1,"updated":0,"removed":0}`,
		a.body)

	cancel()
	require.NoError(t, requireReturns(t, done))
	_, err := net.Dial("tcp", addr)
	require.Error(t, err, "the listener is closed")
}

// Once the context ends, a refresh in flight finishes and is answered
// before Run returns nil.
func TestRunFinishesInFlightRefresh(t *testing.T) {
	f := &fakeSyncer{release: make(chan struct{})}
	srv := newServer(t, Config{ShutdownGrace: 5 * time.Second}, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := run(ctx, t, srv)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	answered := post(&http.Client{Transport: tr, Timeout: 5 * time.Second}, "http://"+addr+"/roster_admin/refresh", `["a"]`)
	require.Eventually(t, func() bool {
		_, _, inflight, _ := f.snapshot()
		return inflight == 1
	}, 5*time.Second, time.Millisecond)

	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while a refresh was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.release)
	a := <-answered
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.Contains(t, a.body, `"updated":1`)
	require.NoError(t, requireReturns(t, done))
}

// When the grace period runs out, the refreshes still running are
// cancelled with errShuttingDown as the cause; Run returns once their
// handlers have, with an error saying so.
func TestRunCancelsRefreshesAfterGrace(t *testing.T) {
	f := &fakeSyncer{release: make(chan struct{})} // never released
	srv := newServer(t, Config{Concurrency: 1, ShutdownGrace: 50 * time.Millisecond}, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := run(ctx, t, srv)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	answered := post(&http.Client{Transport: tr, Timeout: 5 * time.Second}, "http://"+addr+"/roster_admin/refresh", `["a","b"]`)
	require.Eventually(t, func() bool {
		_, _, inflight, _ := f.snapshot()
		return inflight == 1
	}, 5*time.Second, time.Millisecond)

	cancel()
	err := requireReturns(t, done)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "admin: shutdown: requests still running after 50ms were cancelled")
	calls, _, inflight, _ := f.snapshot()
	assert.Zero(t, inflight, "Run returns after the handlers")
	assert.Equal(t, []string{"a"}, calls, "b was never started")
	f.mu.Lock()
	assert.Equal(t, []error{errShuttingDown}, f.causes)
	f.mu.Unlock()
	a := <-answered // the answer may or may not make it out before the connection closes
	if a.err == nil {
		assert.Contains(t, a.body, "request cancelled: server shutting down")
	}
}

// A listener that fails stops Run at once with the error.
func TestRunListenerFails(t *testing.T) {
	srv := newServer(t, Config{}, &fakeSyncer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background(), ln) }()
	err = requireReturns(t, done)
	require.ErrorContains(t, err, "admin: serve: ")
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	srv := newServer(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, &fakeSyncer{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := run(ctx, t, srv)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get("https://" + addr + "/healthz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"status":"ok"}`, string(body))

	cancel()
	require.NoError(t, requireReturns(t, done))
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to files.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "roster-sidecar test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)

	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile, pool
}
