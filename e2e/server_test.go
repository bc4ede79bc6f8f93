//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Values shared by every server and the sidecar.
const (
	userDomain      = "example.test"
	componentDomain = "roster.example.test"
	componentSecret = "e2e-component-secret"
	userPassword    = "e2e-password"
)

// Server is a running XMPP server under test, started from the deploy/
// configuration on free loopback ports in a temporary directory.
type Server struct {
	// Name is the runner's name: "prosody" or "ejabberd".
	Name string
	// Domain is the users' domain.
	Domain string
	// C2SAddr is the host:port of the client listener (plain TCP).
	C2SAddr string
	// ComponentAddr is the host:port of the XEP-0114 listener.
	ComponentAddr string
	// ComponentDomain and ComponentSecret identify the sidecar.
	ComponentDomain, ComponentSecret string
	// HonoursSubscription is true when the server stores the subscription
	// that a privileged roster SET asks for (Prosody). ejabberd stores
	// "none" for every such item, so tests do not compare it there.
	HonoursSubscription bool
	// Process is the server process.
	Process *Process
	// APIURL is the base URL of ejabberd's mod_http_api on loopback
	// (".../api/"); empty for Prosody.
	APIURL string
	// Erlang is ejabberd's Erlang node, for probes; nil for Prosody.
	Erlang *ErlangNode

	createUsers func(ctx context.Context, t testing.TB, password string, names []string) error
	// waitReady waits until a freshly started process serves.
	waitReady func(ctx context.Context, p *Process) error
	// owner is the test that started the server: restarted processes live
	// as long as it, not as long as the subtest that restarted them.
	owner testing.TB
}

// Crash kills the server with SIGKILL, leaving its data as a crash would.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	s.Process.Kill()
	t.Logf("%s: killed with SIGKILL", s.Name)
}

// Restart starts the server again on the same ports and data, after Crash
// or Stop, and waits until it serves.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	start := time.Now()
	s.Process = StartProcess(s.owner, s.Name, s.Process.Command())
	if err := s.waitReady(context.Background(), s.Process); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: restarted in %v", s.Name, time.Since(start).Round(time.Millisecond))
}

// CreateUsers registers the given localparts on the server with password
// userPassword and fails the test on error.
func (s *Server) CreateUsers(t testing.TB, names ...string) {
	t.Helper()
	start := time.Now()
	if err := s.createUsers(context.Background(), t, userPassword, names); err != nil {
		t.Fatalf("%s: creating users %q: %v", s.Name, names, err)
	}
	t.Logf("%s: created %d users in %v", s.Name, len(names), time.Since(start).Round(time.Millisecond))
}

// serverCPUs, when not empty, is the CPU list (taskset -c) that servers
// are started on. The benchmark sets it to give the server CPUs of its own.
var serverCPUs string

// serverCommand is exec.Command for a server process, on serverCPUs.
func serverCommand(name string, args ...string) *exec.Cmd {
	if serverCPUs == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", serverCPUs, name}, args...)...)
}

// ErlangNode is how to reach a server's Erlang node from another one.
type ErlangNode struct {
	Name     string // e.g. e2e123_4567@localhost
	Cookie   string
	DistPort int // the node listens here (no epmd)
}

// Runner starts one kind of server.
type Runner struct {
	// Name is the subtest name and the word ROSTER_SIDECAR_E2E_SKIP matches.
	Name string
	// Binaries must all be on PATH.
	Binaries []string
	// Start starts a server and registers its cleanup on t.
	Start func(t *testing.T) *Server
}

// runners lists the servers the suite runs against.
var runners = []Runner{
	{Name: "prosody", Binaries: []string{"prosody", "prosodyctl"}, Start: StartProsody},
	{Name: "ejabberd", Binaries: []string{"ejabberdctl"}, Start: StartEjabberd},
}

// Check skips t when ROSTER_SIDECAR_E2E_SKIP lists the runner, and fails
// it loudly when a server binary is missing.
func (r Runner) Check(t *testing.T) {
	t.Helper()
	if skipped(r.Name) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s lists %s, but CI must run every server", envSkip, r.Name)
		}
		t.Skipf("skipping %s: listed in %s", r.Name, envSkip)
	}
	for _, b := range r.Binaries {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed (%v): run deploy/install-servers.sh as root, or set %s=%s to skip it",
				b, err, envSkip, r.Name)
		}
	}
}

// Run checks the runner (see Check) and starts its server for t.
func (r Runner) Run(t *testing.T) *Server {
	t.Helper()
	r.Check(t)
	return r.Start(t)
}

// repoRoot returns the module root (the parent of this package's directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e package source")
	}
	return filepath.Dir(filepath.Dir(file))
}

// deployFile returns the absolute path of a file under deploy/.
func deployFile(t testing.TB, parts ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{repoRoot(t), "deploy"}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("deployment file missing: %v", err)
	}
	return p
}

// testdataFile returns the absolute path of a file under e2e/testdata/.
func testdataFile(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), "e2e", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test data missing: %v", err)
	}
	return p
}
