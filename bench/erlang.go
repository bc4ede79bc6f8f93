package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"roster-sidecar/e2e/harness"
)

// What ejabberd does inside while roster SETs arrive, read from its Erlang
// node by bench/testdata/e2e_probe.erl: how busy its schedulers really are
// (the OS counts their busy waiting as CPU time) and which processes run.

// vmNoBusyWait are erl flags that stop the Erlang schedulers from busy
// waiting for work before they sleep.
const vmNoBusyWait = "+sbwt none +sbwtdcpu none +sbwtdio none"

// erlangUse is what e2e_probe measured over one run.
type erlangUse struct {
	// Schedulers is each normal scheduler's utilisation, 0..1, without
	// busy waiting.
	Schedulers []float64
	// DirtyCPU and DirtyIO are the dirty schedulers' utilisation, summed.
	DirtyCPU, DirtyIO float64
	// Top are the processes that ran most, most first.
	Top []erlangProcess
	// Reductions is the work done by all processes.
	Reductions int64
}

// erlangProcess is one process of the probe's list.
type erlangProcess struct {
	Reductions      int64
	Initial, Inside string // initial call (what it is), current function
}

// erlangProbe is an e2e_probe node attached to a running server.
type erlangProbe struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
	stderr bytes.Buffer
	// deadline kills the node if a measurement outlives probeDeadline.
	deadline *time.Timer
}

// probeDeadline bounds one probe node's life: a populate of the benchmark
// takes seconds.
const probeDeadline = 10 * time.Minute

// compileErlangProbe compiles e2e_probe.erl into a new directory.
func compileErlangProbe(t *T) string {
	t.Helper()
	dir := harness.TempDir(t, "e2e-probe-")
	out, err := exec.Command("erlc", "-o", dir, harness.RepoFile(t, "bench", "testdata", "e2e_probe.erl")).CombinedOutput()
	if err != nil {
		t.Fatalf("erlc e2e_probe.erl: %v\n%s", err, out)
	}
	return dir
}

// attachErlangProbe starts a hidden Erlang node that connects to srv's
// node and waits for start. Starting it costs CPU: do it before a run.
func attachErlangProbe(t *T, srv *harness.Server, beamDir string) *erlangProbe {
	t.Helper()
	n := srv.Erlang
	if n == nil {
		t.Fatalf("%s has no Erlang node to probe", srv.Name)
	}
	p := &erlangProbe{}
	p.cmd = exec.Command("erl", "-sname", "probe"+strconv.Itoa(os.Getpid())+"_"+strconv.Itoa(n.DistPort),
		"-setcookie", n.Cookie, "-hidden", "-noshell",
		"-erl_epmd_port", strconv.Itoa(n.DistPort), "-start_epmd", "false", "-dist_listen", "false",
		"-pa", beamDir, "-run", "e2e_probe", "main", n.Name)
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("erl (e2e_probe): %v", err)
	}
	p.deadline = time.AfterFunc(probeDeadline, func() { _ = p.cmd.Process.Kill() })
	p.out = bufio.NewScanner(stdout)
	p.expect(t, "ready")
	return p
}

// expect reads the probe's next line, which must be want.
func (p *erlangProbe) expect(t *T, want string) {
	t.Helper()
	if !p.out.Scan() || p.out.Text() != want {
		p.deadline.Stop()
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		t.Fatalf("e2e_probe: want %q, got %q (%v)\n%s", want, p.out.Text(), p.out.Err(), p.stderr.String())
	}
}

// start begins the measurement.
func (p *erlangProbe) start(t *T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "start\n"); err != nil {
		t.Fatalf("e2e_probe: %v", err)
	}
	p.expect(t, "started")
}

// stop ends the measurement and the probe node, and returns the figures.
func (p *erlangProbe) stop(t *T) erlangUse {
	t.Helper()
	var u erlangUse
	if _, err := io.WriteString(p.stdin, "stop\n"); err != nil {
		t.Fatalf("e2e_probe: %v", err)
	}
	for p.out.Scan() {
		f := strings.Fields(p.out.Text())
		switch {
		case len(f) == 3 && f[0] == "scheduler":
			v, _ := strconv.ParseFloat(f[2], 64)
			u.Schedulers = append(u.Schedulers, v)
		case len(f) == 2 && f[0] == "dirty_cpu":
			u.DirtyCPU, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "dirty_io":
			u.DirtyIO, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "reductions":
			u.Reductions, _ = strconv.ParseInt(f[1], 10, 64)
		case len(f) == 4 && f[0] == "process":
			r, _ := strconv.ParseInt(f[1], 10, 64)
			u.Top = append(u.Top, erlangProcess{Reductions: r, Initial: f[2], Inside: f[3]})
		}
	}
	p.deadline.Stop()
	if err := p.cmd.Wait(); err != nil || len(u.Schedulers) == 0 {
		t.Fatalf("e2e_probe: %v, %d schedulers read\n%s", err, len(u.Schedulers), p.stderr.String())
	}
	return u
}

// insideRun is one populate measured from inside the server.
type insideRun struct {
	Name   string
	Where  string // CPU layout and VM settings
	Rate   float64
	OSCPU  float64 // the server's CPU time / wall time, as the OS counts it
	Erlang erlangUse
}

// insideVariant is a CPU layout and VM setting the populates run with.
type insideVariant struct {
	Where  string
	Layout cpuLayout
	VM     string // extra erl flags of the server
}

// insideEjabberd populates n users (k contacts) by the blaster and by the
// sidecar, each on a fresh server, measuring each run from inside: with
// the server on CPUs of its own (when layout gives it some), with every
// process on every CPU, and so again with Erlang schedulers that do not
// busy-wait. It puts layout back in place before it returns.
func insideEjabberd(t *T, ctx context.Context, r harness.Runner, backend *harness.Backend, n, k, window int, opts harness.SidecarOptions, layout cpuLayout) []insideRun {
	t.Helper()
	beams := compileErlangProbe(t)
	var variants []insideVariant
	if len(layout.Server) > 0 {
		variants = append(variants, insideVariant{Where: "server on CPU " + cpuList(layout.Server) + " alone", Layout: layout})
	}
	shared := layout.shared()
	variants = append(variants,
		insideVariant{Where: "every process on every CPU", Layout: shared},
		insideVariant{Where: "every process on every CPU, schedulers without busy waiting (`" + vmNoBusyWait + "`)", Layout: shared, VM: vmNoBusyWait})
	defer func() {
		if err := layout.apply(); err != nil {
			t.Fatal(err)
		}
	}()
	var out []insideRun
	for _, v := range variants {
		if err := v.Layout.apply(); err != nil {
			t.Fatal(err)
		}
		rv := r
		rv.Options.ErlOptions = v.VM

		set := newBenchSet("inb"+strconv.Itoa(len(out))+"u", n, k)
		srv := freshServer(t, rv, set)
		comp := dialBlaster(t, ctx, srv)
		ids := 0
		stanzas := set.populateStanzas(srv.ComponentDomain, &ids)
		probe := attachErlangProbe(t, srv, beams)
		probe.start(t)
		b := blastRun(t, ctx, comp, srv, stanzas, window)
		use := probe.stop(t)
		comp.close()
		srv.Process.Stop(time.Minute)
		out = append(out, insideRun{Name: fmt.Sprintf("blaster, window %d", window), Where: v.Where, Rate: b.Rate(), OSCPU: b.CPU.Procs[0], Erlang: use})

		set = newBenchSet("ins"+strconv.Itoa(len(out))+"u", n, k)
		set.serve(backend)
		srv = freshServer(t, rv, set)
		sc, proxy, ref := startBenchSidecar(t, srv, backend, opts)
		probe = attachErlangProbe(t, srv, beams)
		probe.start(t)
		pop := sidecarRun(t, ctx, ref, proxy, backend, srv, sc, set.users, *benchBatch, *benchParallel)
		use = probe.stop(t)
		pop.Items = pop.Totals.Added
		expectTotals(t, "populate measured from inside", pop, set.items(), 0, 0)
		sc.Stop(30 * time.Second)
		proxy.Close()
		srv.Process.Stop(time.Minute)
		out = append(out, insideRun{Name: "sidecar", Where: v.Where, Rate: pop.itemsPerSec(), OSCPU: pop.CPU.Procs[0], Erlang: use})
		for _, ir := range out[len(out)-2:] {
			t.Logf("%s: inside (%s): %s: %.0f items/s, OS CPU %.2f, schedulers %v, dirty IO %.2f, top %v", r.Name, v.Where, ir.Name, ir.Rate, ir.OSCPU, ir.Erlang.Schedulers, ir.Erlang.DirtyIO, ir.Erlang.Top)
		}
	}
	return out
}

// insideTable writes the runs measured from inside ejabberd.
func insideTable(b *strings.Builder, runs []insideRun, users, contacts int) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(b, "Inside ejabberd during populate (%s users × %d contacts, a fresh server each; `bench/testdata/e2e_probe.erl` reads the Erlang node):\n\n", num(float64(users)), contacts)
	b.WriteString("| run | where | items/s | server CPU (OS) | schedulers busy (busy waiting excluded) | dirty IO schedulers | processes that ran most (share of reductions) |\n|---|---|---|---|---|---|---|\n")
	for _, ir := range runs {
		var sched []string
		for _, s := range ir.Erlang.Schedulers {
			sched = append(sched, fmt.Sprintf("%.2f", s))
		}
		var top []string
		for _, p := range ir.Erlang.Top[:min(3, len(ir.Erlang.Top))] {
			top = append(top, fmt.Sprintf("`%s` in `%s` (%.0f%%)", p.Initial, p.Inside, 100*float64(p.Reductions)/float64(max(1, ir.Erlang.Reductions))))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %.2f | %s | %.2f | %s |\n", ir.Name, ir.Where, num(ir.Rate), ir.OSCPU, strings.Join(sched, " + "), ir.Erlang.DirtyIO, strings.Join(top, "; "))
	}
	b.WriteString("\n")
	for i := 0; i+1 < len(runs); i += 2 {
		fmt.Fprintf(b, "- %s: sidecar / blaster **%.2f**\n", runs[i].Where, runs[i+1].Rate/runs[i].Rate)
	}
	b.WriteString("\n")
}
