package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"roster-sidecar/e2e/harness"
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
	InFlight     float64       // IQs sent and not yet answered, averaged over the run
}

func (p phase) usersPerSec() float64 { return float64(p.Users) / p.Wall.Seconds() }
func (p phase) itemsPerSec() float64 { return float64(p.Items) / p.Wall.Seconds() }

// cpuPerItem is the sidecar's CPU seconds per item written (0 when unknown).
func (p phase) cpuPerItem() float64 {
	if p.Items == 0 || len(p.CPU.Procs) < 2 {
		return 0
	}
	return p.CPU.Procs[1] * p.Wall.Seconds() / float64(p.Items)
}

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

// blastRound is one blaster populate, update and read on a fresh server.
type blastRound struct {
	Populate, Update, Get blastPhase
}

// sidecarRound is one sidecar populate and update on a fresh server.
type sidecarRound struct {
	Populate, Update phase
}

// tuneRun is a populate with other sidecar settings, or by the blaster.
type tuneRun struct {
	Spec                string
	Blaster, Direct     bool
	Concurrency, Window int
	Burn                float64  // blaster: cores burnt by a busy loop meanwhile
	Env                 []string // sidecar: extra environment
	Binary              string   // sidecar: another roster-sidecar binary
	Hops                int      // blaster (with -tunecycles): through this many proxies
	Interleave          int      // blaster (with -tunecycles): users taking turns item by item
	ItemNS              bool     // blaster (with -tunecycles): xmlns repeated on <item/>
	ReadFirst           bool     // blaster (with -tunecycles): a roster GET before each user's SETs
	Pad                 int      // blaster (with -tunecycles): bytes added to every contact name
	Run, Update         phase    // populate, then the 10/10/10% update
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
	Limit, LimitUpdate  blastPhase // the median rounds
	LimitGet            blastPhase // one roster GET per user after the update
	Populate, Update    phase      // the median rounds
	LimitRounds         []blastRound
	Inside              []insideRun // ejabberd: populates measured inside the Erlang node
	InsideUsers         int
	LimitBurn           blastPhase // populate with BurnCores taken by a busy loop
	BurnCores           float64
	LimitInterleaved    blastPhase // populate with Interleave users taking turns
	Interleave          int
	SidecarRounds       []sidecarRound
	NoOp                phase
	NoOpPerUser         string // "" when exactly one fetch per user, else what differed
	NoOpCond            phase  // the no-op again, the backend answering 304
	NoOpCond304         int    // fetches of NoOpCond answered 304
	Shared              []sharedRound
	Scale               []scalePoint
	Large               largeRoster
	Latency             latency
	Mem                 memRun
	API                 []apiTrial
	Tune                []tuneRun
	Cycles              []cycleResult
	Concurrency, Window string
	Notes               []string
}

// runBench runs every phase of one server. Each measured run starts on a
// fresh server (new process, empty data) that holds exactly its users, so
// that the blaster and the sidecar meet the same server state.
func runBench(t *T, r harness.Runner, layout cpuLayout) *serverReport {
	n, k := *benchUsers, *benchContacts
	rep := &serverReport{Name: r.Name, Users: n, Contacts: k, ScanUsers: *benchScan}
	ctx := context.Background()

	backend := harness.NewBackend(t)
	if *benchRounds > 0 {
		mainPhases(t, ctx, r, rep, backend)
	}

	// ejabberd: what its Erlang node does during populate, and the same
	// populates with schedulers that do not busy-wait. The blaster uses the
	// window found best above (32, the usual best, without -rounds).
	if *benchInside > 0 && r.Name == "ejabberd" {
		rep.InsideUsers = *benchInside
		rep.Inside = insideEjabberd(t, ctx, r, backend, *benchInside, k, cmp.Or(rep.Limit.Window, 32), benchSidecarOptions(*benchConc, *benchWindow), layout)
	}

	window := cmp.Or(rep.Limit.Window, 16)
	if *benchSharedRounds > 0 && len(layout.Server) > 0 {
		rep.Shared = sharedCPURounds(t, ctx, r, backend, n, k, window, *benchSharedRounds, layout)
	}
	if *benchScale != "" {
		rep.Scale = scalingCurve(t, ctx, r, backend, window)
	}
	if *benchLarge > 0 && r.Name == "prosody" {
		rep.Large = largeRosterRuns(t, ctx, r, backend)
	}

	if *benchCycles > 0 {
		rep.Cycles = tuneCycles(t, ctx, r, backend, parseTune(t, *benchTune), *benchCycles)
		return rep
	}

	// 4. Other sidecar settings, each on a fresh server.
	for _, tu := range parseTune(t, *benchTune) {
		set := newBenchSet("tune", *benchTuneN, k)
		if tu.Blaster {
			srv := freshServer(t, r, set)
			comp := dialBlaster(t, ctx, srv)
			ids := 0
			stopBurn := burn(tu.Burn)
			b := blastRunFlush(t, ctx, comp, srv, set.populateStanzas(srv.ComponentDomain, &ids), tu.Window, tu.Direct)
			stopBurn()
			u := blastRunFlush(t, ctx, comp, srv, set.updateStanzas(set.mutate(), srv.ComponentDomain, &ids), tu.Window, tu.Direct)
			comp.close()
			srv.Process.Stop(time.Minute)
			asPhase := func(b blastPhase) phase {
				p := phase{Users: len(set.users), Items: b.Items, Wall: b.Wall, CPU: cpuUse{Procs: []float64{b.CPU.Procs[0], 0}, Self: b.CPU.Self, Other: b.CPU.Other}}
				p.Sent.RosterSet = int64(b.Items)
				return p
			}
			tu.Run, tu.Update = asPhase(b), asPhase(u)
		} else {
			srv := freshServer(t, r, set)
			set.serve(backend)
			o := benchSidecarOptions(tu.Concurrency, tu.Window)
			o.Env = append(o.Env, tu.Env...)
			if tu.Binary != "" {
				o.Binary = tu.Binary
			}
			var sc *harness.Sidecar
			var ref *refresher
			var proxy *iqProxy
			if tu.Direct { // the proxy is there for sidecarRun, and carries nothing
				var err error
				if proxy, err = startIQProxy(srv.ComponentAddr); err != nil {
					t.Fatal(err)
				}
				sc = harness.StartSidecar(t, srv, backend, o)
				ref = newRefresher(sc.Admin.BaseURL, o.Token)
			} else {
				sc, proxy, ref = startBenchSidecar(t, srv, backend, o)
			}
			tu.Run = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
			tu.Run.Items = tu.Run.Totals.Added
			expectTotals(t, "tuning populate", tu.Run, set.items(), 0, 0)
			set.mutate()
			set.serve(backend)
			tu.Update = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
			tu.Update.Items = tu.Update.Totals.Added + tu.Update.Totals.Updated + tu.Update.Totals.Removed
			sc.Stop(30 * time.Second)
			proxy.Close()
			srv.Process.Stop(time.Minute)
		}
		rep.Tune = append(rep.Tune, tu)
		t.Logf("%s: tuning %s: populate %.0f items/s (server CPU %.2f), update %.0f items/s (server CPU %.2f)", r.Name, tu.Spec,
			tu.Run.itemsPerSec(), tu.Run.CPU.Procs[0], tu.Update.itemsPerSec(), tu.Update.CPU.Procs[0])
	}

	// 5. ejabberd's own HTTP API against the sidecar at equal concurrency,
	// each on a fresh server.
	if r.Name == "ejabberd" {
		for _, c := range parseInts(t, *benchAPIConc) {
			rep.API = append(rep.API, apiTrialRun(t, ctx, r, backend, c))
		}
	}
	return rep
}

// cycleResult is what one -tune entry did over the cycles.
type cycleResult struct {
	Spec             string
	Populate, Update []float64 // items/s per cycle
	ServerCPU        []float64 // during populate
}

// tuneCycles runs every entry of tunes, in turn, cycles times on one
// server, each run populating and updating a fresh set of users.
func tuneCycles(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, tunes []tuneRun, cycles int) []cycleResult {
	t.Helper()
	k := *benchContacts
	sets := make([][]*benchSet, cycles)
	var all []*benchSet
	for c := range cycles {
		for i := range tunes {
			s := newBenchSet("c"+strconv.Itoa(c)+"t"+strconv.Itoa(i)+"u", *benchTuneN, k)
			s.serve(backend)
			sets[c] = append(sets[c], s)
			all = append(all, s)
		}
	}
	srv := freshServer(t, r, all...)
	defer srv.Process.Stop(time.Minute)
	res := make([]cycleResult, len(tunes))
	for c := range cycles {
		for i, tu := range tunes {
			set := sets[c][i]
			var pop, upd phase
			readsPerIQ := 0.0 // during populate, toward the server
			var near *iqProxy // the proxy next to the server, if any
			if tu.Blaster {
				target := *srv
				for range tu.Hops { // through proxies, as the sidecar's traffic goes
					p, err := startIQProxy(target.ComponentAddr)
					if err != nil {
						t.Fatal(err)
					}
					defer p.Close()
					target.ComponentAddr = p.Addr()
					if near == nil {
						near = p
					}
				}
				comp := dialBlaster(t, ctx, &target)
				ids := 0
				blastItemNS, blastReadFirst, blastPad = tu.ItemNS, tu.ReadFirst, strings.Repeat("x", tu.Pad)
				st := interleave(set.populateStanzas(srv.ComponentDomain, &ids), k, tu.Interleave)
				blastItemNS, blastReadFirst, blastPad = false, false, ""
				stopBurn := burn(tu.Burn)
				out0 := proxyOut(near)
				b := blastRunFlush(t, ctx, comp, srv, st, tu.Window, tu.Direct)
				stopBurn()
				readsPerIQ = perIQ(proxyOut(near).sub(out0))
				u := blastRun(t, ctx, comp, srv, set.updateStanzas(set.mutate(), srv.ComponentDomain, &ids), tu.Window)
				comp.close()
				pop = phase{Items: b.Items, Wall: b.Wall, CPU: b.CPU}
				pop.CPU.Procs = []float64{b.CPU.Procs[0], 0}
				upd = phase{Items: u.Items, Wall: u.Wall}
			} else {
				o := benchSidecarOptions(tu.Concurrency, tu.Window)
				o.Env = append(o.Env, tu.Env...)
				if tu.Binary != "" {
					o.Binary = tu.Binary
				}
				sc, proxy, ref := startBenchSidecar(t, srv, backend, o)
				out0 := proxyOut(proxy)
				pop = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
				readsPerIQ = perIQ(proxyOut(proxy).sub(out0))
				pop.Items = pop.Totals.Added
				expectTotals(t, "tuning populate", pop, set.items(), 0, 0)
				set.mutate()
				set.serve(backend)
				upd = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
				upd.Items = upd.Totals.Added + upd.Totals.Updated + upd.Totals.Removed
				sc.Stop(30 * time.Second)
				proxy.Close()
			}
			res[i].Spec = tu.Spec
			res[i].Populate = append(res[i].Populate, pop.itemsPerSec())
			res[i].Update = append(res[i].Update, upd.itemsPerSec())
			res[i].ServerCPU = append(res[i].ServerCPU, pop.CPU.Procs[0])
			t.Logf("%s: cycle %d: %s: populate %.0f items/s (server CPU %.2f, preempted %.0f/s, waited %.0f/s; %.1f IQs in flight; %.2f reads per IQ; sidecar %.0f µs CPU per item), update %.0f items/s", r.Name, c+1, tu.Spec,
				pop.itemsPerSec(), pop.CPU.Procs[0], pop.CPU.ServerPreempted, pop.CPU.ServerWaited, pop.InFlight, readsPerIQ, pop.cpuPerItem()*1e6, upd.itemsPerSec())
		}
	}
	return res
}

// mainPhases measures the server limit and the sidecar (rounds, no-op,
// latency, memory).
func mainPhases(t *T, ctx context.Context, r harness.Runner, rep *serverReport, backend *harness.Backend) {
	n, k := rep.Users, rep.Contacts
	// 1. The server limit, with no sidecar connected: Prosody refuses a
	// second connection for the same component JID, and on ejabberd closing
	// the blaster's connection would take the sidecar's privileges away.
	windows := parseInts(t, *benchWindows)
	scan := make([]*benchSet, len(windows))
	for i, w := range windows {
		scan[i] = newBenchSet("w"+strconv.Itoa(w)+"u", *benchScan, k)
	}
	srv := freshServer(t, r, scan...)
	comp := dialBlaster(t, ctx, srv)
	ids := 0
	var ranked []blastPhase
	for i, w := range windows {
		res := blastRun(t, ctx, comp, srv, scan[i].populateStanzas(srv.ComponentDomain, &ids), w)
		rep.Windows = append(rep.Windows, res)
		ranked = append(ranked, res)
		t.Logf("%s: blaster window %d: %d items in %v: %.0f items/s (errors %d)", r.Name, w, res.Items, res.Wall.Round(time.Millisecond), res.Rate(), res.Errors)
	}
	comp.close()
	srv.Process.Stop(time.Minute)
	slices.SortFunc(ranked, func(a, b blastPhase) int { return cmpFloat(b.Rate(), a.Rate()) })

	// 2. Rounds: the blaster and the sidecar alternately populate and
	// update N users on a fresh server each time. In the first round the
	// two best windows of the scan both run on N users; the faster one is
	// used from then on.
	window := ranked[0].Window
	opts := benchSidecarOptions(*benchConc, *benchWindow)
	var pprofAddr string
	if *benchPprof != "" {
		pprofAddr = "127.0.0.1:" + strconv.Itoa(harness.FreePorts(t, 1)[0])
		opts.Env = append(opts.Env, "ROSTER_SIDECAR_PPROF_LISTEN="+pprofAddr)
	}
	rep.Concurrency, rep.Window = settingOrDefault(*benchConc), settingOrDefault(*benchWindow)
	var (
		popSet *benchSet
		sc     *harness.Sidecar
		proxy  *iqProxy
		ref    *refresher
	)
	rounds := max(1, *benchRounds)
	for round := range rounds {
		candidates := []int{window}
		if round == 0 && len(ranked) > 1 {
			candidates = append(candidates, ranked[1].Window)
		}
		var best blastRound
		for i, w := range candidates {
			br := blasterRound(t, ctx, r, n, k, w)
			t.Logf("%s: round %d: blaster window %d: populate %.0f items/s, update %.0f items/s, %.0f roster GETs/s",
				r.Name, round+1, w, br.Populate.Rate(), br.Update.Rate(), br.Get.Rate())
			if i == 0 || br.Populate.Rate() > best.Populate.Rate() {
				best, window = br, w
			}
		}
		rep.LimitRounds = append(rep.LimitRounds, best)

		popSet = newBenchSet("pop", n, k)
		srv = freshServer(t, r, popSet)
		popSet.serve(backend)
		sc, proxy, ref = startBenchSidecar(t, srv, backend, opts)
		var sr sidecarRound
		// populate, profiled in the last round
		var profDone chan error
		if pprofAddr != "" && round == rounds-1 {
			secs := max(1, int(0.8*float64(popSet.items())/best.Populate.Rate()))
			profDone = make(chan error, 1)
			go func() {
				profDone <- fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs),
					filepath.Join(*benchPprof, r.Name+"-populate-cpu.pprof"))
			}()
		}
		sr.Populate = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
		sr.Populate.Items = sr.Populate.Totals.Added
		expectTotals(t, "populate", sr.Populate, popSet.items(), 0, 0)
		if profDone != nil {
			if err := <-profDone; err != nil {
				t.Errorf("cpu profile: %v", err)
			}
			if err := fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/allocs", filepath.Join(*benchPprof, r.Name+"-populate-allocs.pprof")); err != nil {
				t.Errorf("allocs profile: %v", err)
			}
		}
		// update
		plans := popSet.mutate()
		popSet.serve(backend)
		var adds, renames, removes int
		for _, p := range plans {
			adds, renames, removes = adds+len(p.added), renames+len(p.renamed), removes+len(p.removed)
		}
		sr.Update = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
		sr.Update.Items = sr.Update.Totals.Added + sr.Update.Totals.Updated + sr.Update.Totals.Removed
		expectTotals(t, "update", sr.Update, adds, renames, removes)
		rep.SidecarRounds = append(rep.SidecarRounds, sr)
		t.Logf("%s: round %d: sidecar: populate %.0f items/s (%.0f users/s), update %.0f items/s", r.Name, round+1,
			sr.Populate.itemsPerSec(), sr.Populate.usersPerSec(), sr.Update.itemsPerSec())
		if round < rounds-1 { // the last round's sidecar and server stay for the rest
			sc.Stop(30 * time.Second)
			srv.Process.Stop(time.Minute)
		}
	}
	rep.Limit = medianBy(rep.LimitRounds, func(b blastRound) float64 { return b.Populate.Rate() }).Populate
	rep.LimitUpdate = medianBy(rep.LimitRounds, func(b blastRound) float64 { return b.Update.Rate() }).Update
	rep.LimitGet = medianBy(rep.LimitRounds, func(b blastRound) float64 { return b.Get.Rate() }).Get
	rep.Populate = medianBy(rep.SidecarRounds, func(s sidecarRound) float64 { return s.Populate.itemsPerSec() }).Populate
	rep.Update = medianBy(rep.SidecarRounds, func(s sidecarRound) float64 { return s.Update.itemsPerSec() }).Update
	t.Logf("%s: medians: populate %.2f of the limit, update %.2f", r.Name, rep.Populate.itemsPerSec()/rep.Limit.Rate(), rep.Update.itemsPerSec()/rep.LimitUpdate.Rate())

	// 3. On the last round's server and sidecar: no-op, latency, memory.
	before := len(backend.Requests(""))
	rep.NoOp = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
	expectTotals(t, "no-op", rep.NoOp, 0, 0, 0)
	rep.NoOpPerUser = perUserFetches(backend.Requests("")[before:], popSet.users)
	if rep.NoOp.Sent.RosterSet != 0 || rep.NoOp.Sent.RosterGet != int64(n) || rep.NoOpPerUser != "" {
		t.Errorf("no-op refresh of %d users: %d roster GETs, %d SETs, backend: %s", n, rep.NoOp.Sent.RosterGet, rep.NoOp.Sent.RosterSet, rep.NoOpPerUser)
	}
	t.Logf("%s: no-op: %.0f users/s; %d GET, %d SET, %d fetches", r.Name, rep.NoOp.usersPerSec(), rep.NoOp.Sent.RosterGet, rep.NoOp.Sent.RosterSet, rep.NoOp.Fetches)

	// The no-op again with a backend that sends validators and answers a
	// conditional request 304: one refresh to learn them, then measured.
	popSet.serveConditional(backend)
	learn := sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
	expectTotals(t, "no-op learning validators", learn, 0, 0, 0)
	before = len(backend.Requests(""))
	rep.NoOpCond = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, popSet.users, *benchBatch, *benchParallel)
	expectTotals(t, "conditional no-op", rep.NoOpCond, 0, 0, 0)
	for _, req := range backend.Requests("")[before:] {
		if req.Status == http.StatusNotModified {
			rep.NoOpCond304++
		}
	}
	if rep.NoOpCond.Sent.RosterSet != 0 || rep.NoOpCond304 != n {
		t.Errorf("conditional no-op refresh of %d users: %d answered 304, %d SETs", n, rep.NoOpCond304, rep.NoOpCond.Sent.RosterSet)
	}
	t.Logf("%s: conditional no-op: %.0f users/s; %d GET, %d SET, %d fetches (%d answered 304)", r.Name, rep.NoOpCond.usersPerSec(),
		rep.NoOpCond.Sent.RosterGet, rep.NoOpCond.Sent.RosterSet, rep.NoOpCond.Fetches, rep.NoOpCond304)

	// latency
	rep.Latency = measureLatency(t, ctx, ref, backend, popSet, *benchLatency)
	t.Logf("%s: latency of a %d-contact change: p50 %v p99 %v", r.Name, rep.Latency.Changed, rep.Latency.P50, rep.Latency.P99)

	// memory
	pid := sc.Pid()
	rep.Mem.HWMBefore, _ = procStatus(pid, "VmHWM")
	if *benchBig > 0 {
		bigSet := newBenchSet("big", *benchBig, *benchBigK)
		if r.Name == "prosody" {
			// ejabberd stores rosters of users that do not exist, and
			// creating 10,000 accounts there takes a minute of hashing.
			srv.CreateUsers(t, bigSet.users...)
		}
		bigSet.serve(backend)
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
		// the no-op repeats, profiled as populate is: there the sidecar,
		// not the server, is the bound
		var noopProf chan error
		if pprofAddr != "" && *benchRepeats > 0 {
			noopProf = make(chan error, 1)
			go func() {
				noopProf <- fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds=2",
					filepath.Join(*benchPprof, r.Name+"-noop-cpu.pprof"))
			}()
		}
		for range *benchRepeats {
			p := sidecarRun(t, ctx, ref, proxy, backend, srv, sc, bigSet.users, len(bigSet.users), 1)
			expectTotals(t, "memory repeat", p, 0, 0, 0)
			rep.Mem.Repeats = append(rep.Mem.Repeats, p)
			sample()
		}
		if noopProf != nil {
			if err := <-noopProf; err != nil {
				t.Errorf("no-op cpu profile: %v", err)
			}
		}
		t.Logf("%s: memory: VmHWM %d KiB before, %d KiB after %d users in one request; VmRSS after each run %v KiB",
			r.Name, rep.Mem.HWMBefore, rep.Mem.HWMFirst, len(bigSet.users), rep.Mem.RSSAfter)
	}
	sc.Alive(t)
	sc.Stop(30 * time.Second)
	srv.Process.Stop(time.Minute)

	// The limit again, with the CPU the sidecar (and the benchmark's
	// backend and proxy) used during populate taken by a busy loop: on a
	// small machine the sidecar competes with the server for the cores.
	if *benchBurn {
		share := rep.Populate.CPU.Procs[1] + rep.Populate.CPU.Self
		br := blasterRoundWith(t, ctx, r, n, k, window, share, 0)
		rep.LimitBurn, rep.BurnCores = br.Populate, share
		t.Logf("%s: blaster populate with %.2f cores busy elsewhere: %.0f items/s", r.Name, share, br.Populate.Rate())
	}
	// The limit again, with the order of concurrent syncs: users taking
	// turns item by item, about as many IQs in flight as the sidecar had.
	if g := *benchInterleave; g > 1 {
		w := max(1, int(rep.Populate.InFlight+0.5))
		br := blasterRoundWith(t, ctx, r, n, k, w, 0, g)
		rep.LimitInterleaved, rep.Interleave = br.Populate, g
		t.Logf("%s: blaster populate, %d users taking turns, window %d: %.0f items/s", r.Name, g, w, br.Populate.Rate())
	}

}

// blasterRound populates n users with k contacts each on a fresh server,
// applies the update, then reads every roster once.
func blasterRound(t *T, ctx context.Context, r harness.Runner, n, k, window int) blastRound {
	t.Helper()
	return blasterRoundWith(t, ctx, r, n, k, window, 0, 0)
}

// blasterRoundWith is blasterRound with, during the populate, a busy loop
// using burnCores of CPU in the benchmark process, and users taking turns
// item by item in groups of interleave (see interleave).
func blasterRoundWith(t *T, ctx context.Context, r harness.Runner, n, k, window int, burnCores float64, interleaved int) blastRound {
	t.Helper()
	set := newBenchSet("lim", n, k)
	srv := freshServer(t, r, set)
	defer srv.Process.Stop(time.Minute)
	comp := dialBlaster(t, ctx, srv)
	defer comp.close()
	ids := 0
	var br blastRound
	stop := burn(burnCores)
	br.Populate = blastRun(t, ctx, comp, srv, interleave(set.populateStanzas(srv.ComponentDomain, &ids), k, interleaved), window)
	stop()
	plans := set.mutate()
	br.Update = blastRun(t, ctx, comp, srv, set.updateStanzas(plans, srv.ComponentDomain, &ids), window)
	br.Get = blastRun(t, ctx, comp, srv, set.getStanzas(srv.ComponentDomain, &ids), window)
	return br
}

// medianBy returns the element of xs with the median value of f (the
// lower middle one for an even count).
func medianBy[T any](xs []T, f func(T) float64) T {
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b T) int { return cmpFloat(f(a), f(b)) })
	return s[(len(s)-1)/2]
}

// freshServer starts a server of kind r and creates the users of sets. The
// benchmark measures the XEP-0356 path item by item, against the
// blaster's: without Prosody's helper, whose batch requests would bypass
// both (the scaling curve measures the helper on its own, startServer).
func freshServer(t *T, r harness.Runner, sets ...*benchSet) *harness.Server {
	t.Helper()
	return startServer(t, r, false, sets...)
}

// dialBlaster connects the blaster to srv's component port, and checks
// with a roster GET that the server answers it (see rawComponent.probe).
func dialBlaster(t *T, ctx context.Context, srv *harness.Server) *rawComponent {
	t.Helper()
	var err error
	for try := range 3 {
		if try > 0 {
			time.Sleep(time.Second)
		}
		var comp *rawComponent
		comp, err = dialComponent(ctx, srv.ComponentAddr, srv.ComponentDomain, srv.ComponentSecret)
		if err != nil {
			continue
		}
		if err = comp.probe(ctx, srv.ComponentDomain, "probe@"+srv.Domain); err == nil {
			return comp
		}
		t.Logf("blaster: no answer to a probe, reconnecting: %v", err)
		comp.close()
	}
	t.Fatalf("blaster: %v", err)
	return nil
}

// startBenchSidecar starts a sidecar connected to srv through a new
// counting proxy, and a client of its admin API.
func startBenchSidecar(t *T, srv *harness.Server, backend *harness.Backend, opts harness.SidecarOptions) (*harness.Sidecar, *iqProxy, *refresher) {
	t.Helper()
	proxy, err := startIQProxy(srv.ComponentAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	via := *srv
	via.ComponentAddr = proxy.Addr()
	sc := harness.StartSidecar(t, &via, backend, opts)
	return sc, proxy, newRefresher(sc.Admin.BaseURL, opts.Token)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func settingOrDefault(v int) string {
	if v == 0 {
		return "default"
	}
	return strconv.Itoa(v)
}

// benchSidecarOptions are the sidecar's settings in the benchmark: its
// defaults except where a flag says otherwise, generous timeouts, info logs.
func benchSidecarOptions(concurrency, window int) harness.SidecarOptions {
	o := harness.SidecarOptions{
		Binary:         sidecarBinary,
		Token:          benchToken,
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

// blastRun runs one blast and fails the step on errors.
func blastRun(t *T, ctx context.Context, comp *rawComponent, srv *harness.Server, stanzas [][]byte, window int) blastPhase {
	t.Helper()
	return blastRunFlush(t, ctx, comp, srv, stanzas, window, false)
}

// blastRunFlush is blastRun; with each every stanza has its own write.
func blastRunFlush(t *T, ctx context.Context, comp *rawComponent, srv *harness.Server, stanzas [][]byte, window int, each bool) blastPhase {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	m := startCPU(srv.Process)
	res, err := comp.blastFlush(ctx, stanzas, window, each)
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
func sidecarRun(t *T, ctx context.Context, ref *refresher, proxy *iqProxy, backend *harness.Backend, srv *harness.Server, sc *harness.Sidecar, users []string, batch, parallel int) phase {
	t.Helper()
	sent0, got0 := proxy.Counts()
	fetch0 := len(backend.Requests(""))
	m := startCPU(srv.Process, sc.Process)
	start := time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan float64, 1)
	go func() { // average of the IQs in flight, sampled every 10 ms
		var sum float64
		var n int
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				sampled <- sum / float64(max(1, n))
				return
			case <-tick.C:
				out, in := proxy.Counts()
				sum += float64(out.RosterGet + out.RosterSet + out.OtherIQ - in.Result - in.Error)
				n++
			}
		}
	}()
	tot, err := ref.all(ctx, users, batch, parallel)
	wall := time.Since(start)
	cpu := m.stop()
	close(stopSampling)
	inFlight := <-sampled
	if err != nil {
		t.Fatal(err)
	}
	sent, got := proxy.Counts()
	return phase{Users: len(users), Wall: wall, CPU: cpu, Sent: sent.sub(sent0), Got: got.sub(got0),
		Fetches: len(backend.Requests("")) - fetch0, Totals: *tot, InFlight: inFlight}
}

// expectTotals fails the step unless every user succeeded with exactly
// these changes.
func expectTotals(t *T, what string, p phase, added, updated, removed int) {
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
func perUserFetches(reqs []harness.BackendRequest, users []string) string {
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
func measureLatency(t *T, ctx context.Context, ref *refresher, backend *harness.Backend, s *benchSet, n int) latency {
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
		backend.Set(s.users[u], harness.Reply{Body: harness.EncodeRoster(s.rosters[u])})
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

// apiTrialRun writes a set through ejabberd's add_rosteritem with c calls
// in flight, and the same set through a sidecar with c SETs in flight
// (admin.concurrency c, xmpp.window 1), each on a fresh server.
func apiTrialRun(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, c int) apiTrial {
	t.Helper()
	tr := apiTrial{Concurrency: c}
	set := newBenchSet("api", *benchAPIUsers, *benchContacts)
	srv := freshServer(t, r, set)
	api := newEjabberdAPI(srv)
	m := startCPU(srv.Process)
	start := time.Now()
	n, err := api.addRosterItems(ctx, set, c)
	tr.API = phase{Users: len(set.users), Items: n, Wall: time.Since(start), CPU: m.stop()}
	srv.Process.Stop(time.Minute)
	if err != nil {
		tr.APIErr = err.Error()
		t.Errorf("ejabberd API at %d in flight: %v", c, err)
	}
	t.Logf("ejabberd API, %d calls in flight: %d items in %v: %.0f items/s", c, n, tr.API.Wall.Round(time.Millisecond), tr.API.itemsPerSec())

	srv = freshServer(t, r, set)
	set.serve(backend)
	sc, proxy, ref := startBenchSidecar(t, srv, backend, benchSidecarOptions(c, 1))
	tr.Sidecar = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
	tr.Sidecar.Items = tr.Sidecar.Totals.Added
	expectTotals(t, "equal-concurrency populate", tr.Sidecar, set.items(), 0, 0)
	sc.Stop(30 * time.Second)
	srv.Process.Stop(time.Minute)
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

// burn keeps a goroutine busy for the given share of one core (in 10 ms
// slices) until the returned function is called.
func burn(cores float64) (stop func()) {
	if cores <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			busyUntil := time.Now().Add(time.Duration(cores * float64(10*time.Millisecond)))
			for time.Now().Before(busyUntil) {
			}
			select {
			case <-done:
				return
			case <-time.After(time.Duration((1 - cores) * float64(10*time.Millisecond))):
			}
		}
	}()
	return func() { close(done); <-finished }
}

// proxyOut is what p carried toward the server so far (nothing for nil).
func proxyOut(p *iqProxy) iqCounts {
	if p == nil {
		return iqCounts{}
	}
	out, _ := p.Counts()
	return out
}

// perIQ is the number of reads per IQ in c (0 without IQs).
func perIQ(c iqCounts) float64 {
	n := c.RosterGet + c.RosterSet + c.OtherIQ + c.Result + c.Error
	if n == 0 {
		return 0
	}
	return float64(c.Reads) / float64(n)
}

// parseTune parses the -tune list.
func parseTune(t *T, s string) []tuneRun {
	t.Helper()
	var out []tuneRun
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		tu := tuneRun{Spec: f}
		f, tu.Binary, _ = strings.Cut(f, "@")
		f, extra, _ := strings.Cut(f, "+")
		if w, ok := strings.CutPrefix(f, "b"); ok {
			// bW, or buW: every stanza in its own write; bWpN: through N proxies
			w, tu.ItemNS = strings.CutPrefix(w, "x")
			w, tu.ReadFirst = strings.CutPrefix(w, "g")
			if w2, pad, ok := strings.Cut(w, "l"); ok { // bWlN: N bytes more per name
				n, err := strconv.Atoi(pad)
				if err != nil {
					t.Fatalf("-tune: %q: bad padding", f)
				}
				w, tu.Pad = w2, n
			}
			w, each := strings.CutPrefix(w, "u")
			if w2, g, ok := strings.Cut(w, "i"); ok { // bWiG: G users take turns
				gi, err := strconv.Atoi(g)
				if err != nil {
					t.Fatalf("-tune: %q: bad interleave", f)
				}
				w, tu.Interleave = w2, gi
			}
			if w2, hops, ok := strings.Cut(w, "p"); ok {
				h, err := strconv.Atoi(hops)
				if err != nil {
					t.Fatalf("-tune: %q: bad proxy count", f)
				}
				w, tu.Hops = w2, h
			}
			wi, err := strconv.Atoi(w)
			if err != nil || wi < 1 {
				t.Fatalf("-tune: %q is not bWINDOW or buWINDOW", f)
			}
			tu.Blaster, tu.Window, tu.Direct = true, wi, each
			if extra != "" {
				if tu.Burn, err = strconv.ParseFloat(extra, 64); err != nil {
					t.Fatalf("-tune: %q: +%s is not a number of cores", f, extra)
				}
			}
			out = append(out, tu)
			continue
		}
		spec, direct := strings.CutSuffix(f, "d")
		c, w, ok := strings.Cut(spec, "x")
		ci, err1 := strconv.Atoi(c)
		wi, err2 := strconv.Atoi(w)
		if !ok || err1 != nil || err2 != nil || ci < 1 || wi < 1 {
			t.Fatalf("-tune: %q is not CONCURRENCYxWINDOW", f)
		}
		tu.Direct, tu.Concurrency, tu.Window = direct, ci, wi
		if extra != "" {
			tu.Env = strings.Split(extra, "+")
		}
		out = append(out, tu)
	}
	return out
}

func parseInts(t *T, s string) []int {
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
