package rosterhttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

type classes struct {
	mu  sync.Mutex
	got []string
}

func (c *classes) ConditionalFetch(outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, "conditional "+outcome)
}

func (c *classes) FetchDone(class string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		class += " (no duration)"
	}
	c.got = append(c.got, class)
}

// TestObserverSeesEveryFetch checks the status class reported for an
// answer, an error status, a body over the limit and a dead backend.
func TestObserverSeesEveryFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/roster/gone":
			http.NotFound(w, r)
		case "/roster/big":
			_, _ = w.Write([]byte(`{"a@example.test": {"name": "a very long name"}}`))
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	obs := &classes{}
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", MaxBodyBytes: 20, Observer: obs})
	for _, user := range []string{"john", "gone", "big"} {
		_, _ = c.Fetch(context.Background(), owner(t, user))
	}
	srv.Close()
	if _, err := c.Fetch(context.Background(), owner(t, "john")); err == nil {
		t.Fatal("fetch from a closed backend succeeded")
	}
	want := []string{"2xx", "4xx", "error", "error"}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !slices.Equal(obs.got, want) {
		t.Errorf("classes %v, want %v", obs.got, want)
	}
}
