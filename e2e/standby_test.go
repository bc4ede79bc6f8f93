//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// Settings of the active/standby test. The standby redials on its
// reconnect backoff, so its xmpp.reconnect_max bounds the take-over:
// standbyReconnectMax is what docs/deploy-kubernetes.md recommends for two
// plain instances on Prosody, and failoverBound the bound it checks.
const (
	standbyReconnectMax = 5 * time.Second
	failoverBound       = 15 * time.Second
)

// TestActiveStandby runs two plain sidecars (no leader election) on one
// component JID, on Prosody only: Prosody refuses a second connection for a
// component JID ("conflict"), so the second instance stands by, not ready,
// and answers refreshes with 503. After a kill -9 of the active one it
// connects within failoverBound, and no refresh is ever answered 200 by an
// instance without the connection. (ejabberd accepts both connections and
// drops the privileges when one closes: there, two instances need leader
// election, see docs/deploy-kubernetes.md.)
func TestActiveStandby(t *testing.T) {
	runPerServer(t, servers{only: []string{"prosody"}}, testActiveStandby)
}

// probe is one refresh answer seen during the test.
type probe struct {
	at     time.Time
	code   int
	body   harness.RefreshResponse
	raw    string
	failed error
}

// refreshProber posts users to an admin API every interval until stopped,
// recording every answer. It uses its own client: the harness's fails the
// test from the calling goroutine.
type refreshProber struct {
	admin *harness.Admin
	users []string
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	seen  []probe
}

func startProber(admin *harness.Admin, interval time.Duration, users ...string) *refreshProber {
	p := &refreshProber{admin: admin, users: users, stop: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	body, _ := json.Marshal(users)
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		for {
			req, _ := http.NewRequest(http.MethodPost, admin.BaseURL+"/roster_admin/refresh", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+admin.Token)
			pr := probe{at: time.Now()}
			resp, err := client.Do(req)
			if err != nil {
				pr.failed = err
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				pr.code, pr.raw = resp.StatusCode, string(b)
				pr.failed = json.Unmarshal(b, &pr.body)
			}
			p.mu.Lock()
			p.seen = append(p.seen, pr)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	return p
}

// halt stops the prober and returns what it saw.
func (p *refreshProber) halt() []probe {
	close(p.stop)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// checkProbes fails t for an answer of an instance without the connection
// that is not a 503 error (status error, every user counted as an error),
// and for a 200 that is not a complete success. It returns the count of
// each.
func checkProbes(t *testing.T, who string, seen []probe, users int) (ok, standby int) {
	t.Helper()
	for _, p := range seen {
		switch {
		case p.failed != nil:
			t.Errorf("%s: refresh at %s: %v (%d %s)", who, p.at.Format("15:04:05.000"), p.failed, p.code, p.raw)
		case p.code == http.StatusOK:
			if p.body.Status != "ok" || p.body.Updated != users || p.body.Errors != 0 {
				t.Errorf("%s: refresh answered 200 without syncing every user: %s", who, p.raw)
			}
			ok++
		case p.code == http.StatusServiceUnavailable:
			if p.body.Status != "error" || p.body.Errors != users || p.body.Message == "" {
				t.Errorf("%s: 503 answer not in the error form: %s", who, p.raw)
			}
			standby++
		default:
			t.Errorf("%s: refresh answered %d: %s", who, p.code, p.raw)
		}
	}
	return ok, standby
}

// readyz returns the status and message of an instance's /readyz.
func readyz(admin *harness.Admin) (int, string) {
	resp, err := http.Get(admin.BaseURL + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Message string `json:"message"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Message
}

func testActiveStandby(t *testing.T, e *Env) {
	users := []string{"ha_alice", "ha_bob"}
	e.Users(t, users...)
	v1 := []harness.Contact{{JID: "one@example.test", Name: "One", Groups: []string{"HA"}}}
	v2 := []harness.Contact{{JID: "two@example.test", Name: "Two", Groups: []string{"HA"}}}
	for _, u := range users {
		e.Backend.SetRoster(u, v1...)
	}
	opts := sidecarOptions(mainPing)
	opts.Env = append(opts.Env, "ROSTER_SIDECAR_XMPP_RECONNECT_MAX="+standbyReconnectMax.String())

	active := e.StartSidecar(t, opts)
	standby := startSidecarNoWait(t, e.Server, e.Backend, opts)
	logOnFailure(t, active.Process, standby.Process, e.Server.Process)

	// The standby's attempts are refused; let its backoff reach
	// standbyReconnectMax, the steady state a failover meets.
	refused := func() int { return strings.Count(standby.Output(), "XMPP connection lost, reconnecting") }
	waitUntil(t, 60*time.Second, "the standby's backoff at its maximum", func() bool { return refused() >= 6 })
	if !strings.Contains(standby.Output(), "conflict") {
		t.Errorf("the standby's attempts were not refused with conflict:\n%s", standby.Output())
	}
	code, msg := readyz(standby.Admin)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("standby /readyz = %d %q, want 503", code, msg)
	}
	t.Logf("standby /readyz: %d %q after %d refused attempts", code, msg, refused())
	active.Admin.RefreshOK(t, users...)
	c := Login(t, e.Server, users[0])
	c.WaitForRoster(t, v1, pushWait)

	// Refreshes go to both instances through the failover, as from a
	// backend that does not know which one is active.
	for _, u := range users {
		e.Backend.SetRoster(u, v2...)
	}
	proberA := startProber(active.Admin, 200*time.Millisecond, users...)
	proberB := startProber(standby.Admin, 100*time.Millisecond, users...)
	time.Sleep(time.Second)

	seenA := proberA.halt()
	killed := time.Now()
	active.Kill()
	t.Logf("active sidecar killed with SIGKILL")
	var readyAt time.Time
	err := harness.WaitFor(t.Context(), standby.Process, 60*time.Second, "the standby's /readyz 200", func() error {
		if code, msg := readyz(standby.Admin); code != http.StatusOK {
			return fmt.Errorf("%d %s", code, msg)
		}
		readyAt = time.Now()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	failover := readyAt.Sub(killed)
	t.Logf("failover: the standby was connected and ready %v after the kill -9 (xmpp.reconnect_max %v)", failover.Round(time.Millisecond), standbyReconnectMax)
	if failover > failoverBound {
		t.Errorf("failover took %v, want at most %v", failover, failoverBound)
	}
	time.Sleep(time.Second) // a few refreshes of the new active instance
	seenB := proberB.halt()

	okA, standbyA := checkProbes(t, "active", seenA, len(users))
	if okA == 0 || standbyA != 0 {
		t.Errorf("active before the kill: %d answers 200, %d 503; want only 200", okA, standbyA)
	}
	okB, standbyB := checkProbes(t, "standby", seenB, len(users))
	t.Logf("standby: %d refreshes answered 503 before it had the connection, %d answered 200 after", standbyB, okB)
	if standbyB == 0 || okB == 0 {
		t.Errorf("standby: %d answers 503, %d 200; want both", standbyB, okB)
	}
	// No 200 before the standby had the connection, no 503 after.
	for _, p := range seenB {
		if p.code == http.StatusOK && p.at.Before(killed) {
			t.Errorf("the standby answered 200 at %s, while the active one held the connection", p.at.Format("15:04:05.000"))
		}
		if p.code == http.StatusServiceUnavailable && p.at.After(readyAt) {
			t.Errorf("the standby answered 503 at %s, after it was ready", p.at.Format("15:04:05.000"))
		}
	}
	c.WaitForRoster(t, v2, pushWait)

	// The killed instance, started again, is now the standby: the server
	// keeps the connection it has.
	again := startSidecarNoWait(t, e.Server, e.Backend, opts)
	waitUntil(t, 30*time.Second, "the restarted instance refused", func() bool {
		return strings.Contains(again.Output(), "XMPP connection lost, reconnecting")
	})
	if code, msg := readyz(again.Admin); code != http.StatusServiceUnavailable {
		t.Errorf("restarted instance /readyz = %d %q, want 503", code, msg)
	}
	if code, msg := readyz(standby.Admin); code != http.StatusOK {
		t.Errorf("the new active instance /readyz = %d %q after the old one came back, want 200", code, msg)
	}
	standby.Admin.RefreshOK(t, users...)
}

// startSidecarNoWait is harness.StartSidecarNoWait with the suite's binary.
func startSidecarNoWait(t testing.TB, srv *harness.Server, backend *harness.Backend, opts harness.SidecarOptions) *harness.Sidecar {
	t.Helper()
	requireSidecar(t)
	opts.Binary = sidecarBinary
	return harness.StartSidecarNoWait(t, srv, backend, opts)
}
