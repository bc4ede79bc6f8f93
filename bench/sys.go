package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"roster-sidecar/e2e/harness"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc/PID/stat (100 on
// every Linux this runs on).
const clockTicks = 100

// procStatus returns a field of /proc/PID/status in KiB (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid string) []string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// groupCPU returns the CPU time (user+system) used so far by every live
// process of process group pgid, and by their waited-for children.
func groupCPU(pgid int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f := statFields(e.Name())
		// f[0] is state, f[2] pgrp, f[11..14] utime stime cutime cstime.
		if len(f) < 15 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// groupSwitches returns the context switches so far of every thread of
// every live process of process group pgid: voluntary (the thread waited)
// and involuntary (it was preempted, with work to do).
func groupSwitches(pgid int) (voluntary, involuntary int64) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f := statFields(e.Name())
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		tasks, _ := os.ReadDir("/proc/" + e.Name() + "/task")
		for _, tk := range tasks {
			b, err := os.ReadFile("/proc/" + e.Name() + "/task/" + tk.Name() + "/status")
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					voluntary += n
				} else if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					involuntary += n
				}
			}
		}
	}
	return voluntary, involuntary
}

// selfCPU returns the CPU time used so far by this (the benchmark) process.
func selfCPU() time.Duration {
	f := statFields("self")
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, k := range []int{11, 12} {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// machineBusy returns the CPU time all processes of the machine used so far
// (every /proc/stat "cpu" column but idle and iowait).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// cpuMeter measures the CPU used by the server, the sidecar and the
// benchmark process itself over a phase.
type cpuMeter struct {
	procs []*harness.Process
	start []time.Duration
	self  time.Duration
	all   time.Duration
	at    time.Time
	// server context switches at the start (procs[0])
	vol, invol int64
}

func startCPU(procs ...*harness.Process) *cpuMeter {
	m := &cpuMeter{procs: procs, self: selfCPU(), all: machineBusy(), at: time.Now()}
	if len(procs) > 0 {
		m.vol, m.invol = groupSwitches(procs[0].Pid())
	}
	for _, p := range procs {
		m.start = append(m.start, groupCPU(p.Pid()))
	}
	return m
}

// cpuUse is CPU time over wall time: 1.0 is one core busy.
type cpuUse struct {
	Procs []float64 // in the order given to startCPU
	Self  float64
	// Other is what every other process of the machine used: near 0 on
	// a quiet machine, else the figures are disturbed.
	Other float64
	// ServerPreempted and ServerWaited are the server's involuntary and
	// voluntary context switches per second.
	ServerPreempted, ServerWaited float64
}

func (m *cpuMeter) stop() cpuUse {
	wall := time.Since(m.at).Seconds()
	u := cpuUse{Self: (selfCPU() - m.self).Seconds() / wall}
	if len(m.procs) > 0 {
		vol, invol := groupSwitches(m.procs[0].Pid())
		u.ServerWaited, u.ServerPreempted = float64(vol-m.vol)/wall, float64(invol-m.invol)/wall
	}
	u.Other = (machineBusy()-m.all).Seconds()/wall - u.Self
	for i, p := range m.procs {
		u.Procs = append(u.Procs, (groupCPU(p.Pid())-m.start[i]).Seconds()/wall)
		u.Other -= u.Procs[i]
	}
	u.Other = max(0, u.Other)
	return u
}

// machine describes where the benchmark ran.
type machine struct {
	CPUs                 int
	CPUModel, Memory     string
	Kernel, Go           string
	Prosody, Ejabberd    string
	MellPrivilege, Start string
	Layout               string // where the processes ran (cpuLayout)
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Start: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	if out, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			m.CPUs = n
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if kb, err := memTotal(); err == nil {
		m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	m.Prosody = pkgVersion("prosody")
	m.MellPrivilege = pkgVersion("prosody-modules")
	m.Ejabberd = pkgVersion("ejabberd")
	return m
}

func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no MemTotal")
}

// pkgVersion asks dpkg for an installed package's version.
func pkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil || len(out) == 0 {
		return "unknown"
	}
	return string(out)
}

// cpuLayout is where the benchmark runs what: the servers on CPUs of their
// own (Server), everything else on the others (Rest): the benchmark
// process with its backend, proxy and blaster, and the sidecar it starts.
// Both empty: everything shares every CPU available (All).
type cpuLayout struct {
	Server, Rest, All []int
}

// shared is the layout where everything shares every CPU.
func (l cpuLayout) shared() cpuLayout { return cpuLayout{All: l.All} }

// String describes the layout for the report.
func (l cpuLayout) String() string {
	if len(l.Server) == 0 {
		return "every process on every CPU"
	}
	return fmt.Sprintf("the server on CPU %s alone (`taskset -c %s`); the benchmark process (backend, proxy, blaster) and the sidecar on CPU %s",
		cpuList(l.Server), cpuList(l.Server), cpuList(l.Rest))
}

// planCPUs turns -servercpus into a layout: "auto" gives the server
// the first available CPU when there are two or more, "" or "none" shares
// them all, else a CPU list such as "0" or "0-1" for the server.
func planCPUs(spec string) (cpuLayout, error) {
	var avail unix.CPUSet
	if err := unix.SchedGetaffinity(0, &avail); err != nil {
		return cpuLayout{}, fmt.Errorf("CPU affinity: %w", err)
	}
	var all []int
	for c := range 1024 {
		if avail.IsSet(c) {
			all = append(all, c)
		}
	}
	var server []int
	switch spec {
	case "", "none":
		return cpuLayout{All: all}, nil
	case "auto":
		if len(all) < 2 {
			return cpuLayout{All: all}, nil
		}
		server = all[:1]
	default:
		var err error
		if server, err = parseCPUList(spec); err != nil {
			return cpuLayout{}, err
		}
	}
	var rest []int
	for _, c := range all {
		if !slices.Contains(server, c) {
			rest = append(rest, c)
		}
	}
	if len(rest) == 0 || len(server) == 0 {
		return cpuLayout{}, fmt.Errorf("-servercpus=%s leaves no CPU for the server or for the rest (available: %s)", spec, cpuList(all))
	}
	return cpuLayout{Server: server, Rest: rest, All: all}, nil
}

// serverCPUs is the CPU list (taskset -c) that freshServer starts servers
// on, "" for every CPU: the current layout's (cpuLayout.apply).
var serverCPUs string

// apply starts servers on l.Server from now on and moves every thread of
// this process (and so what it starts later) to l.Rest; a shared layout
// puts everything back on every available CPU.
func (l cpuLayout) apply() error {
	serverCPUs = cpuList(l.Server)
	cpus := l.Rest
	if len(l.Server) == 0 {
		cpus = l.All
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	for range 2 { // threads started during the first pass get the second
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d to CPUs %s: %w", tid, cpuList(cpus), err)
			}
		}
	}
	return nil
}

// parseCPUList parses a taskset CPU list such as "0", "0-1" or "0,2".
func parseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, fmt.Errorf("not a CPU list: %q", s)
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// cpuList formats CPUs as a taskset list ("" for none).
func cpuList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
