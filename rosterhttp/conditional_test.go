package rosterhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// conditionalBackend serves each user a roster with the validators set for
// it and answers 304 to a request whose If-None-Match (or, without one,
// If-Modified-Since) matches, as a backend that implements them does. It
// records the conditional headers of every request.
type conditionalBackend struct {
	mu       sync.Mutex
	etag     map[string]string
	modified map[string]time.Time
	status   map[string]int // a status other than 200 to answer
	requests []string       // "user inm=... ims=..."
}

func newConditionalBackend(t *testing.T) (*conditionalBackend, *httptest.Server) {
	b := &conditionalBackend{etag: map[string]string{}, modified: map[string]time.Time{}, status: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(srv.Close)
	return b, srv
}

func (b *conditionalBackend) serve(w http.ResponseWriter, r *http.Request) {
	user := strings.TrimPrefix(r.URL.Path, "/roster/")
	inm, ims := r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")
	b.mu.Lock()
	b.requests = append(b.requests, fmt.Sprintf("%s inm=%s ims=%s", user, inm, ims))
	etag, modified, status := b.etag[user], b.modified[user], b.status[user]
	b.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	if !modified.IsZero() {
		w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	}
	switch {
	case inm != "" && inm == etag:
		w.WriteHeader(http.StatusNotModified)
		return
	case inm == "" && ims != "" && !modified.IsZero():
		if t, err := http.ParseTime(ims); err == nil && !modified.After(t) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	fmt.Fprint(w, `{"marie@example.test": {"name": "Marie"}}`)
}

func (b *conditionalBackend) set(user, etag string, modified time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.etag[user], b.modified[user] = etag, modified
}

func (b *conditionalBackend) setStatus(user string, status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status[user] = status
}

// last returns the conditional headers of the last request.
func (b *conditionalBackend) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests[len(b.requests)-1]
}

func conditionalClient(t *testing.T, url string, n int) (*Client, *classes) {
	obs := &classes{}
	return newClient(t, Config{URLTemplate: url + "/roster/%s", ConditionalCache: n, Observer: obs}), obs
}

func TestFetchChangedSendsValidatorsAndReads304(t *testing.T) {
	b, srv := newConditionalBackend(t)
	c, obs := conditionalClient(t, srv.URL, 10)
	ctx := context.Background()
	modified := time.Date(2025, 3, 1, 12, 30, 45, 0, time.UTC)
	b.set("john", `"v1"`, modified)

	// Nothing remembered yet: a plain request, the answer's validators
	// remembered.
	r, err := c.FetchChanged(ctx, owner(t, "john"), true)
	if err != nil || r.NotModified || !r.Validated || len(r.Items) != 1 {
		t.Fatalf("first FetchChanged = %+v, %v", r, err)
	}
	if got := b.last(); got != "john inm= ims=" {
		t.Fatalf("first request: %s", got)
	}
	// Unchanged: 304, nothing parsed.
	r, err = c.FetchChanged(ctx, owner(t, "john"), true)
	if err != nil || !r.NotModified || r.Validated || r.Items != nil || r.Skipped != nil {
		t.Fatalf("second FetchChanged = %+v, %v", r, err)
	}
	if got, want := b.last(), `john inm="v1" ims=Sat, 01 Mar 2025 12:30:45 GMT`; got != want {
		t.Fatalf("second request: %s, want %s", got, want)
	}
	// Not asked to be conditional: a plain request; the answer is
	// remembered again.
	r, err = c.FetchChanged(ctx, owner(t, "john"), false)
	if err != nil || r.NotModified || !r.Validated {
		t.Fatalf("FetchChanged(ifChanged false) = %+v, %v", r, err)
	}
	if got := b.last(); got != "john inm= ims=" {
		t.Fatalf("unconditional request: %s", got)
	}
	// Changed: the new roster and validators.
	b.set("john", `W/"v2"`, modified.Add(time.Hour))
	if r, err = c.FetchChanged(ctx, owner(t, "john"), true); err != nil || r.NotModified || len(r.Items) != 1 {
		t.Fatalf("FetchChanged after a change = %+v, %v", r, err)
	}
	if r, err = c.FetchChanged(ctx, owner(t, "john"), true); err != nil || !r.NotModified {
		t.Fatalf("FetchChanged with the new validators = %+v, %v", r, err)
	}
	if got, want := b.last(), `john inm=W/"v2" ims=Sat, 01 Mar 2025 13:30:45 GMT`; got != want {
		t.Fatalf("request with the new validators: %s, want %s", got, want)
	}
	want := []string{"2xx", "3xx", "conditional not_modified", "2xx", "2xx", "conditional modified", "3xx", "conditional not_modified"}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !slices.Equal(obs.got, want) {
		t.Fatalf("observed %q, want %q", obs.got, want)
	}
}

// Last-Modified alone works too (If-Modified-Since).
func TestFetchChangedLastModifiedOnly(t *testing.T) {
	b, srv := newConditionalBackend(t)
	c, _ := conditionalClient(t, srv.URL, 10)
	b.set("john", "", time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	if r, err := c.FetchChanged(context.Background(), owner(t, "john"), true); err != nil || !r.Validated {
		t.Fatalf("first = %+v, %v", r, err)
	}
	r, err := c.FetchChanged(context.Background(), owner(t, "john"), true)
	if err != nil || !r.NotModified {
		t.Fatalf("second = %+v, %v", r, err)
	}
	if got := b.last(); got != "john inm= ims=Sat, 01 Mar 2025 12:00:00 GMT" {
		t.Fatalf("request: %s", got)
	}
}

// A backend that sends no validators is fetched exactly as by Fetch, and
// Fetch neither sends nor remembers validators.
func TestFetchChangedWithoutValidators(t *testing.T) {
	b, srv := newConditionalBackend(t)
	c, obs := conditionalClient(t, srv.URL, 10)
	for range 3 {
		r, err := c.FetchChanged(context.Background(), owner(t, "john"), true)
		if err != nil || r.NotModified || r.Validated || len(r.Items) != 1 {
			t.Fatalf("FetchChanged = %+v, %v", r, err)
		}
		if got := b.last(); got != "john inm= ims=" {
			t.Fatalf("request: %s", got)
		}
	}
	b.set("john", `"v1"`, time.Time{})
	if r, err := c.Fetch(context.Background(), owner(t, "john")); err != nil || r.Validated {
		t.Fatalf("Fetch = %+v, %v", r, err)
	}
	if _, err := c.FetchChanged(context.Background(), owner(t, "john"), true); err != nil || b.last() != "john inm= ims=" {
		t.Fatalf("FetchChanged after Fetch: %v, request %s: Fetch remembered validators", err, b.last())
	}
	if _, err := c.Fetch(context.Background(), owner(t, "john")); err != nil || b.last() != "john inm= ims=" {
		t.Fatalf("Fetch sent validators: %v, request %s", err, b.last())
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if slices.ContainsFunc(obs.got, func(s string) bool { return strings.HasPrefix(s, "conditional") }) {
		t.Fatalf("observed conditional fetches: %q", obs.got)
	}
}

// A failed fetch, or an answer without validators, forgets the user's
// validators; a 304 to a request that sent none is an error.
func TestFetchChangedForgets(t *testing.T) {
	b, srv := newConditionalBackend(t)
	c, _ := conditionalClient(t, srv.URL, 10)
	ctx := context.Background()
	b.set("john", `"v1"`, time.Time{})
	if _, err := c.FetchChanged(ctx, owner(t, "john"), true); err != nil {
		t.Fatal(err)
	}
	b.setStatus("john", http.StatusInternalServerError)
	if _, err := c.FetchChanged(ctx, owner(t, "john"), true); err == nil {
		t.Fatal("a 500 succeeded")
	}
	b.setStatus("john", 0)
	if r, err := c.FetchChanged(ctx, owner(t, "john"), true); err != nil || r.NotModified || b.last() != "john inm= ims=" {
		t.Fatalf("after a failure: %+v, %v, request %s", r, err, b.last())
	}
	// An answer without validators forgets the earlier ones.
	b.set("john", "", time.Time{})
	if r, err := c.FetchChanged(ctx, owner(t, "john"), false); err != nil || r.Validated {
		t.Fatalf("answer without validators: %+v, %v", r, err)
	}
	b.set("john", `"v1"`, time.Time{})
	if r, err := c.FetchChanged(ctx, owner(t, "john"), true); err != nil || r.NotModified || b.last() != "john inm= ims=" {
		t.Fatalf("validators kept after an answer without: %+v, %v, request %s", r, err, b.last())
	}
	// A 304 nobody asked for fails, as any answer but 200.
	b.setStatus("mary", http.StatusNotModified)
	var se *StatusError
	if _, err := c.FetchChanged(ctx, owner(t, "mary"), true); !errors.As(err, &se) || se.Code != http.StatusNotModified {
		t.Fatalf("unasked 304: %v", err)
	}
	if _, err := c.Fetch(ctx, owner(t, "mary")); !errors.As(err, &se) || se.Code != http.StatusNotModified {
		t.Fatalf("unasked 304 to Fetch: %v", err)
	}
}

// At most ConditionalCache users are remembered, the least recently
// fetched forgotten first; with none, FetchChanged is Fetch.
func TestFetchChangedCacheBound(t *testing.T) {
	b, srv := newConditionalBackend(t)
	ctx := context.Background()
	for _, u := range []string{"u1", "u2", "u3"} {
		b.set(u, `"`+u+`"`, time.Time{})
	}
	c, _ := conditionalClient(t, srv.URL, 2)
	for _, u := range []string{"u1", "u2", "u3"} {
		if _, err := c.FetchChanged(ctx, owner(t, u), true); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.validators.Len(); n != 2 {
		t.Fatalf("%d users remembered, want 2", n)
	}
	for _, u := range []string{"u2", "u3", "u1"} {
		want := u != "u1"
		r, err := c.FetchChanged(ctx, owner(t, u), true)
		if err != nil || r.NotModified != want {
			t.Errorf("%s: NotModified %v, %v; want %v", u, r.NotModified, err, want)
		}
	}

	off, _ := conditionalClient(t, srv.URL, 0)
	for range 2 {
		r, err := off.FetchChanged(ctx, owner(t, "u1"), true)
		if err != nil || r.NotModified || r.Validated || b.last() != "u1 inm= ims=" {
			t.Fatalf("without a cache: %+v, %v, request %s", r, err, b.last())
		}
	}
}

func TestValidatorsOf(t *testing.T) {
	long := `"` + strings.Repeat("a", MaxETagBytes-2) + `"`
	tests := []struct {
		etag, modified string
		want           validators
	}{
		{`"abc"`, "", validators{etag: `"abc"`}},
		{`W/"abc"`, "", validators{etag: `W/"abc"`}},
		{`""`, "", validators{etag: `""`}},
		{long, "", validators{etag: long}},
		{long[:len(long)-1] + `a"`, "", validators{}}, // one byte too long
		{`abc`, "", validators{}},                     // unquoted
		{`"a"b"`, "", validators{}},
		{`"a b"`, "", validators{}},
		{`w/"abc"`, "", validators{}},
		{`"` + "\x7f" + `"`, "", validators{}},
		{`"é"`, "", validators{etag: `"é"`}}, // obs-text
		{"", "Sat, 01 Mar 2025 12:00:00 GMT", validators{modified: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Unix()}},
		{"", "Saturday, 01-Mar-25 12:00:00 GMT", validators{modified: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Unix()}},
		{"", "yesterday", validators{}},
		{"", "Thu, 01 Jan 1970 00:00:00 GMT", validators{}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.etag != "" {
			h.Set("ETag", tt.etag)
		}
		if tt.modified != "" {
			h.Set("Last-Modified", tt.modified)
		}
		if got := validatorsOf(h); got != tt.want {
			t.Errorf("validatorsOf(ETag %q, Last-Modified %q) = %+v, want %+v", tt.etag, tt.modified, got, tt.want)
		}
	}
}

// TestConditionalCacheMemory measures what a remembered user costs, so
// that the bound documented in validatorsBytes (and the configuration
// reference) stays true: a full cache of 20,000 users with 64-byte ETags
// and Last-Modified dates.
func TestConditionalCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a full cache")
	}
	const n = 20_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cache := newValidatorCache(n)
	for i := range n + n/2 { // evictions must not leak
		h := http.Header{}
		h.Set("ETag", fmt.Sprintf(`"%062x"`, i))
		h.Set("Last-Modified", "Sat, 01 Mar 2025 12:00:00 GMT")
		cache.Put(keyOf(fmt.Sprintf("user-%d", i), "example.test"), validatorsOf(h))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per remembered user (documented: about %d)", per, validatorsBytes)
	if per > validatorsBytes*1.25 {
		t.Errorf("%.0f bytes per remembered user, more than the documented %d", per, validatorsBytes)
	}
	runtime.KeepAlive(cache)
}
