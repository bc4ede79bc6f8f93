//go:build e2e && bench

package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The benchmark's settings. Run it with
//
//	go test -tags 'e2e bench' -run '^TestBench$' -v -timeout 60m ./e2e/ -args -bench.users=1000 ...
var (
	benchUsers    = flag.Int("bench.users", 1000, "users populated through the sidecar, and again (fresh users) by the blaster")
	benchContacts = flag.Int("bench.contacts", 20, "contacts per user")
	benchServers  = flag.String("bench.servers", "prosody,ejabberd", "servers to measure, comma separated")
	benchOut      = flag.String("bench.out", "", "write the report (Markdown) into this file, keeping text outside its markers")
	benchBatch    = flag.Int("bench.batch", 100, "users per refresh request")
	benchParallel = flag.Int("bench.parallel", 2, "refresh requests in flight")
	benchWindows  = flag.String("bench.windows", "1,16,64", "blaster windows (IQs in flight) tried; the best one is the server limit")
	benchScan     = flag.Int("bench.scanusers", 200, "users (fresh, -bench.contacts each) per blaster window trial; the best window then runs on -bench.users")
	benchLatency  = flag.Int("bench.latency", 200, "single-user refreshes timed for the latency row")
	benchBig      = flag.Int("bench.bigusers", 10000, "users refreshed in ONE request for the memory row (0 skips it)")
	benchBigK     = flag.Int("bench.bigcontacts", 2, "contacts per user of the memory run")
	benchRepeats  = flag.Int("bench.repeats", 3, "no-op repeats of the memory run, to see that memory stays flat")
	benchConc     = flag.Int("bench.concurrency", 0, "the sidecar's admin.concurrency (0: its default)")
	benchWindow   = flag.Int("bench.window", 0, "the sidecar's xmpp.window (0: its default)")
	benchAPIConc  = flag.String("bench.apiconcurrency", "8,32", "ejabberd: add_rosteritem calls in flight, each compared with the sidecar at as many SETs in flight (admin.concurrency=C, xmpp.window=1); empty skips")
	benchAPIUsers = flag.Int("bench.apiusers", 250, "ejabberd: users (-bench.contacts each) per HTTP API or equal-concurrency trial")
	benchPprof    = flag.String("bench.pprof", "", "directory for CPU and allocation profiles of the sidecar during populate (builds it with -tags pprof)")
)

// Sidecar settings of the benchmark that are not under test.
const (
	benchIQTimeout      = time.Minute
	benchBackendTimeout = 30 * time.Second
)

// phase is one measured sidecar run.
type phase struct {
	Users, Items int // users refreshed, roster items written
	Wall         time.Duration
	CPU          cpuUse        // server, sidecar; Self is the benchmark process
	Sent, Got    iqCounts      // IQs through the proxy: sidecar->server, server->sidecar
	Fetches      int           // backend requests
	Totals       refreshTotals // what the admin API answered
}

func (p phase) usersPerSec() float64 { return float64(p.Users) / p.Wall.Seconds() }
func (p phase) itemsPerSec() float64 { return float64(p.Items) / p.Wall.Seconds() }

// blastPhase is one measured blaster run.
type blastPhase struct {
	blastResult
	CPU cpuUse // server; Self is the blaster (benchmark process)
}

// apiTrial compares ejabberd's HTTP API with the sidecar at equal concurrency.
type apiTrial struct {
	Concurrency   int
	API, Sidecar  phase
	APIErr, SCErr string
}

// memRun is the sidecar's memory in the big run.
type memRun struct {
	Users, Contacts int
	HWMBefore       int64   // KiB, VmHWM before the big run (after all other phases)
	First           phase   // populate of the big set in one request
	HWMFirst        int64   // KiB after it
	RSSAfter        []int64 // KiB VmRSS after the first run and each repeat
	HWMAfter        []int64 // KiB VmHWM after the first run and each repeat
	Repeats         []phase
}

// latency holds single-user refresh times.
type latency struct {
	N                  int
	Changed            int
	P50, P90, P99, Max time.Duration
}

// serverReport is everything measured on one server.
type serverReport struct {
	Name                string
	Users, Contacts     int
	Windows             []blastPhase
	ScanUsers           int
	Limit, LimitUpdate  blastPhase
	Populate, Update    phase
	NoOp                phase
	NoOpPerUser         string // "" when exactly one fetch per user, else what differed
	Latency             latency
	Mem                 memRun
	API                 []apiTrial
	Concurrency, Window string
	Notes               []string
}

// TestBench measures the sidecar against the server's own limit on real
// servers and prints (and with -bench.out writes) the report.
func TestBench(t *testing.T) {
	requireSidecar(t)
	if *benchPprof != "" {
		if err := os.MkdirAll(*benchPprof, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if *benchPprof != "" && os.Getenv(envBinary) == "" { // else that binary must be built with -tags pprof
		bin, err := buildProfilingSidecar(tempDir(t, "bench-bin-"))
		if err != nil {
			t.Fatal(err)
		}
		old := sidecarBinary
		sidecarBinary = bin
		t.Cleanup(func() { sidecarBinary = old })
	}
	mach := describeMachine()
	var reports []*serverReport
	for _, name := range strings.Split(*benchServers, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(runners, func(r Runner) bool { return r.Name == name })
		if i < 0 {
			t.Fatalf("-bench.servers: unknown server %q", name)
		}
		r := runners[i]
		t.Run(r.Name, func(t *testing.T) {
			r.Check(t)
			rep := runBench(t, r)
			reports = append(reports, rep)
			fmt.Print("\n" + rep.markdown() + "\n")
		})
	}
	if len(reports) == 0 {
		return
	}
	doc := benchDocument(mach, reports)
	if *benchOut != "" {
		if err := writeReport(*benchOut, doc); err != nil {
			t.Fatal(err)
		}
		t.Logf("report written to %s", *benchOut)
	}
}

// runBench runs every phase against a fresh server of kind r.
func runBench(t *testing.T, r Runner) *serverReport {
	n, k := *benchUsers, *benchContacts
	rep := &serverReport{Name: r.Name, Users: n, Contacts: k, ScanUsers: *benchScan}
	ctx := context.Background()
	srv := r.Start(t)

	// Every user of every phase is created up front: the server must know
	// users before their rosters are written (Prosody refuses otherwise).
	windows := parseInts(t, *benchWindows)
	var sets []*benchSet
	newSet := func(prefix string, n, k int) *benchSet {
		s := newBenchSet(prefix, n, k)
		sets = append(sets, s)
		return s
	}
	scan := make([]*benchSet, len(windows))
	for i, w := range windows {
		scan[i] = newSet("w"+strconv.Itoa(w)+"u", *benchScan, k)
	}
	limitSet := newSet("lim", n, k)
	popSet := newSet("pop", n, k)
	var bigSet *benchSet
	if *benchBig > 0 {
		bigSet = newSet("big", *benchBig, *benchBigK)
	}
	apiConc := parseInts(t, *benchAPIConc)
	var apiSets, scSets []*benchSet
	if r.Name == "ejabberd" {
		for _, c := range apiConc {
			apiSets = append(apiSets, newSet("api"+strconv.Itoa(c)+"u", *benchAPIUsers, k))
			scSets = append(scSets, newSet("eq"+strconv.Itoa(c)+"u", *benchAPIUsers, k))
		}
	}
	var all []string
	for _, s := range sets {
		all = append(all, s.users...)
	}
	srv.CreateUsers(t, all...)

	// 1. The server limit, before any sidecar connects: a second connection
	// with the same component JID is refused by Prosody, and on ejabberd
	// closing it would take the sidecar's privileges away.
	comp, err := dialComponent(ctx, srv.ComponentAddr, srv.ComponentDomain, srv.ComponentSecret)
	if err != nil {
		t.Fatalf("blaster: %v", err)
	}
	ids := 0
	best := blastPhase{}
	for i, w := range windows {
		st := scan[i].populateStanzas(srv.ComponentDomain, &ids)
		res := blastRun(t, ctx, comp, srv, st, w)
		rep.Windows = append(rep.Windows, res)
		t.Logf("%s: blaster window %d: %d items in %v: %.0f items/s (errors %d)", r.Name, w, res.Items, res.Wall.Round(time.Millisecond), res.Rate(), res.Errors)
		if res.Rate() > best.Rate() {
			best = res
		}
	}
	rep.Limit = blastRun(t, ctx, comp, srv, limitSet.populateStanzas(srv.ComponentDomain, &ids), best.Window)
	t.Logf("%s: server limit (populate, window %d): %.0f items/s", r.Name, best.Window, rep.Limit.Rate())
	limitPlans := limitSet.mutate()
	rep.LimitUpdate = blastRun(t, ctx, comp, srv, limitSet.updateStanzas(limitPlans, srv.ComponentDomain, &ids), best.Window)
	t.Logf("%s: server limit (update, window %d): %.0f items/s", r.Name, best.Window, rep.LimitUpdate.Rate())
	comp.close()

	// 2. The sidecar, through a proxy that counts the IQs it sends.
	proxy, err := startIQProxy(srv.ComponentAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	backend := NewBackend(t)
	for _, s := range sets {
		s.serve(backend)
	}
	opts := benchSidecarOptions(*benchConc, *benchWindow)
	var pprofAddr string
	if *benchPprof != "" {
		pprofAddr = "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)[0])
		opts.Env = append(opts.Env, "ROSTER_SIDECAR_PPROF_LISTEN="+pprofAddr)
	}
	rep.Concurrency, rep.Window = settingOrDefault(*benchConc), settingOrDefault(*benchWindow)
	via := *srv
	via.ComponentAddr = proxy.Addr()
	sc := StartSidecar(t, &via, backend, opts)
	ref := newRefresher(sc.Admin.BaseURL, opts.Token)

	// populate
	var profDone chan error
	if pprofAddr != "" {
		secs := max(1, int(0.8*float64(popSet.items())/rep.Limit.Rate()))
		profDone = make(chan error, 1)
		go func() {
			profDone <- fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs),
				filepath.Join(*benchPprof, r.Name+"-populate-cpu.pprof"))
		}()
	}
	rep.Populate = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
	rep.Populate.Items = rep.Populate.Totals.Added
	expectTotals(t, "populate", rep.Populate, popSet.items(), 0, 0)
	if profDone != nil {
		if err := <-profDone; err != nil {
			t.Errorf("cpu profile: %v", err)
		}
		if err := fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/allocs", filepath.Join(*benchPprof, r.Name+"-populate-allocs.pprof")); err != nil {
			t.Errorf("allocs profile: %v", err)
		}
	}
	t.Logf("%s: populate: %.0f users/s, %.0f items/s, ratio %.2f", r.Name, rep.Populate.usersPerSec(), rep.Populate.itemsPerSec(), rep.Populate.itemsPerSec()/rep.Limit.Rate())

	// update
	plans := popSet.mutate()
	popSet.serve(backend)
	var adds, renames, removes int
	for _, p := range plans {
		adds, renames, removes = adds+len(p.added), renames+len(p.renamed), removes+len(p.removed)
	}
	rep.Update = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
	rep.Update.Items = rep.Update.Totals.Added + rep.Update.Totals.Updated + rep.Update.Totals.Removed
	expectTotals(t, "update", rep.Update, adds, renames, removes)
	t.Logf("%s: update: %.0f items/s, ratio %.2f", r.Name, rep.Update.itemsPerSec(), rep.Update.itemsPerSec()/rep.LimitUpdate.Rate())

	// no-op
	before := len(backend.Requests(""))
	rep.NoOp = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
	expectTotals(t, "no-op", rep.NoOp, 0, 0, 0)
	rep.NoOpPerUser = perUserFetches(backend.Requests("")[before:], popSet.users)
	if rep.NoOp.Sent.RosterSet != 0 || rep.NoOp.Sent.RosterGet != int64(n) || rep.NoOpPerUser != "" {
		t.Errorf("no-op refresh of %d users: %d roster GETs, %d SETs, backend: %s", n, rep.NoOp.Sent.RosterGet, rep.NoOp.Sent.RosterSet, rep.NoOpPerUser)
	}
	t.Logf("%s: no-op: %.0f users/s; %d GET, %d SET, %d fetches", r.Name, rep.NoOp.usersPerSec(), rep.NoOp.Sent.RosterGet, rep.NoOp.Sent.RosterSet, rep.NoOp.Fetches)

	// latency
	rep.Latency = measureLatency(t, ctx, ref, backend, popSet, *benchLatency)
	t.Logf("%s: latency of a %d-contact change: p50 %v p99 %v", r.Name, rep.Latency.Changed, rep.Latency.P50, rep.Latency.P99)

	// memory
	pid := sc.cmd.Process.Pid
	rep.Mem.HWMBefore, _ = procStatus(pid, "VmHWM")
	if bigSet != nil {
		rep.Mem.Users, rep.Mem.Contacts = len(bigSet.users), *benchBigK
		rep.Mem.First = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, bigSet.users, len(bigSet.users), 1)
		rep.Mem.First.Items = rep.Mem.First.Totals.Added
		expectTotals(t, "memory run", rep.Mem.First, bigSet.items(), 0, 0)
		sample := func() {
			rss, _ := procStatus(pid, "VmRSS")
			hwm, _ := procStatus(pid, "VmHWM")
			rep.Mem.RSSAfter = append(rep.Mem.RSSAfter, rss)
			rep.Mem.HWMAfter = append(rep.Mem.HWMAfter, hwm)
		}
		sample()
		rep.Mem.HWMFirst = rep.Mem.HWMAfter[0]
		for range *benchRepeats {
			p := sidecarRun(t, ctx, ref, proxy, backend, srv, sc, bigSet.users, len(bigSet.users), 1)
			expectTotals(t, "memory repeat", p, 0, 0, 0)
			rep.Mem.Repeats = append(rep.Mem.Repeats, p)
			sample()
		}
		t.Logf("%s: memory: VmHWM %d KiB before, %d KiB after %d users in one request; VmRSS after each run %v KiB",
			r.Name, rep.Mem.HWMBefore, rep.Mem.HWMFirst, len(bigSet.users), rep.Mem.RSSAfter)
	}
	sc.Alive(t)

	// 3. ejabberd's own HTTP API against the sidecar at equal concurrency.
	if r.Name == "ejabberd" && len(apiConc) > 0 {
		sc.Stop(30 * time.Second)
		for i, c := range apiConc {
			rep.API = append(rep.API, apiTrialRun(t, ctx, srv, &via, backend, proxy, apiSets[i], scSets[i], c))
		}
	}
	return rep
}

func settingOrDefault(v int) string {
	if v == 0 {
		return "default"
	}
	return strconv.Itoa(v)
}

// benchSidecarOptions are the sidecar's settings in the benchmark: its
// defaults except where a flag says otherwise, generous timeouts, info logs.
func benchSidecarOptions(concurrency, window int) SidecarOptions {
	o := SidecarOptions{
		Token:          adminToken,
		BackendTimeout: benchBackendTimeout,
		IQTimeout:      benchIQTimeout,
		PingInterval:   10 * time.Minute,
		Env: []string{
			"ROSTER_SIDECAR_LOG_LEVEL=info",
			"ROSTER_SIDECAR_ADMIN_REQUEST_TIMEOUT=30m",
			"ROSTER_SIDECAR_SYNC_TIMEOUT=10m",
		},
	}
	if concurrency > 0 {
		o.Env = append(o.Env, "ROSTER_SIDECAR_ADMIN_CONCURRENCY="+strconv.Itoa(concurrency))
	}
	if window > 0 {
		o.Env = append(o.Env, "ROSTER_SIDECAR_XMPP_WINDOW="+strconv.Itoa(window))
	}
	return o
}

// blastRun runs one blast and fails the test on errors.
func blastRun(t *testing.T, ctx context.Context, comp *rawComponent, srv *Server, stanzas [][]byte, window int) blastPhase {
	t.Helper()
	m := startCPU(srv.Process)
	res, err := comp.blast(ctx, stanzas, window)
	cpu := m.stop()
	if err != nil {
		t.Fatalf("blaster (window %d): %v", window, err)
	}
	if res.Errors > 0 {
		t.Errorf("blaster (window %d): %d of %d SETs failed, first: %s", window, res.Errors, res.Items, res.FirstEr)
	}
	return blastPhase{blastResult: res, CPU: cpu}
}

// sidecarRun refreshes users through the sidecar and measures it.
func sidecarRun(t *testing.T, ctx context.Context, ref *refresher, proxy *iqProxy, backend *Backend, srv *Server, sc *Sidecar, users []string, batch, parallel int) phase {
	t.Helper()
	sent0, got0 := proxy.Counts()
	fetch0 := len(backend.Requests(""))
	m := startCPU(srv.Process, sc.Process)
	start := time.Now()
	tot, err := ref.all(ctx, users, batch, parallel)
	wall := time.Since(start)
	cpu := m.stop()
	if err != nil {
		t.Fatal(err)
	}
	sent, got := proxy.Counts()
	return phase{Users: len(users), Wall: wall, CPU: cpu, Sent: sent.sub(sent0), Got: got.sub(got0),
		Fetches: len(backend.Requests("")) - fetch0, Totals: *tot}
}

// expectTotals fails the test unless every user succeeded with exactly
// these changes.
func expectTotals(t *testing.T, what string, p phase, added, updated, removed int) {
	t.Helper()
	tt := p.Totals
	if tt.Errors != 0 || tt.OK != p.Users {
		t.Fatalf("%s: %d of %d users failed, first: %s", what, tt.Errors, p.Users, tt.FirstError)
	}
	if tt.Added != added || tt.Updated != updated || tt.Removed != removed {
		t.Errorf("%s: added/updated/removed %d/%d/%d, want %d/%d/%d", what, tt.Added, tt.Updated, tt.Removed, added, updated, removed)
	}
	if p.Got.Error != 0 {
		t.Errorf("%s: the server answered %d IQs with an error", what, p.Got.Error)
	}
}

// perUserFetches returns "" when reqs hold exactly one fetch per user, else
// a description of the difference.
func perUserFetches(reqs []BackendRequest, users []string) string {
	count := make(map[string]int, len(users))
	for _, r := range reqs {
		count[r.User]++
	}
	bad := 0
	for _, u := range users {
		if count[u] != 1 {
			bad++
		}
	}
	if bad == 0 && len(reqs) == len(users) {
		return ""
	}
	return fmt.Sprintf("%d fetches for %d users, %d users not fetched exactly once", len(reqs), len(users), bad)
}

// measureLatency times single-user refreshes that each change (rename) up
// to 20 contacts, one request at a time, cycling over the set's users.
func measureLatency(t *testing.T, ctx context.Context, ref *refresher, backend *Backend, s *benchSet, n int) latency {
	t.Helper()
	if n <= 0 || len(s.users) == 0 {
		return latency{}
	}
	changed := min(20, len(s.rosters[0]))
	users := min(len(s.users), 50)
	times := make([]time.Duration, 0, n)
	for i := range n {
		u := i % users
		for j := range changed {
			s.rosters[u][j].Name = fmt.Sprintf("User %d/%d round %d", u, j, i)
		}
		backend.Set(s.users[u], Reply{Body: EncodeRoster(s.rosters[u])})
		start := time.Now()
		if err := ref.one(ctx, s.users[u]); err != nil {
			t.Fatalf("latency: %v", err)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	q := func(p float64) time.Duration { return times[min(len(times)-1, int(p*float64(len(times))))] }
	return latency{N: n, Changed: changed, P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: times[len(times)-1]}
}

// apiTrialRun writes apiSet through ejabberd's add_rosteritem with c calls
// in flight, then scSet through a sidecar with c SETs in flight.
func apiTrialRun(t *testing.T, ctx context.Context, srv, via *Server, backend *Backend, proxy *iqProxy, apiSet, scSet *benchSet, c int) apiTrial {
	t.Helper()
	tr := apiTrial{Concurrency: c}
	api := newEjabberdAPI(srv)
	m := startCPU(srv.Process)
	start := time.Now()
	n, err := api.addRosterItems(ctx, apiSet, c)
	tr.API = phase{Users: len(apiSet.users), Items: n, Wall: time.Since(start), CPU: m.stop()}
	if err != nil {
		tr.APIErr = err.Error()
		t.Errorf("ejabberd API at %d in flight: %v", c, err)
	}
	t.Logf("ejabberd API, %d calls in flight: %d items in %v: %.0f items/s", c, n, tr.API.Wall.Round(time.Millisecond), tr.API.itemsPerSec())

	sc := StartSidecar(t, via, backend, benchSidecarOptions(c, 1))
	ref := newRefresher(sc.Admin.BaseURL, adminToken)
	tr.Sidecar = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, scSet.users, *benchBatch, *benchParallel)
	tr.Sidecar.Items = tr.Sidecar.Totals.Added
	expectTotals(t, "equal-concurrency populate", tr.Sidecar, scSet.items(), 0, 0)
	sc.Stop(30 * time.Second)
	t.Logf("sidecar, %d SETs in flight: %.0f items/s", c, tr.Sidecar.itemsPerSec())
	return tr
}

// fetchProfile saves a pprof profile from url into file.
func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func parseInts(t *testing.T, s string) []int {
	t.Helper()
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 {
			t.Fatalf("not a positive number list: %q", s)
		}
		out = append(out, v)
	}
	return out
}
