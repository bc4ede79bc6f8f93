package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func testConfig(addr string) Config {
	return Config{
		Address: addr, Domain: "roster.example.test", Secret: "s3cret",
		ConnectTimeout: time.Second, IQTimeout: 500 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
}

// pingingConfig is testConfig with a ping every 50 ms that must be
// answered within 200 ms: dead links are noticed quickly.
func pingingConfig(addr string) Config {
	cfg := testConfig(addr)
	cfg.PingInterval = 50 * time.Millisecond
	cfg.IQTimeout = 200 * time.Millisecond
	return cfg
}

// startConn runs a Conn against the fake server until the test ends.
func startConn(t *testing.T, cfg Config) (*Conn, <-chan error) {
	t.Helper()
	c := NewConn(cfg, discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return c, done
}

func waitReady(t *testing.T, c *Conn) {
	t.Helper()
	componenttest.WaitFor(t, "ready", func() bool { return c.Ready("example.test") == nil })
}

func TestConnectsAndIsReadyWithRosterPrivilege(t *testing.T) {
	for _, ns := range []string{nsPrivilege1, nsPrivilege2} {
		t.Run(ns, func(t *testing.T) {
			srv := componenttest.NewServer(t)
			srv.SetPrivilege(strings.Replace(componenttest.PrivilegeBoth, nsPrivilege2, ns, 1))
			c, _ := startConn(t, testConfig(srv.Addr()))
			waitReady(t, c)
			g, ok := c.Privileges()["example.test"]
			if !ok || g.Roster != "both" || g.Message != "outgoing" || g.Presence != "managed_entity" {
				t.Fatalf("grants = %+v, %v", g, ok)
			}
			if err := c.Ready("other.test"); err == nil || !strings.Contains(err.Error(), "no privilege for other.test") {
				t.Fatalf("Ready(other.test) = %v, want no-privilege error", err)
			}
		})
	}
}

func TestNotReadyWithoutRosterSet(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetPrivilege(`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm type='get' access='roster'/></privilege></message>`)
	c, _ := startConn(t, testConfig(srv.Addr()))
	componenttest.WaitFor(t, "grants", func() bool { _, ok := c.Privileges()["example.test"]; return ok })
	err := c.Ready("example.test")
	if err == nil || !strings.Contains(err.Error(), "roster=get") {
		t.Fatalf("Ready = %v, want an error naming roster=get", err)
	}
}

func TestNotReadyWithoutPrivilegeMessage(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetPrivilege("")
	c, _ := startConn(t, testConfig(srv.Addr()))
	componenttest.WaitFor(t, "connection", func() bool { return c.session() != nil })
	if err := c.Ready("example.test"); err == nil || !strings.Contains(err.Error(), "mod_privilege") {
		t.Fatalf("Ready = %v, want a hint about mod_privilege", err)
	}
}

func TestWrongSecretIsFatal(t *testing.T) {
	srv := componenttest.NewServer(t)
	cfg := testConfig(srv.Addr())
	cfg.Secret = "wrong"
	_, done := startConn(t, cfg)
	select {
	case err := <-done:
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("Run = %v, want ErrAuth", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept retrying a wrong secret")
	}
	if accepted := srv.Counts().Accepted; accepted != 1 {
		t.Fatalf("connections = %d, want exactly 1", accepted)
	}
}

func TestIQWithoutReplyTimesOut(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	srv.SetReply(func(componenttest.IQ) (string, time.Duration) { return "", 0 })
	start := time.Now()
	_, err := c.Roster(context.Background(), "alice@example.test")
	if !errors.Is(err, ErrIQTimeout) {
		t.Fatalf("Roster = %v, want ErrIQTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	if n := pendingIQs(c); n != 0 {
		t.Fatalf("%d waiters left after timeout", n)
	}
}

func TestLateReplyIsDroppedAndLinkStaysUsable(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		return fmt.Sprintf(`<iq type='result' id='%s' from='%s' to='%s'/>`, iq.ID, iq.To, iq.From), 800 * time.Millisecond
	})
	if _, err := c.Roster(context.Background(), "alice@example.test"); !errors.Is(err, ErrIQTimeout) {
		t.Fatalf("first Roster = %v, want timeout", err)
	}
	srv.SetReply(nil)
	time.Sleep(500 * time.Millisecond) // the late reply arrives meanwhile
	if _, err := c.Roster(context.Background(), "alice@example.test"); err != nil {
		t.Fatalf("Roster after a late reply: %v", err)
	}
}

func TestStanzaErrorIsReported(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		return fmt.Sprintf(`<iq type='error' id='%s' from='%s' to='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, iq.ID, iq.To, iq.From), 0
	})
	err := c.Put(context.Background(), "ghost@example.test", roster.Item{JID: "a@example.test"})
	var se *StanzaError
	if !errors.As(err, &se) || se.Condition != "service-unavailable" || se.Type != "cancel" {
		t.Fatalf("Put = %v, want cancel/service-unavailable", err)
	}
}

func TestDisconnectFailsPendingIQsAndReconnects(t *testing.T) {
	srv := componenttest.NewServer(t)
	cfg := testConfig(srv.Addr())
	cfg.IQTimeout = 10 * time.Second
	c, _ := startConn(t, cfg)
	waitReady(t, c)
	srv.SetReply(func(componenttest.IQ) (string, time.Duration) { return "", 0 })
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := c.Roster(context.Background(), "alice@example.test")
			errs <- err
		}()
	}
	componenttest.WaitFor(t, "5 pending IQs", func() bool { return pendingIQs(c) == 5 })
	start := time.Now()
	srv.DropAll()
	for range 5 {
		if err := <-errs; !errors.Is(err, ErrDisconnected) {
			t.Fatalf("pending IQ = %v, want ErrDisconnected", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("pending IQs failed after %s", d)
	}
	if err := c.Ready("example.test"); err == nil {
		t.Fatal("still ready after disconnect")
	}
	srv.SetReply(nil)
	waitReady(t, c)
	if _, err := c.Roster(context.Background(), "alice@example.test"); err != nil {
		t.Fatalf("Roster after reconnect: %v", err)
	}
	if accepted := srv.Counts().Accepted; accepted != 2 {
		t.Fatalf("connections = %d, want 2", accepted)
	}
}

func TestPingDetectsDeadLink(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, pingingConfig(srv.Addr()))
	waitReady(t, c)
	srv.SetReply(func(componenttest.IQ) (string, time.Duration) { return "", 0 }) // alive TCP, deaf server
	componenttest.WaitFor(t, "not ready", func() bool { return c.Ready("example.test") != nil })
	srv.SetReply(nil)
	waitReady(t, c)
	if accepted := srv.Counts().Accepted; accepted < 2 {
		t.Fatalf("connections = %d, want a reconnect", accepted)
	}
}

func TestSendWhileDisconnected(t *testing.T) {
	c := NewConn(testConfig("127.0.0.1:1"), discard)
	if _, err := c.Roster(context.Background(), "a@example.test"); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Roster = %v, want ErrDisconnected", err)
	}
	if err := c.Ready("example.test"); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Ready = %v, want ErrDisconnected", err)
	}
}

func TestConflictAtHandshakeIsRetried(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.RefuseHandshakes("conflict")
	c, done := startConn(t, testConfig(srv.Addr()))
	componenttest.WaitFor(t, "several attempts", func() bool { return srv.Counts().Accepted >= 3 })
	select {
	case err := <-done:
		t.Fatalf("Run gave up on <conflict/>: %v", err)
	default:
	}
	srv.RefuseHandshakes("")
	waitReady(t, c)
}

func TestServerStreamErrorReconnects(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	srv.SendToAll(`<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
	componenttest.WaitFor(t, "not ready", func() bool { return c.Ready("example.test") != nil })
	waitReady(t, c)
	if n := srv.Counts().Accepted; n != 2 {
		t.Fatalf("connections = %d, want 2", n)
	}
}

// A bare </stream:stream> from the server leaves the library's receive
// goroutine blocked without any callback; the ping notices the silence.
func TestServerStreamCloseIsNoticedByPing(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, pingingConfig(srv.Addr()))
	waitReady(t, c)
	srv.SetReply(func(componenttest.IQ) (string, time.Duration) { return "", 0 })
	srv.SendToAll(`</stream:stream>`)
	componenttest.WaitFor(t, "not ready", func() bool { return c.Ready("example.test") != nil })
	srv.SetReply(nil)
	waitReady(t, c)
	if n := srv.Counts().Accepted; n != 2 {
		t.Fatalf("connections = %d, want 2", n)
	}
}

// pendingIQs reports how many IQs await a reply.
func pendingIQs(c *Conn) int {
	c.iqs.mu.Lock()
	defer c.iqs.mu.Unlock()
	return len(c.iqs.waiters)
}

// A request whose context has ended is not sent: nobody would wait for
// its answer, and the server would work through it for nothing.
func TestNothingSentAfterContextEnds(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	owner := "john@example.test"
	if err := c.Put(ctx, owner, roster.Item{JID: "a@example.test"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v, want context.Canceled", err)
	}
	if err := c.Remove(ctx, owner, "a@example.test"); !errors.Is(err, context.Canceled) {
		t.Errorf("Remove = %v, want context.Canceled", err)
	}
	if _, err := c.Roster(ctx, owner); !errors.Is(err, context.Canceled) {
		t.Errorf("Roster = %v, want context.Canceled", err)
	}
	if _, setErrs, err := c.ApplyBatch(ctx, owner, nil, []roster.Item{{JID: "a@example.test"}}); err != nil || len(setErrs) != 1 || !errors.Is(setErrs[0], context.Canceled) {
		t.Errorf("ApplyBatch = %v, %v; want the item failed with context.Canceled", setErrs, err)
	}
	// One more request, sent, so that the ones before would have arrived.
	if _, err := c.Roster(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	if n := srv.Counts(); n.Sets != 0 || n.Gets != 1 {
		t.Errorf("server saw %d SETs and %d GETs, want 0 and 1", n.Sets, n.Gets)
	}
}
