//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"roster-sidecar/e2e/harness"
)

// sidecarBinary is the roster-sidecar binary built (or named by
// ROSTER_SIDECAR_E2E_BINARY) in TestMain; sidecarBuildErr is why not.
var (
	sidecarBinary   string
	sidecarBuildErr error
)

// TestMain builds roster-sidecar once into a temporary directory.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sidecarBinary, sidecarBuildErr = harness.SidecarBinary(dir)
	if sidecarBuildErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: building roster-sidecar failed; tests that need it will fail:\n%v\n", sidecarBuildErr)
	}
	return m.Run()
}

// Env is what a test runs against on one server: the server, a backend
// and, once started, a sidecar, shared by the scenarios of that server
// (each scenario uses its own users).
type Env struct {
	Server  *harness.Server
	Backend *harness.Backend
	// Sidecar is nil until StartSidecar.
	Sidecar *harness.Sidecar
	// Admin is the admin API client of Sidecar, with the right token.
	Admin *harness.Admin
}

// Users registers the given localparts.
func (e *Env) Users(t testing.TB, names ...string) {
	t.Helper()
	e.Server.CreateUsers(t, names...)
}

// StartSidecar starts a sidecar with opts against e's server and backend,
// makes it e.Sidecar (and its admin client e.Admin), and returns it. It
// stops when t ends; a sidecar that is running already must be stopped
// first (a component accepts one connection).
func (e *Env) StartSidecar(t testing.TB, opts harness.SidecarOptions) *harness.Sidecar {
	t.Helper()
	e.Sidecar = startSidecar(t, e.Server, e.Backend, opts)
	e.Admin = e.Sidecar.Admin
	return e.Sidecar
}

// Scenario is one end-to-end check, run against each server of a test.
type Scenario struct {
	Name string
	Run  func(t *testing.T, e *Env)
}

// servers chooses the servers of a test and how they start.
type servers struct {
	// only names the servers ("prosody", "ejabberd", "prosody012") for
	// tests that mean something on those only; nil means every server.
	only []string
	// start is how the servers start (harness.Runner.Options).
	start harness.ServerOptions
	// inTurn runs the servers one after the other instead of in parallel.
	inTurn bool
}

// runPerServer is how every test of the suite runs on the servers: test
// runs once per server of s as the subtest t/<server>, in parallel unless
// s.inTurn, each with a fresh server and backend (Env; no sidecar yet).
// It is the one place that applies ROSTER_SIDECAR_E2E_SKIP: a listed
// server is skipped, or fails the test when CI is set, and a server that
// is not installed fails it.
func runPerServer(t *testing.T, s servers, test func(t *testing.T, e *Env)) {
	runners := harness.Runners()
	if s.only != nil {
		runners = nil
		for _, name := range s.only {
			r, ok := harness.Lookup(name)
			if !ok {
				t.Fatalf("no runner for server %q", name)
			}
			runners = append(runners, r)
		}
	}
	skips := 0
	for _, r := range runners {
		r.Options = s.start
		if skipped(r.Name) {
			skips++
		}
		t.Run(r.Name, func(t *testing.T) {
			checkRunner(t, r)
			if !s.inTurn {
				t.Parallel()
			}
			e := &Env{Server: r.Start(t), Backend: harness.NewBackend(t)}
			test(t, e)
		})
	}
	if skips == len(runners) && os.Getenv("CI") == "" {
		t.Skipf("every server of %s is listed in %s", t.Name(), envSkip)
	}
}

// withSidecar returns a test for runPerServer that starts a sidecar with
// opts and runs scenarios.
func withSidecar(opts harness.SidecarOptions, scenarios []Scenario) func(t *testing.T, e *Env) {
	return func(t *testing.T, e *Env) {
		e.StartSidecar(t, opts)
		e.run(t, scenarios)
	}
}

// run runs each scenario as a subtest of t on e, in order; the sidecar (if
// one is started) must be alive before and after each, and a failure logs
// what the processes printed meanwhile.
func (e *Env) run(t *testing.T, scenarios []Scenario) {
	for _, s := range scenarios {
		t.Run(s.Name, func(t *testing.T) {
			procs := []*harness.Process{e.Server.Process}
			if e.Sidecar != nil {
				e.Sidecar.Alive(t)
				procs = []*harness.Process{e.Sidecar.Process, e.Server.Process}
			}
			logOnFailure(t, procs...)
			s.Run(t, e)
			if e.Sidecar != nil {
				e.Sidecar.Alive(t)
			}
		})
	}
}

// envSkip lists servers the suite skips, outside CI (see doc.go).
const envSkip = "ROSTER_SIDECAR_E2E_SKIP"

// checkRunner skips t when ROSTER_SIDECAR_E2E_SKIP lists the runner (a
// failure when CI is set), and fails it loudly when a server binary is
// missing.
func checkRunner(t *testing.T, r harness.Runner) {
	t.Helper()
	if skipped(r.Name) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s lists %s, but CI must run every server", envSkip, r.Name)
		}
		t.Skipf("skipping %s: listed in %s", r.Name, envSkip)
	}
	if err := r.Installed(); err != nil {
		t.Fatalf("%v: run deploy/install-servers.sh as root, or set %s=%s to skip it", err, envSkip, r.Name)
	}
}

// skipped reports whether ROSTER_SIDECAR_E2E_SKIP lists name.
func skipped(name string) bool {
	for _, s := range strings.Split(os.Getenv(envSkip), ",") {
		if strings.EqualFold(strings.TrimSpace(s), name) {
			return true
		}
	}
	return false
}

// logOnFailure logs what the processes printed during the current
// (sub)test if it fails.
func logOnFailure(t *testing.T, procs ...*harness.Process) {
	marks := make([]int, len(procs))
	for i, p := range procs {
		marks[i] = len(p.Output())
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, p := range procs {
			t.Logf("---- %s output during %s ----\n%s", p.Name, t.Name(), p.Output()[marks[i]:])
		}
	})
}

// requireSidecar fails the test when there is no binary to run.
func requireSidecar(t testing.TB) {
	t.Helper()
	if sidecarBuildErr != nil {
		t.Fatalf("no roster-sidecar binary: %v", sidecarBuildErr)
	}
}

// startSidecar is harness.StartSidecar with the suite's binary.
func startSidecar(t testing.TB, srv *harness.Server, backend *harness.Backend, opts harness.SidecarOptions) *harness.Sidecar {
	t.Helper()
	requireSidecar(t)
	opts.Binary = sidecarBinary
	return harness.StartSidecar(t, srv, backend, opts)
}
