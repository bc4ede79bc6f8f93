package leader_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"roster-sidecar/leader"
	"roster-sidecar/leader/leadertest"
)

const (
	namespace = "chat"
	leaseName = "roster-sidecar"
)

// Short timings for the tests. The Lease stores whole seconds, and
// client-go compares records at one-second precision, so the others may
// take a lease over LeaseDuration − 1 s after the holder's last renewal:
// 2 s leaves the holder, which stops RetryPeriod + RenewDeadline after it,
// some room on a loaded machine.
var fast = leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}

// worker is a fake of the daemon's parts: it records when each term's work
// starts and stops, and fails the test if two instances work at once.
type worker struct {
	t       *testing.T
	running *atomic.Int32 // shared by the instances of a test
	mu      sync.Mutex
	starts  []time.Time
	stops   []time.Time
	err     error // returned by the work when its context has not ended
	fail    chan struct{}
}

func newWorker(t *testing.T, running *atomic.Int32) *worker {
	return &worker{t: t, running: running, fail: make(chan struct{})}
}

func (w *worker) work(ctx context.Context) error {
	if n := w.running.Add(1); n != 1 {
		w.t.Errorf("%d instances work at once", n)
	}
	w.mu.Lock()
	w.starts = append(w.starts, time.Now())
	w.mu.Unlock()
	var err error
	select {
	case <-ctx.Done():
	case <-w.fail:
		err = w.err
	}
	w.running.Add(-1)
	w.mu.Lock()
	w.stops = append(w.stops, time.Now())
	w.mu.Unlock()
	return err
}

// started returns when the nth term (from 1) started, or zero.
func (w *worker) started(n int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.starts) < n {
		return time.Time{}
	}
	return w.starts[n-1]
}

// stopped returns when the nth term (from 1) stopped, or zero.
func (w *worker) stopped(n int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.stops) < n {
		return time.Time{}
	}
	return w.stops[n-1]
}

// recorder is a leader.Observer.
type recorder struct {
	mu      sync.Mutex
	leading []bool
	leaders []string
}

func (r *recorder) Leading(b bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leading = append(r.leading, b)
}

func (r *recorder) NewLeader(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaders = append(r.leaders, id)
}

func (r *recorder) get() ([]bool, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.leading...), append([]string(nil), r.leaders...)
}

// instance is one elector running in the test.
type instance struct {
	id     string
	client *leadertest.Client
	e      *leader.Elector
	w      *worker
	obs    *recorder
	stop   context.CancelFunc
	done   chan error
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs an elector named id with timings cfg on api.
func start(t *testing.T, api *leadertest.API, running *atomic.Int32, id string, cfg leader.Config) *instance {
	t.Helper()
	in := &instance{id: id, client: api.Client(), w: newWorker(t, running), obs: &recorder{}, done: make(chan error, 1)}
	cfg.LeaseName, cfg.Namespace, cfg.Identity, cfg.Client = leaseName, namespace, id, in.client
	var err error
	in.e, err = leader.New(cfg, testLogger(t).With("instance", id), in.obs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.stop = cancel
	go func() { in.done <- in.e.Run(ctx, in.w.work) }()
	t.Cleanup(func() {
		in.stop()
		in.wait(t, 10*time.Second)
	})
	return in
}

// wait waits for Run to return and returns its error.
func (in *instance) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-in.done:
		in.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("%s: Run did not return within %s", in.id, d)
		return nil
	}
}

// waitFor polls cond every 5 ms until it holds, and returns when it did.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

// leaderOf waits until one of the instances leads and returns it and the
// other one.
func leaderOf(t *testing.T, a, b *instance) (lead, standby *instance) {
	t.Helper()
	waitFor(t, "an instance leads", 10*time.Second, func() bool { return a.e.Leading() || b.e.Leading() })
	if a.e.Leading() {
		return a, b
	}
	return b, a
}

func TestOneLeaderAtATime(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	a := start(t, api, &running, "pod-a", fast)
	b := start(t, api, &running, "pod-b", fast)
	lead, standby := leaderOf(t, a, b)

	// Over several lease durations, the holder keeps it and the other
	// waits (the worker fails the test if both ever work at once).
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if !lead.e.Leading() || standby.e.Leading() {
			t.Fatalf("leadership moved without a failure: %s leading %v, %s leading %v", lead.id, lead.e.Leading(), standby.id, standby.e.Leading())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := api.Holder(namespace, leaseName); got != lead.id {
		t.Errorf("lease holder %q, want %q", got, lead.id)
	}
	if err := lead.e.Standby(); err != nil {
		t.Errorf("leader: Standby() = %v", err)
	}
	err := standby.e.Standby()
	if err == nil || !strings.Contains(err.Error(), "standby") || !strings.Contains(err.Error(), lead.id) ||
		!strings.Contains(err.Error(), namespace+"/"+leaseName) {
		t.Errorf("standby: Standby() = %v, want a message naming standby, the holder and the lease", err)
	}
	if !standby.w.started(1).IsZero() {
		t.Error("the standby worked")
	}
	leading, leaders := lead.obs.get()
	if len(leading) != 1 || !leading[0] || len(leaders) == 0 || leaders[0] != lead.id {
		t.Errorf("leader's observer: leading %v, leaders %v", leading, leaders)
	}
	leading, leaders = standby.obs.get()
	if len(leading) != 0 || len(leaders) == 0 || leaders[0] != lead.id {
		t.Errorf("standby's observer: leading %v, leaders %v", leading, leaders)
	}
}

// killLeader cuts the leader off the API (as SIGKILL would: no more
// renewals, no release) and returns when, the other instance, and the time
// of the leader's last renewal.
func killLeader(t *testing.T, api *leadertest.API, a, b *instance) (killed, survivor *instance, at, renewed time.Time) {
	t.Helper()
	killed, survivor = leaderOf(t, a, b)
	// Let the survivor see a few renewals first.
	time.Sleep(300 * time.Millisecond)
	killed.client.Cut()
	at = time.Now()
	time.Sleep(20 * time.Millisecond) // a renewal in flight lands
	l := api.Lease(namespace, leaseName)
	if l == nil || l.Spec.RenewTime == nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != killed.id {
		t.Fatalf("lease after the cut: %+v", l)
	}
	return killed, survivor, at, l.Spec.RenewTime.Time
}

func TestTakeOverAfterTheLeaderIsKilled(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	// client-go compares lease records at one-second precision: the
	// survivor counts the lease duration from up to 1 s before the last
	// renewal. A 3 s lease shows that it still waits.
	cfg := fast
	cfg.LeaseDuration = 3 * time.Second
	a := start(t, api, &running, "pod-a", cfg)
	b := start(t, api, &running, "pod-b", cfg)
	killed, survivor, at, renewed := killLeader(t, api, a, b)

	took := waitFor(t, "the survivor leads", 10*time.Second, survivor.e.Leading)
	failover := took.Sub(at)
	t.Logf("take-over %v after the leader was cut off, %v after its last renewal (lease duration %v, retry period %v)",
		failover.Round(time.Millisecond), took.Sub(renewed).Round(time.Millisecond), cfg.LeaseDuration, cfg.RetryPeriod)
	// The survivor waits for the lease to expire: at least the lease
	// duration after the last renewal, at most about two jittered polls
	// later.
	if d := took.Sub(renewed); d < cfg.LeaseDuration-time.Second {
		t.Errorf("took over %v after the last renewal: before the lease expired (%v)", d, cfg.LeaseDuration)
	}
	if max := cfg.LeaseDuration + 3*cfg.RetryPeriod + time.Second; failover > max {
		t.Errorf("took over after %v, want at most %v", failover, max)
	}
	// The cut-off leader stopped its work on its own, within the renew
	// deadline, and before the survivor started.
	waitFor(t, "the killed leader stops its work", 5*time.Second, func() bool { return !killed.w.stopped(1).IsZero() })
	if s := killed.w.stopped(1); s.After(survivor.w.started(1)) {
		t.Errorf("the old leader stopped at %v, after the new one started at %v", s, survivor.w.started(1))
	}
	if d := killed.w.stopped(1).Sub(at); d > cfg.RetryPeriod+cfg.RenewDeadline+time.Second {
		t.Errorf("the cut-off leader worked on for %v", d)
	}
	if killed.e.Leading() {
		t.Error("the cut-off leader still says it leads")
	}
	if err := killed.e.Standby(); err == nil {
		t.Error("the cut-off leader is not on standby")
	}
	if got := api.Holder(namespace, leaseName); got != survivor.id {
		t.Errorf("lease holder %q, want %q", got, survivor.id)
	}
	leading, _ := killed.obs.get()
	if len(leading) != 2 || !leading[0] || leading[1] {
		t.Errorf("the killed leader's observer saw leading %v, want [true false]", leading)
	}

	// Back on the network, it stays on standby: the survivor renews.
	killed.client.Restore()
	time.Sleep(cfg.LeaseDuration + 500*time.Millisecond)
	if killed.e.Leading() || !survivor.e.Leading() {
		t.Errorf("after the partition healed: %s leading %v, %s leading %v", killed.id, killed.e.Leading(), survivor.id, survivor.e.Leading())
	}
}

func TestCleanStopHandsOverAtOnce(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	// A long lease: a hand-over that waited for it to expire would show.
	cfg := leader.Config{LeaseDuration: 10 * time.Second, RenewDeadline: 600 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	a := start(t, api, &running, "pod-a", cfg)
	b := start(t, api, &running, "pod-b", cfg)
	lead, standby := leaderOf(t, a, b)
	time.Sleep(300 * time.Millisecond)

	at := time.Now()
	lead.stop()
	if err := lead.wait(t, 5*time.Second); err != nil {
		t.Errorf("Run returned %v after a clean stop", err)
	}
	took := waitFor(t, "the standby leads", 5*time.Second, standby.e.Leading)
	handOver := took.Sub(at)
	t.Logf("hand-over %v after a clean stop (lease duration %v, retry period %v)", handOver.Round(time.Millisecond), cfg.LeaseDuration, cfg.RetryPeriod)
	if max := 3*cfg.RetryPeriod + 2*time.Second; handOver > max {
		t.Errorf("hand-over took %v, want at most %v", handOver, max)
	}
	if s := lead.w.stopped(1); s.IsZero() || s.After(standby.w.started(1)) {
		t.Errorf("the old leader stopped at %v, the new one started at %v", s, standby.w.started(1))
	}
}

func TestLeaseTakenAwayStopsTheWork(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	// A renew deadline far longer than the expected stop.
	cfg := leader.Config{LeaseDuration: 10 * time.Second, RenewDeadline: 5 * time.Second, RetryPeriod: 200 * time.Millisecond}
	a := start(t, api, &running, "pod-a", cfg)
	waitFor(t, "pod-a leads", 5*time.Second, a.e.Leading)

	// An operator (or a bug elsewhere) writes another holder into the lease.
	l := api.Lease(namespace, leaseName)
	other := "intruder"
	l.Spec.HolderIdentity = &other
	at := time.Now()
	if _, err := api.Clientset.CoordinationV1().Leases(namespace).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stopped := waitFor(t, "pod-a stops its work", 5*time.Second, func() bool { return !a.w.stopped(1).IsZero() })
	t.Logf("work stopped %v after the lease was taken", stopped.Sub(at).Round(time.Millisecond))
	if d := stopped.Sub(at); d > 3*cfg.RetryPeriod+time.Second {
		t.Errorf("the work stopped %v after the lease was taken, want within a few retry periods", d)
	}
	if a.e.Leading() {
		t.Error("still leading")
	}
	if err := a.e.Standby(); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("Standby() = %v, want it to name %s", err, other)
	}
	if got := api.Holder(namespace, leaseName); got != other {
		t.Errorf("holder %q: the old leader overwrote the lease", got)
	}
}

func TestWorkErrorEndsRunAndReleases(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	a := start(t, api, &running, "pod-a", fast)
	waitFor(t, "pod-a leads", 5*time.Second, a.e.Leading)
	a.w.err = errors.New("the server refused the secret")
	close(a.w.fail)
	if err := a.wait(t, 5*time.Second); err == nil || err.Error() != "the server refused the secret" {
		t.Fatalf("Run returned %v, want the work's error", err)
	}
	if got := api.Holder(namespace, leaseName); got != "" {
		t.Errorf("holder %q after the work failed, want the lease released", got)
	}
}

func TestNoLeaseAPIStaysOnStandby(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	in := &instance{id: "pod-a", client: api.Client(), w: newWorker(t, &running), done: make(chan error, 1)}
	in.client.Cut()
	cfg := fast
	cfg.LeaseName, cfg.Namespace, cfg.Identity, cfg.Client = leaseName, namespace, in.id, in.client
	e, err := leader.New(cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { in.done <- e.Run(ctx, in.w.work) }()
	time.Sleep(time.Second)
	if e.Leading() || !in.w.started(1).IsZero() {
		t.Error("led without the API")
	}
	if err := e.Standby(); err == nil || !strings.Contains(err.Error(), "waiting for the lease chat/roster-sidecar") {
		t.Errorf("Standby() = %v", err)
	}
	cancel()
	if err := in.wait(t, 10*time.Second); err != nil {
		t.Errorf("Run returned %v", err)
	}
}

// TestFailoverWithDefaults measures the take-over after the leader is
// killed with the default timings: the lease duration (8 s) plus at most
// two polls of 1.2 s, 12.4 s at worst.
func TestFailoverWithDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 10 s")
	}
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	a := start(t, api, &running, "pod-a", leader.Config{})
	b := start(t, api, &running, "pod-b", leader.Config{})
	_, survivor, at, _ := killLeader(t, api, a, b)
	took := waitFor(t, "the survivor leads", 30*time.Second, survivor.e.Leading)
	failover := took.Sub(at)
	t.Logf("failover with the defaults (%v/%v/%v): %v", leader.DefaultLeaseDuration, leader.DefaultRenewDeadline, leader.DefaultRetryPeriod, failover.Round(time.Millisecond))
	if failover > 15*time.Second {
		t.Errorf("failover took %v, want at most 15 s", failover)
	}
}

// TestAdvertisedURL: an instance that advertises its admin URL writes it
// into the Lease after its identity, and the others read both back.
func TestAdvertisedURL(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	var running atomic.Int32
	withURL := func(u string) leader.Config { c := fast; c.AdvertiseURL = u; return c }
	a := start(t, api, &running, "pod-a", withURL("http://10.0.0.1:5380"))
	b := start(t, api, &running, "pod-b", withURL("http://10.0.0.2:5380"))
	lead, standby := leaderOf(t, a, b)
	wantURL := map[string]string{"pod-a": "http://10.0.0.1:5380", "pod-b": "http://10.0.0.2:5380"}[lead.id]
	if got, want := api.Holder(namespace, leaseName), lead.id+" "+wantURL; got != want {
		t.Errorf("holderIdentity %q, want %q", got, want)
	}
	waitFor(t, "the standby sees the holder", 5*time.Second, func() bool { return standby.e.Holder() != "" })
	for _, in := range []*instance{lead, standby} {
		if id, u := in.e.Leader(); id != lead.id || u != wantURL {
			t.Errorf("%s: Leader() = %q, %q, want %q, %q", in.id, id, u, lead.id, wantURL)
		}
	}
	if err := standby.e.Standby(); err == nil || !strings.Contains(err.Error(), lead.id+" holds") {
		t.Errorf("standby: Standby() = %v, want it to name %s alone", err, lead.id)
	}
	// A clean stop releases the lease written with the URL.
	lead.stop()
	lead.wait(t, 10*time.Second)
	waitFor(t, "the standby takes over", 5*time.Second, standby.e.Leading)
	waitFor(t, "Leader() names the new holder", 5*time.Second, func() bool { id, _ := standby.e.Leader(); return id == standby.id })
}

func TestConfig(t *testing.T) {
	t.Parallel()
	api := leadertest.New()
	base := leader.Config{LeaseName: leaseName, Namespace: namespace, Identity: "pod-a", Client: api.Client()}
	e, err := leader.New(base, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := e.Config()
	if got.LeaseDuration != 8*time.Second || got.RenewDeadline != 4*time.Second || got.RetryPeriod != time.Second {
		t.Errorf("defaults %v/%v/%v", got.LeaseDuration, got.RenewDeadline, got.RetryPeriod)
	}
	host, _ := os.Hostname()
	noID := base
	noID.Identity = ""
	if e, err := leader.New(noID, nil, nil); err != nil || e.Config().Identity != host {
		t.Errorf("identity default: %v, %v, want the host name %q", e, err, host)
	}
	for name, c := range map[string]func(*leader.Config){
		"fractional lease":        func(c *leader.Config) { c.LeaseDuration = 1500 * time.Millisecond },
		"short lease":             func(c *leader.Config) { c.LeaseDuration = 500 * time.Millisecond },
		"renew beyond lease":      func(c *leader.Config) { c.RenewDeadline = 9 * time.Second },
		"retry too long":          func(c *leader.Config) { c.RetryPeriod = 4500 * time.Millisecond },
		"bad lease name":          func(c *leader.Config) { c.LeaseName = "Roster_Sidecar" },
		"bad namespace":           func(c *leader.Config) { c.Namespace = "a.b" },
		"no name":                 func(c *leader.Config) { c.LeaseName = "" },
		"negative retry period":   func(c *leader.Config) { c.RetryPeriod = -time.Second },
		"negative renew deadline": func(c *leader.Config) { c.RenewDeadline = -time.Second },
		"bad advertise URL":       func(c *leader.Config) { c.AdvertiseURL = "10.1.2.3:5380" },
		"advertise with a spaced identity": func(c *leader.Config) {
			c.Identity, c.AdvertiseURL = "pod a", "http://10.1.2.3:5380"
		},
	} {
		cfg := base
		c(&cfg)
		if _, err := leader.New(cfg, nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err != nil {
		noNS := base
		noNS.Namespace = ""
		if _, err := leader.New(noNS, nil, nil); err == nil || !strings.Contains(err.Error(), "namespace") {
			t.Errorf("no namespace outside a pod: %v", err)
		}
		noClient := base
		noClient.Client = nil
		if _, err := leader.New(noClient, nil, nil); err == nil || !strings.Contains(err.Error(), "pod") {
			t.Errorf("no client outside a pod: %v", err)
		}
	}
}
