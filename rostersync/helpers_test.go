package rostersync

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component"
	"roster-sidecar/component/componenttest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// testConfig is a component configuration for the fake server at addr.
func testConfig(addr string) component.Config {
	return component.Config{
		Address: addr, Domain: "roster.example.test", Secret: "s3cret",
		ConnectTimeout: time.Second, IQTimeout: 500 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
}

// startConn runs a component.Conn against the fake server until the test
// ends.
func startConn(t *testing.T, cfg component.Config) *component.Conn {
	t.Helper()
	c := component.NewConn(cfg, discard)
	run(t, c.Run)
	return c
}

// run runs a Run(ctx) method until the test ends.
func run(t *testing.T, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_ = fn(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func waitReady(t *testing.T, c *component.Conn) {
	t.Helper()
	componenttest.WaitFor(t, "ready", func() bool { return c.Ready("example.test") == nil })
}

// loginCounts counts what a LoginRefresher reports, as metrics do.
type loginCounts struct {
	mu       sync.Mutex
	outcomes map[string]int64
	online   int
}

// LoginStats counts what became of logins.
type LoginStats struct {
	Queued, Recent, Dropped, OK, Error int64
}

func (c *loginCounts) LoginRefresh(outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outcomes == nil {
		c.outcomes = map[string]int64{}
	}
	c.outcomes[outcome]++
}

func (c *loginCounts) OnlineUsers(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.online = n
}

func (c *loginCounts) Stats() LoginStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.outcomes
	return LoginStats{Queued: o[LoginQueued], Recent: o[LoginRecent], Dropped: o[LoginDropped], OK: o[LoginOK], Error: o[LoginError]}
}

func (c *loginCounts) Online() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.online
}
