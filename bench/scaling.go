package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"roster-sidecar/e2e/harness"
)

// The settings of the shared-CPU rounds, the scaling curve and the large
// roster (see the package documentation).
var (
	benchSharedRounds = flag.Int("sharedrounds", 3, "populate rounds of the blaster and of the sidecar with every process on every CPU (a sidecar next to its server on a small VM), each on a fresh server; 0 skips them (so does -servercpus=none, whose main rounds are already shared)")
	benchScale        = flag.String("scale", "20,200,1000,5000", "contacts per user of the scaling curve: populate and update by the blaster and by the sidecar item by item (and on Prosody through its helper's batch requests) at each; empty skips it")
	benchScaleItems   = flag.Int("scaleitems", 5000, "roster items per point of the scaling curve: users = items / contacts, at least 1")
	benchLarge        = flag.Int("large", 6000, "Prosody: contacts of ONE user populated from empty in one refresh, item by item and through the helper, with the sidecar's default sync.timeout; 0 skips it")
	benchChart        = flag.String("chart", "", "write the scaling curve as an SVG chart into this file")
)

// sharedRound is a blaster populate and a sidecar populate, each on a
// fresh server, with every process sharing every CPU.
type sharedRound struct {
	Blaster blastPhase
	Sidecar phase
}

// sharedCPURounds runs rounds shared rounds of n users with k contacts,
// the blaster with window. It puts layout back in place before it returns.
func sharedCPURounds(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, n, k, window, rounds int, layout cpuLayout) []sharedRound {
	t.Helper()
	if err := layout.shared().apply(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := layout.apply(); err != nil {
			t.Fatal(err)
		}
	}()
	var out []sharedRound
	for i := range rounds {
		var sr sharedRound
		set := newBenchSet("shb"+strconv.Itoa(i)+"u", n, k)
		srv := freshServer(t, r, set)
		comp := dialBlaster(t, ctx, srv)
		ids := 0
		sr.Blaster = blastRun(t, ctx, comp, srv, set.populateStanzas(srv.ComponentDomain, &ids), window)
		comp.close()
		srv.Process.Stop(time.Minute)

		set = newBenchSet("shs"+strconv.Itoa(i)+"u", n, k)
		sr.Sidecar = populateOnce(t, ctx, r, backend, set, benchSidecarOptions(*benchConc, *benchWindow), false)
		out = append(out, sr)
		t.Logf("%s: shared CPUs, round %d: blaster %.0f items/s (server CPU %.2f), sidecar %.0f items/s (server CPU %.2f, sidecar %.0f µs per item): %.2f",
			r.Name, i+1, sr.Blaster.Rate(), sr.Blaster.CPU.Procs[0], sr.Sidecar.itemsPerSec(), sr.Sidecar.CPU.Procs[0], sr.Sidecar.cpuPerItem()*1e6,
			sr.Sidecar.itemsPerSec()/sr.Blaster.Rate())
	}
	return out
}

// populateOnce populates set through a new sidecar on a fresh server (with
// Prosody's helper when helper is set) and returns the measured run.
func populateOnce(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, set *benchSet, opts harness.SidecarOptions, helper bool) phase {
	t.Helper()
	set.serve(backend)
	srv := startServer(t, r, helper, set)
	defer srv.Process.Stop(time.Minute)
	sc, proxy, ref := startBenchSidecar(t, srv, backend, opts)
	defer proxy.Close()
	defer sc.Stop(30 * time.Second)
	p := sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
	p.Items = p.Totals.Added
	expectTotals(t, "populate", p, set.items(), 0, 0)
	return p
}

// scalePoint is one point of the scaling curve: Users users with Contacts
// contacts each, populated and updated by the blaster, by the sidecar
// item by item and (Prosody) by the sidecar through the helper.
type scalePoint struct {
	Contacts, Users int
	Blaster         blastRound
	PerItem         sidecarRound
	Helper          sidecarRound // zero when the server has no helper
}

// scalingCurve measures every point of -scale, each run on a fresh server.
func scalingCurve(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, window int) []scalePoint {
	t.Helper()
	var out []scalePoint
	for _, k := range parseInts(t, *benchScale) {
		n := max(1, *benchScaleItems/k)
		pt := scalePoint{Contacts: k, Users: n}
		pt.Blaster = blasterRoundWith(t, ctx, r, n, k, window, 0, 0)
		pt.PerItem = populateAndUpdate(t, ctx, r, backend, newBenchSet("sc"+strconv.Itoa(k)+"u", n, k), false)
		if r.Name == "prosody" {
			pt.Helper = populateAndUpdate(t, ctx, r, backend, newBenchSet("sh"+strconv.Itoa(k)+"u", n, k), true)
		}
		t.Logf("%s: scaling %d contacts × %d users: populate blaster %.0f, sidecar %.0f items/s; update blaster %.0f, sidecar %.0f items/s",
			r.Name, k, n, pt.Blaster.Populate.Rate(), pt.PerItem.Populate.itemsPerSec(), pt.Blaster.Update.Rate(), pt.PerItem.Update.itemsPerSec())
		if pt.Helper.Populate.Items > 0 {
			t.Logf("%s: scaling %d contacts × %d users through the helper: populate %.0f items/s, update %.0f items/s",
				r.Name, k, n, pt.Helper.Populate.itemsPerSec(), pt.Helper.Update.itemsPerSec())
		}
		out = append(out, pt)
	}
	return out
}

// populateAndUpdate populates set from empty and then applies the 10%
// update, through one new sidecar on a fresh server.
func populateAndUpdate(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, set *benchSet, helper bool) sidecarRound {
	t.Helper()
	set.serve(backend)
	srv := startServer(t, r, helper, set)
	defer srv.Process.Stop(time.Minute)
	sc, proxy, ref := startBenchSidecar(t, srv, backend, benchSidecarOptions(*benchConc, *benchWindow))
	defer proxy.Close()
	defer sc.Stop(30 * time.Second)
	var sr sidecarRound
	sr.Populate = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
	sr.Populate.Items = sr.Populate.Totals.Added
	expectTotals(t, "scaling populate", sr.Populate, set.items(), 0, 0)
	var adds, renames, removes int
	for _, p := range set.mutate() {
		adds, renames, removes = adds+len(p.added), renames+len(p.renamed), removes+len(p.removed)
	}
	set.serve(backend)
	sr.Update = sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
	sr.Update.Items = sr.Update.Totals.Added + sr.Update.Totals.Updated + sr.Update.Totals.Removed
	expectTotals(t, "scaling update", sr.Update, adds, renames, removes)
	return sr
}

// largeRoster is one user's roster populated from empty in one refresh.
type largeRoster struct {
	Contacts        int
	PerItem, Helper phase
}

// largeRosterRuns populates one user with -large contacts on Prosody, item
// by item and through the helper, with the sidecar's default sync.timeout:
// one refresh must bring the whole roster in.
func largeRosterRuns(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend) largeRoster {
	t.Helper()
	k := *benchLarge
	lr := largeRoster{Contacts: k}
	opts := benchSidecarOptions(*benchConc, *benchWindow)
	opts.Env = withoutEnv(opts.Env, "ROSTER_SIDECAR_SYNC_TIMEOUT")
	for _, helper := range []bool{false, true} {
		set := newBenchSet("lg"+strconv.FormatBool(helper)+"u", 1, k)
		p := populateOnce(t, ctx, r, backend, set, opts, helper)
		if helper {
			lr.Helper = p
		} else {
			lr.PerItem = p
		}
		t.Logf("%s: one user, %d contacts, helper %v: %v (%.0f items/s)", r.Name, k, helper, p.Wall.Round(time.Millisecond), p.itemsPerSec())
	}
	return lr
}

// withoutEnv drops the variable name from env.
func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// startServer starts a fresh server of kind r, on Prosody with the
// sidecar's helper module when helper is set, and creates the users of
// sets.
func startServer(t *T, r harness.Runner, helper bool, sets ...*benchSet) *harness.Server {
	t.Helper()
	r.Options.CPUs = serverCPUs
	r.Options.ProsodyNoHelper = !helper
	srv := r.Start(t)
	var users []string
	for _, s := range sets {
		users = append(users, s.users...)
	}
	srv.CreateUsers(t, users...)
	return srv
}

// sharedTable writes the shared-CPU rounds.
func (r *serverReport) sharedTable(b *strings.Builder) {
	if len(r.Shared) == 0 {
		return
	}
	var bl, sc, ratios []float64
	for _, s := range r.Shared {
		bl, sc = append(bl, s.Blaster.Rate()), append(sc, s.Sidecar.itemsPerSec())
		ratios = append(ratios, s.Sidecar.itemsPerSec()/s.Blaster.Rate())
	}
	med := medianBy(r.Shared, func(s sharedRound) float64 { return s.Sidecar.itemsPerSec() })
	medB := medianBy(r.Shared, func(s sharedRound) float64 { return s.Blaster.Rate() })
	fmt.Fprintf(b, "Every process on every CPU (no `taskset`: how a sidecar runs next to its server on a small VM), populate of %s users × %d contacts, %d rounds, a fresh server each:\n\n",
		num(float64(r.Users)), r.Contacts, len(r.Shared))
	b.WriteString("| measure | sidecar | server limit (raw blaster) | ratio | target |\n|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| populate, shared CPUs | **%s items/s** (rounds: %s) | %s items/s (window %d; rounds: %s) | **%.2f** (rounds: %s) | ≥ 0.9 |\n",
		num(med.Sidecar.itemsPerSec()), nums(sc), num(medB.Blaster.Rate()), medB.Blaster.Window, nums(bl),
		med.Sidecar.itemsPerSec()/medB.Blaster.Rate(), ratioList(ratios))
	srvPer := serverCPUPerItem(med.Sidecar)
	fmt.Fprintf(b, "| CPU per item written, shared CPUs (sidecar / server) | %s | %s | **%.2f** | ≤ 0.2 |\n",
		micros(med.Sidecar.cpuPerItem()), micros(srvPer), med.Sidecar.cpuPerItem()/srvPer)
	if r.Populate.Items > 0 {
		pinned := serverCPUPerItem(r.Populate)
		fmt.Fprintf(b, "| CPU per item written, the server on its own CPU (main rounds, sidecar / server) | %s | %s | **%.2f** | ≤ 0.2 |\n",
			micros(r.Populate.cpuPerItem()), micros(pinned), r.Populate.cpuPerItem()/pinned)
	}
	b.WriteString("\n")
}

// serverCPUPerItem is the server's CPU seconds per item in a sidecar run.
func serverCPUPerItem(p phase) float64 {
	if p.Items == 0 || len(p.CPU.Procs) == 0 {
		return 0
	}
	return p.CPU.Procs[0] * p.Wall.Seconds() / float64(p.Items)
}

func micros(s float64) string { return fmt.Sprintf("%.0f µs", s*1e6) }

func ratioList(xs []float64) string {
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(out, ", ")
}

// scalingTable writes the scaling curve and the large roster.
func (r *serverReport) scalingTable(b *strings.Builder) {
	if len(r.Scale) > 0 {
		fmt.Fprintf(b, "Scaling: about %s items per point (users = items / contacts), a fresh server per run; items/s and, in brackets, CPU per item written (server / sidecar):\n\n", num(float64(*benchScaleItems)))
		b.WriteString("| contacts per user | users | populate: blaster | sidecar per item | ratio | update: blaster | sidecar per item | ratio |")
		helper := r.Name == "prosody"
		if helper {
			b.WriteString(" populate: helper batch | × per item | update: helper batch |")
		}
		b.WriteString("\n|---|---|---|---|---|---|---|---|")
		if helper {
			b.WriteString("---|---|---|")
		}
		b.WriteString("\n")
		for _, pt := range r.Scale {
			fmt.Fprintf(b, "| %s | %s | %s | %s | **%.2f** | %s | %s | **%.2f** |", num(float64(pt.Contacts)), num(float64(pt.Users)),
				num(pt.Blaster.Populate.Rate()), sidecarCell(pt.PerItem.Populate), pt.PerItem.Populate.itemsPerSec()/pt.Blaster.Populate.Rate(),
				num(pt.Blaster.Update.Rate()), sidecarCell(pt.PerItem.Update), pt.PerItem.Update.itemsPerSec()/pt.Blaster.Update.Rate())
			if helper {
				fmt.Fprintf(b, " %s | **%.1f×** | %s |", sidecarCell(pt.Helper.Populate), pt.Helper.Populate.itemsPerSec()/pt.PerItem.Populate.itemsPerSec(), sidecarCell(pt.Helper.Update))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if lr := r.Large; lr.Contacts > 0 {
		fmt.Fprintf(b, "One user, %s contacts, populated from empty in ONE refresh with the default `sync.timeout`: item by item **%s** (%s items/s); through the helper **%s** (%s items/s): **%.1f×** faster.\n\n",
			num(float64(lr.Contacts)), dur(lr.PerItem.Wall), num(lr.PerItem.itemsPerSec()), dur(lr.Helper.Wall), num(lr.Helper.itemsPerSec()),
			lr.PerItem.Wall.Seconds()/lr.Helper.Wall.Seconds())
	}
}

// sidecarCell is a sidecar run's items/s with the CPU per item of the
// server and of the sidecar.
func sidecarCell(p phase) string {
	return fmt.Sprintf("%s (%s / %s)", num(p.itemsPerSec()), micros(serverCPUPerItem(p)), micros(p.cpuPerItem()))
}
