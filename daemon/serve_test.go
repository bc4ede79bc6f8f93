package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roster-sidecar/component/componenttest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testDaemon is Serve running in-process against a fake XMPP server and an
// httptest backend.
type testDaemon struct {
	admin   string
	xmpp    *componenttest.Server
	backend *httptest.Server
	stop    context.CancelFunc
	done    chan error
	fetches atomic.Int64
}

// contactsRoster is a backend answer with contacts c0..c{n-1}.
func contactsRoster(n int) map[string]any {
	roster := map[string]any{}
	for i := range n {
		roster[fmt.Sprintf("c%d@example.test", i)] = map[string]any{"name": fmt.Sprint("Contact ", i), "groups": []string{"G"}}
	}
	return roster
}

// startDaemon serves rosters of contacts c0..c{n-1} for every user.
func startDaemon(t *testing.T, contacts int) *testDaemon {
	t.Helper()
	return startDaemonWith(t, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(contacts))
	}, nil, nil)
}

// startDaemonWith runs Serve with backend as the roster backend (under
// /roster/), configure applied to the config and log as its logger (nil:
// discarded).
func startDaemonWith(t *testing.T, backend http.HandlerFunc, configure func(*Config), log *slog.Logger) *testDaemon {
	t.Helper()
	d := &testDaemon{xmpp: componenttest.NewServer(t), admin: componenttest.FreeAddr(t), done: make(chan error, 1)}
	d.backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.fetches.Add(1)
		backend(w, r)
	}))
	t.Cleanup(d.backend.Close)
	cfg := Config{
		XMPPAddress: d.xmpp.Addr(), XMPPDomain: componenttest.Domain, XMPPSecret: componenttest.Secret,
		UserDomain: componenttest.UserDomain, ConnectTimeout: time.Second, IQTimeout: 5 * time.Second,
		PrivilegeWait: 2 * time.Second, PingInterval: time.Minute, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond, Window: 8, CompareSub: "auto",
		RosterURL: d.backend.URL + "/roster/%s", BackendTimeout: 5 * time.Second, BackendMaxBody: 1 << 20,
		AdminListen: d.admin, AdminMaxBody: 1 << 20, AdminMaxUsers: 100, AdminConcurrency: 8,
		AdminTimeout: time.Minute, SyncTimeout: 30 * time.Second,
	}
	if configure != nil {
		configure(&cfg)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	go func() { d.done <- Serve(ctx, cfg, log, "test") }()
	t.Cleanup(func() { d.shutdown(t) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(d.url("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 5s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// url is the admin API's URL of path.
func (d *testDaemon) url(path string) string { return "http://" + d.admin + path }

func (d *testDaemon) shutdown(t *testing.T) {
	d.stop()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
		d.done <- nil
	case <-time.After(10 * time.Second):
		t.Error("serve did not stop within 10s")
	}
}

type refreshAnswer struct {
	Status  string `json:"status"`
	Updated int    `json:"updated"`
	Errors  int    `json:"errors"`
}

func (d *testDaemon) refresh(client *http.Client, users ...string) (int, refreshAnswer, error) {
	body, _ := json.Marshal(users)
	resp, err := client.Post("http://"+d.admin+"/roster_admin/refresh", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, refreshAnswer{}, err
	}
	defer resp.Body.Close()
	var a refreshAnswer
	err = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a, err
}

func TestServeRefreshesAndStopsCleanly(t *testing.T) {
	d := startDaemon(t, 3)
	code, a, err := d.refresh(http.DefaultClient, "john", "John@example.test", "aaron")
	if err != nil || code != 200 || a.Status != "ok" || a.Updated != 2 || a.Errors != 0 {
		t.Fatalf("refresh = %d %+v %v", code, a, err)
	}
	want := []string{"c0@example.test|Contact 0|both|G", "c1@example.test|Contact 1|both|G", "c2@example.test|Contact 2|both|G"}
	for _, u := range []string{"john@example.test", "aaron@example.test"} {
		if got := d.xmpp.Roster(u); !slices.Equal(got, want) {
			t.Errorf("roster of %s = %v", u, got)
		}
	}
	resp, err := http.Get("http://" + d.admin + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %v", resp, err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
}

// TestServeUnderLoad sends 1,000 concurrent refresh requests over 50
// overlapping users: every one is answered, all rosters converge, and
// goroutines and heap stay bounded (figures in the log, checked against
// generous ceilings); goleak checks nothing is left once it stops.
func TestServeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	d := startDaemon(t, 20)
	const requests, users, perRequest = 1000, 50, 5
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: requests}}
	defer client.CloseIdleConnections()

	base := runtime.NumGoroutine()
	var peakG atomic.Int64
	var peakHeap atomic.Uint64
	sampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-sampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if g := int64(runtime.NumGoroutine()); g > peakG.Load() {
				peakG.Store(g)
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
		}
	}()

	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	errs := make(chan string, requests)
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []string
			for k := range perRequest {
				batch = append(batch, fmt.Sprintf("user%d", (i*3+k*7)%users))
			}
			code, a, err := d.refresh(client, batch...)
			if err != nil || code != 200 || a.Status != "ok" || a.Updated != perRequest || a.Errors != 0 {
				failed.Add(1)
				errs <- fmt.Sprintf("%d %+v %v", code, a, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(sampling)
	sampler.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("refresh failed: %s", e)
		break
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed", n, requests)
	}
	for u := range users {
		if got := d.xmpp.Roster(fmt.Sprintf("user%d@example.test", u)); len(got) != 20 {
			t.Fatalf("user%d has %d items, want 20", u, len(got))
		}
	}
	t.Logf("%d requests x %d users (%d distinct) in %s: %d backend fetches, %d SETs, peak goroutines %d (baseline %d), peak heap in use %.1f MiB",
		requests, perRequest, users, elapsed.Round(time.Millisecond), d.fetches.Load(), d.xmpp.Counts().Sets,
		peakG.Load(), base, float64(peakHeap.Load())/(1<<20))
	// Coalescing: far fewer fetches than the 5,000 user refreshes asked.
	if f := d.fetches.Load(); f >= requests*perRequest {
		t.Errorf("%d backend fetches for %d requested refreshes: no coalescing", f, requests*perRequest)
	}
	// Per request in flight: its client goroutine and connection (3), the
	// server's connection and its background read (2), and at most one
	// goroutine per user it syncs.
	if g := peakG.Load(); g > int64(base)+requests*(5+perRequest)+500 {
		t.Errorf("peak goroutines %d: not bounded by the requests in flight", g)
	}
	if h := peakHeap.Load(); h > 256<<20 {
		t.Errorf("peak heap %d MiB", h>>20)
	}
}
