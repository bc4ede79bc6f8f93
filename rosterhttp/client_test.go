package rosterhttp

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

const secret = "s3cret-t0ken"

// newClient returns a Client for cfg or fails the test.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// owner returns the JID of localpart on example.test.
func owner(t *testing.T, localpart string) jid.JID {
	t.Helper()
	j, err := jid.New(localpart, "example.test", "")
	if err != nil {
		t.Fatalf("jid.New(%q): %v", localpart, err)
	}
	return j
}

// checkNoSecret fails the test if err shows the secret.
func checkNoSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error text leaks the secret: %v", err)
	}
}

func TestFetchEscaping(t *testing.T) {
	tests := []struct{ name, path string }{
		{"john", "/roster/john"},
		{"hash#tag", "/roster/hash%23tag"},
		{"q?mark", "/roster/q%3Fmark"},
		{"josé", "/roster/jos%C3%A9"},
		{"...", "/roster/..."},
		{"a%2Fb", "/roster/a%252fb"},
		{"100%", "/roster/100%25"},
		{"a;b,c", "/roster/a%3Bb%2Cc"},
		{"a+b=c$", "/roster/a+b=c$"},
		{"~_-!*()[]{}|\\^`", "/roster/~_-%21%2A%28%29%5B%5D%7B%7D%7C%5C%5E%60"},
	}
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.RequestURI
		mu.Unlock()
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	for _, tt := range tests {
		name, err := ParseUsername(tt.name, "example.test")
		if err != nil {
			t.Errorf("ParseUsername(%q): %v", tt.name, err)
			continue
		}
		if _, err := c.Fetch(context.Background(), owner(t, name)); err != nil {
			t.Errorf("Fetch(%q): %v", tt.name, err)
			continue
		}
		mu.Lock()
		path := got
		mu.Unlock()
		if path != tt.path {
			t.Errorf("Fetch(%q) requested %q, want %q", tt.name, path, tt.path)
		}
		segment, ok := strings.CutPrefix(path, "/roster/")
		if !ok || strings.ContainsAny(segment, "/?#") {
			t.Errorf("Fetch(%q) requested %q: the name is not exactly one path segment", tt.name, path)
		}
	}
}

func TestFetchTemplateOtherPercent(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.RequestURI
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/a%20b/%s/x?rate=100%25&u=%s"})
	if _, err := c.Fetch(context.Background(), owner(t, "hash#tag")); err != nil {
		t.Fatal(err)
	}
	if want := "/a%20b/hash%23tag/x?rate=100%25&u=%s"; got != want {
		t.Errorf("requested %q, want %q", got, want)
	}
}

func TestFetchHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		fmt.Fprint(w, `{"marie@example.com": {"name": "Marie", "groups": ["Friends"]}}`)
	}))
	defer srv.Close()
	c := newClient(t, Config{
		URLTemplate: srv.URL + "/roster/%s",
		Headers:     map[string]string{"authorization": "Bearer " + secret, "X-Api-Key": "k"},
	})
	r, err := c.Fetch(context.Background(), owner(t, "john"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 1 || r.Items[0].JID != "marie@example.com" || r.Items[0].Name != "Marie" {
		t.Errorf("roster = %#v", r)
	}
	if v := got.Get("Accept"); v != "application/json" {
		t.Errorf("Accept = %q", v)
	}
	if v := got.Get("Authorization"); v != "Bearer "+secret {
		t.Errorf("Authorization = %q", v)
	}
	if v := got.Get("X-Api-Key"); v != "k" {
		t.Errorf("X-Api-Key = %q", v)
	}
}

func TestFetchStatus(t *testing.T) {
	for _, code := range []int{500, 404, 204, 201, 302, 401, 599} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprint(w, `{}`)
		}))
		c := newClient(t, Config{
			URLTemplate: srv.URL + "/roster/%s?key=" + secret,
			Headers:     map[string]string{"Authorization": "Bearer " + secret},
		})
		_, err := c.Fetch(context.Background(), owner(t, "john"))
		want := strings.TrimSpace(fmt.Sprintf("fetch roster of john@example.test: backend answered %d %s", code, http.StatusText(code)))
		if err == nil || err.Error() != want {
			t.Errorf("status %d: err = %v; want %q", code, err, want)
		}
		checkNoSecret(t, err)
		srv.Close()
	}
}

func TestFetchReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/roster/bad" {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, strings.Repeat("x", 10000))
			return
		}
		fmt.Fprint(w, `{"a@x": {}}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	for i := range 6 {
		name := "good"
		if i%2 == 0 {
			name = "bad"
		}
		_, err := c.Fetch(context.Background(), owner(t, name))
		if (err != nil) != (name == "bad") {
			t.Fatalf("fetch %d of %s: %v", i, name, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential fetches; want 1", n)
	}
}

func TestFetchTimeout(t *testing.T) {
	tests := map[string]http.HandlerFunc{
		"slow headers": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		},
		"slow body": func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"a@x": {}, `)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			fmt.Fprint(w, `"b@x": {}}`)
		},
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", Timeout: 100 * time.Millisecond})
			start := time.Now()
			_, err := c.Fetch(context.Background(), owner(t, "john"))
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Fetch took %s", took)
			}
			if err == nil || !strings.Contains(err.Error(), "no complete answer within 100ms") {
				t.Errorf("err = %v; want a timeout", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v; want it to wrap context.DeadlineExceeded", err)
			}
		})
	}
}

func TestFetchCanceled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Fetch(ctx, owner(t, "john"))
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "no complete answer within") {
		t.Errorf("err = %v; want the caller's deadline, not the fetch timeout", err)
	}
}

func TestFetchBodyLimit(t *testing.T) {
	const limit = 100
	for _, tt := range []struct {
		size int
		ok   bool
	}{{limit - 1, true}, {limit, true}, {limit + 1, false}, {10 * limit, false}} {
		body := "{}" + strings.Repeat(" ", tt.size-2)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, body)
		}))
		c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", MaxBodyBytes: limit})
		_, err := c.Fetch(context.Background(), owner(t, "john"))
		if tt.ok && err != nil {
			t.Errorf("body of %d bytes: %v", tt.size, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "backend answer is larger than 100 bytes")) {
			t.Errorf("body of %d bytes: err = %v; want it too large", tt.size, err)
		}
		srv.Close()
	}
}

func TestFetchDefaultBodyLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "{}"+strings.Repeat(" ", DefaultMaxBodyBytes))
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	_, err := c.Fetch(context.Background(), owner(t, "john"))
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("err = %v", err)
	}
}

func TestFetchInvalidJSON(t *testing.T) {
	for body, want := range map[string]string{
		`{"a@x": `:          "backend answer is not valid JSON",
		`<html></html>`:     "backend answer is not valid JSON",
		`[]`:                "backend answer is a JSON array, not an object",
		``:                  "backend answer is empty, not a JSON object",
		`{"a@x": "Friend"}`: "", // a bad contact is skipped, not an error
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, body)
		}))
		c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
		r, err := c.Fetch(context.Background(), owner(t, "john"))
		switch {
		case want == "" && (err != nil || len(r.Skipped) != 1):
			t.Errorf("body %q: %#v, %v", body, r, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), "fetch roster of john@example.test: "+want)):
			t.Errorf("body %q: err = %v; want %q", body, err, want)
		}
		srv.Close()
	}
}

// redirector answers /hop/N with a redirect to /hop/N-1 and /hop/0 with a
// roster; /loop redirects to itself.
func redirector(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		switch {
		case r.URL.Path == "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case r.URL.Path == "/hop/0":
			fmt.Fprint(w, `{"a@x": {}}`)
		default:
			if _, err := fmt.Sscanf(r.URL.Path, "/hop/%d", &n); err != nil {
				http.NotFound(w, r)
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusTemporaryRedirect)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchRedirects(t *testing.T) {
	srv := redirector(t)
	tests := []struct {
		max, hops int
		err       string
	}{
		{0, 0, ""},
		{0, 1, "backend answered a redirect, and no redirect may be followed"},
		{1, 1, ""},
		{1, 2, "more than 1 redirects"},
		{DefaultMaxRedirects, 3, ""},
		{DefaultMaxRedirects, 4, "more than 3 redirects"},
		{5, 5, ""},
	}
	for _, tt := range tests {
		// The localpart is the number of hops.
		c := newClient(t, Config{URLTemplate: srv.URL + "/hop/%s", MaxRedirects: tt.max})
		r, err := c.Fetch(context.Background(), owner(t, fmt.Sprint(tt.hops)))
		if tt.err == "" && (err != nil || len(r.Items) != 1) {
			t.Errorf("max %d, %d hops: %#v, %v", tt.max, tt.hops, r, err)
		}
		if tt.err != "" && (!errors.Is(err, ErrTooManyRedirects) || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("max %d, %d hops: err = %v; want %q", tt.max, tt.hops, err, tt.err)
		}
	}
}

func TestFetchRedirectLoop(t *testing.T) {
	srv := redirector(t)
	c := newClient(t, Config{URLTemplate: srv.URL + "/loop?u=%s&key=" + secret, MaxRedirects: DefaultMaxRedirects})
	_, err := c.Fetch(context.Background(), owner(t, "john"))
	if err == nil || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Errorf("err = %v", err)
	}
	checkNoSecret(t, err)
}

func TestFetchRedirectToOtherHostDropsHeaders(t *testing.T) {
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		fmt.Fprint(w, `{}`)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	c := newClient(t, Config{
		URLTemplate:  srv.URL + "/roster/%s",
		Headers:      map[string]string{"X-Api-Key": secret, "Authorization": "Bearer " + secret},
		MaxRedirects: 1,
	})
	if _, err := c.Fetch(context.Background(), owner(t, "john")); err != nil {
		t.Fatal(err)
	}
	if got.Get("X-Api-Key") != "" || got.Get("Authorization") != "" {
		t.Errorf("credentials sent to another host: %v", got)
	}
	if got.Get("Accept") != "application/json" {
		t.Errorf("Accept = %q", got.Get("Accept"))
	}
}

// writeCA writes the certificate of a TLS test server to a PEM file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestFetchTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"a@x": {}}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()

	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", CAFile: writeCA(t, srv)})
	r, err := c.Fetch(context.Background(), owner(t, "john"))
	if err != nil || len(r.Items) != 1 {
		t.Errorf("with CA: %#v, %v", r, err)
	}

	c = newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	_, err = c.Fetch(context.Background(), owner(t, "john"))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without CA: err = %v; want a certificate error", err)
	}
}

func TestFetchRefusesHTTPSToHTTP(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{}`)
	}))
	defer plain.Close()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/roster", http.StatusFound)
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", CAFile: writeCA(t, srv), MaxRedirects: DefaultMaxRedirects})
	_, err := c.Fetch(context.Background(), owner(t, "john"))
	if err == nil || !strings.Contains(err.Error(), "refused a redirect from https to http") {
		t.Errorf("err = %v", err)
	}
}

func TestFetchConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := newClient(t, Config{URLTemplate: url + "/roster/%s?key=" + secret})
	_, err := c.Fetch(context.Background(), owner(t, "john"))
	if err == nil || !strings.HasPrefix(err.Error(), "fetch roster of john@example.test: request: ") {
		t.Errorf("err = %v", err)
	}
	checkNoSecret(t, err)
}

func TestFetchOwnerWithoutLocalpart(t *testing.T) {
	c := newClient(t, Config{URLTemplate: "http://backend.invalid/roster/%s"})
	_, err := c.Fetch(context.Background(), jid.MustParse("example.test"))
	if err == nil || !strings.Contains(err.Error(), "has no localpart") {
		t.Errorf("err = %v", err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		err  string // "" means valid
	}{
		{"plain", Config{URLTemplate: "http://backend/roster/%s"}, ""},
		{"https and query", Config{URLTemplate: "https://backend:8443/roster?user=%s"}, ""},
		{"other percents", Config{URLTemplate: "http://backend/a%20b/%s?x=100%25"}, ""},
		{"user info", Config{URLTemplate: "http://u:p@backend/%s"}, ""},
		{"all set", Config{URLTemplate: "http://backend/%s", Headers: map[string]string{"Authorization": "Bearer x"}, Timeout: time.Second, MaxBodyBytes: 10, MaxRedirects: 2}, ""},
		{"negative redirect limit", Config{URLTemplate: "http://backend/%s", MaxRedirects: -1}, "roster redirect limit -1 is negative"},
		{"no placeholder", Config{URLTemplate: "http://backend/roster"}, `has no "%s"`},
		{"empty", Config{}, `has no "%s"`},
		{"relative", Config{URLTemplate: "/roster/%s"}, "absolute http or https URL"},
		{"no host", Config{URLTemplate: "http:///roster/%s"}, "absolute http or https URL"},
		{"ftp", Config{URLTemplate: "ftp://backend/%s"}, "absolute http or https URL"},
		{"placeholder in host", Config{URLTemplate: "http://%s.backend/roster"}, "in the path or query"},
		{"placeholder in user info", Config{URLTemplate: "http://%s@backend/roster"}, "in the path or query"},
		{"placeholder in fragment", Config{URLTemplate: "http://backend/roster#%s"}, "in the path or query"},
		{"bad escape", Config{URLTemplate: "http://backend/%zz/%s?key=" + secret}, `does not make a valid URL: it has a "%" that is not followed by two hexadecimal digits`},
		{"bad port", Config{URLTemplate: "http://backend:" + secret + "/%s"}, "does not make a valid URL: its port is not a number"},
		{"bad host", Config{URLTemplate: "http://" + secret + "{/%s"}, "does not make a valid URL: its host is not valid"},
		{"bad IPv6 host", Config{URLTemplate: "http://[::1" + secret + "/%s"}, "does not make a valid URL: its host is not valid"},
		{"second placeholder", Config{URLTemplate: "http://backend/%s/%s"}, "does not make a valid URL"},
		{"control char", Config{URLTemplate: "http://backend/\n/%s"}, "does not make a valid URL"},
		{"negative timeout", Config{URLTemplate: "http://backend/%s", Timeout: -1}, "timeout -1ns is negative"},
		{"negative limit", Config{URLTemplate: "http://backend/%s", MaxBodyBytes: -1}, "limit -1 is negative"},
		{"bad header name", Config{URLTemplate: "http://backend/%s", Headers: map[string]string{"X Key": "v"}}, `header name "X Key" is not valid`},
		{"empty header name", Config{URLTemplate: "http://backend/%s", Headers: map[string]string{"": "v"}}, `header name "" is not valid`},
		{"bad header value", Config{URLTemplate: "http://backend/%s", Headers: map[string]string{"authorization": secret + "\r\nX: y"}}, "header Authorization has a value with a line break"},
		{"header twice", Config{URLTemplate: "http://backend/%s", Headers: map[string]string{"x-key": "a", "X-Key": "b"}}, "header X-Key is given twice"},
		{"host header", Config{URLTemplate: "http://backend/%s", Headers: map[string]string{"host": "h"}}, "Host cannot be set"},
		{"negative name limit", Config{URLTemplate: "http://backend/%s", MaxNameBytes: -1}, "roster name length limit -1 is negative"},
		{"negative contacts limit", Config{URLTemplate: "http://backend/%s", MaxItems: -2}, "roster contacts per roster limit -2 is negative"},
		{"missing CA file", Config{URLTemplate: "http://backend/%s", CAFile: filepath.Join(dir, "missing.pem")}, "read roster CA file"},
		{"CA file without PEM", Config{URLTemplate: "http://backend/%s", CAFile: notPEM}, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		c, err := New(tt.cfg)
		if tt.err == "" {
			if err != nil || c == nil {
				t.Errorf("%s: New = %v, %v", tt.name, c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v; want %q", tt.name, err, tt.err)
		}
		checkNoSecret(t, err)
	}
}

func TestNewDefaults(t *testing.T) {
	// Zero redirects is no default: it follows none.
	c := newClient(t, Config{URLTemplate: "http://backend/%s"})
	if c.timeout != DefaultTimeout || c.maxBody != DefaultMaxBodyBytes || c.maxRedirects != 0 {
		t.Errorf("timeout %s, body limit %d, redirects %d", c.timeout, c.maxBody, c.maxRedirects)
	}
}

func TestFetchLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"a@x": {"name": "Anna"}, "b@x": {"name": "Bob"}, "c@x": {"groups": ["G1", "G2"]}}`)
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", MaxNameBytes: 3, MaxGroups: 1})
	r, err := c.Fetch(context.Background(), owner(t, "john"))
	if err != nil || len(r.Items) != 1 || r.Items[0].JID != "b@x" || len(r.Skipped) != 2 {
		t.Fatalf("Fetch = %+v, %v", r, err)
	}
	c = newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", MaxItems: 2})
	r, err = c.Fetch(context.Background(), owner(t, "john"))
	var tooMany *TooManyContactsError
	if !errors.As(err, &tooMany) || r.Items != nil {
		t.Fatalf("Fetch over MaxItems = %+v, %v", r, err)
	}
}

func TestFetchConcurrent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"friend-of-%s@x": {}}`, strings.TrimPrefix(r.URL.Path, "/roster/"))
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	var wg sync.WaitGroup
	for i := range 20 {
		name := fmt.Sprint("u", i)
		user := owner(t, name)
		wg.Go(func() {
			r, err := c.Fetch(context.Background(), user)
			if err != nil || len(r.Items) != 1 || r.Items[0].JID != "friend-of-"+name+"@x" {
				t.Errorf("%s: %#v, %v", name, r, err)
			}
		})
	}
	wg.Wait()
}

// Every fetch checks the username, whatever asked for the sync: a login
// of an account named ".." must not make the sidecar fetch <url>/.., which
// a path-cleaning backend would resolve to another document.
func TestFetchRefusesDotSegmentsWithoutARequest(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fmt.Fprint(w, `{"x@example.test": {}}`)
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s"})
	for _, local := range []string{".", ".."} {
		if r, err := c.Fetch(context.Background(), owner(t, local)); err == nil {
			t.Errorf("Fetch(%q) = %+v, want an error", local, r)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d backend requests for dot-segment usernames", n)
	}
}
