// Command bench measures roster-sidecar against each XMPP server's own
// limit, on real Prosody and ejabberd started as the e2e suite starts them
// (e2e/harness), and reports it: Markdown tables on standard output, the
// log on standard error, and with -out the whole report written into a
// file between its generated markers (text outside them is kept). make
// bench runs
//
//	go run ./bench -users=1000 -contacts=20 -servers=prosody,ejabberd -out=docs/BENCHMARKS.md
//
// go run ./bench -help lists every flag. It needs prosody, prosodyctl and
// ejabberdctl on PATH (make servers), erl and erlc for the measurements
// inside ejabberd, and a quiet machine; it builds roster-sidecar unless
// ROSTER_SIDECAR_E2E_BINARY names a binary. The exit status is 1 when a
// step failed (the report is still written), 2 for bad arguments.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"roster-sidecar/e2e/harness"
)

// The benchmark's settings (see the package documentation).
var (
	benchUsers      = flag.Int("users", 1000, "users populated through the sidecar, and again (fresh users) by the blaster")
	benchContacts   = flag.Int("contacts", 20, "contacts per user")
	benchServers    = flag.String("servers", "prosody,ejabberd", "servers to measure, comma separated")
	benchOut        = flag.String("out", "", "write the report (Markdown) into this file, keeping text outside its markers")
	benchBatch      = flag.Int("batch", 100, "users per refresh request")
	benchParallel   = flag.Int("parallel", 2, "refresh requests in flight")
	benchWindows    = flag.String("windows", "1,4,8,16,32,64", "blaster windows (IQs in flight) tried; the best one is the server limit")
	benchScan       = flag.Int("scanusers", 200, "users (fresh, -contacts each) per blaster window trial; the best window then runs on -users")
	benchLatency    = flag.Int("latency", 200, "single-user refreshes timed for the latency row")
	benchBig        = flag.Int("bigusers", 10000, "users refreshed in ONE request for the memory row (0 skips it)")
	benchBigK       = flag.Int("bigcontacts", 2, "contacts per user of the memory run")
	benchRepeats    = flag.Int("repeats", 3, "no-op repeats of the memory run, to see that memory stays flat")
	benchConc       = flag.Int("concurrency", 0, "the sidecar's admin.concurrency (0: its default)")
	benchWindow     = flag.Int("window", 0, "the sidecar's xmpp.window (0: its default)")
	benchAPIConc    = flag.String("apiconcurrency", "8,32", "ejabberd: add_rosteritem calls in flight, each compared with the sidecar at as many SETs in flight (admin.concurrency=C, xmpp.window=1); empty skips")
	benchAPIUsers   = flag.Int("apiusers", 250, "ejabberd: users (-contacts each) per HTTP API or equal-concurrency trial")
	benchRounds     = flag.Int("rounds", 3, "populate+update rounds of the blaster and of the sidecar, alternated, each on a fresh server; the median is reported")
	benchTune       = flag.String("tune", "", "extra populate runs of -tuneusers users, each on a fresh server, to choose defaults: CxW is the sidecar with admin.concurrency C and xmpp.window W (CxWd: without the counting proxy), bW the blaster with window W; e.g. b16,8x16,16x4d")
	benchCycles     = flag.Int("tunecycles", 0, "with -tune: run the whole list this many times in turn on ONE server (a fresh user set per run) and report medians, instead of one fresh server per run: finer comparisons")
	benchTuneN      = flag.Int("tuneusers", 500, "users (-contacts each) per -tune run")
	benchBurn       = flag.Bool("burn", true, "run the blaster populate once more while a busy loop takes as much CPU as the sidecar and the benchmark's backend took during populate")
	benchInterleave = flag.Int("interleave", 8, "run the blaster populate once more with this many users taking turns item by item (the order of that many concurrent syncs) and as many IQs in flight as the sidecar had on average; 0 skips it")
	benchMicro      = flag.Bool("micro", true, "also run the Go micro-benchmarks of ./component and ./rosterhttp (go test -bench) and add them to the report")
	benchServerCPUs = flag.String("servercpus", "auto", "CPUs the servers run on, alone (taskset list, e.g. 0 or 0-1); the benchmark process and the sidecar get the others. auto: the first CPU when there are two or more; none: every process shares every CPU")
	benchInside     = flag.Int("inside", 500, "ejabberd: users (-contacts each) of the populates measured from inside the Erlang node, by the blaster and the sidecar: with the server on its own CPU, with every process on every CPU, and so again without busy-waiting schedulers; 0 skips them")
	benchPprof      = flag.String("pprof", "", "directory for CPU and allocation profiles of the sidecar during populate, and a CPU profile during the no-op repeats (builds it with -tags pprof)")
)

// sidecarBinary is the roster-sidecar binary every run starts, unless a
// -tune entry names another.
var sidecarBinary string

// benchToken is the sidecar's admin token in the benchmark.
const benchToken = "bench-admin-token"

func main() {
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q (flags only; see -help)\n", flag.Args())
		os.Exit(2)
	}
	if !runMain(os.Stderr, "bench", benchMain) {
		os.Exit(1)
	}
}

// benchMain measures the sidecar against the server's own limit on every
// server of -servers, prints the report and, with -out, writes it.
func benchMain(t *T) {
	var tags []string
	if *benchPprof != "" {
		if err := os.MkdirAll(*benchPprof, 0o750); err != nil {
			t.Fatal(err)
		}
		tags = []string{"pprof"} // a ROSTER_SIDECAR_E2E_BINARY must be built with -tags pprof too
	}
	bin, err := harness.SidecarBinary(harness.TempDir(t, "bench-bin-"), tags...)
	if err != nil {
		t.Fatal(err)
	}
	sidecarBinary = bin
	mach := describeMachine()
	layout, err := planCPUs(*benchServerCPUs)
	if err != nil {
		t.Fatal(err)
	}
	if err := layout.apply(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = layout.shared().apply() })
	mach.Layout = layout.String()
	var reports []*serverReport
	for _, name := range strings.Split(*benchServers, ",") {
		name = strings.TrimSpace(name)
		r, ok := harness.Lookup(name)
		if !ok {
			t.Fatalf("-servers: unknown server %q", name)
		}
		t.Run(r.Name, func(t *T) {
			if err := r.Installed(); err != nil {
				t.Fatalf("%v: run deploy/install-servers.sh as root (make servers)", err)
			}
			rep := runBench(t, r, layout)
			reports = append(reports, rep)
			fmt.Print("\n" + rep.markdown() + "\n")
		})
	}
	if len(reports) == 0 {
		return
	}
	var micro string
	if *benchMicro {
		out, err := runMicroBenchmarks()
		if err != nil {
			t.Errorf("micro-benchmarks: %v\n%s", err, out)
		}
		micro = out
		fmt.Print("\n" + micro)
	}
	if *benchChart != "" {
		if err := writeScalingChart(*benchChart, reports); err != nil {
			t.Fatal(err)
		}
	}
	doc := benchDocument(mach, reports, micro)
	if *benchOut != "" {
		if err := writeReport(*benchOut, doc); err != nil {
			t.Fatal(err)
		}
		t.Logf("report written to %s", *benchOut)
	}
}
