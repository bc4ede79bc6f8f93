package harness

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// Values shared by every server and the sidecar.
const (
	// UserDomain is the users' domain on every server.
	UserDomain = "example.test"
	// UserPassword is the password of every user CreateUsers registers.
	UserPassword    = "e2e-password"
	componentDomain = "roster.example.test"
	componentSecret = "e2e-component-secret"
)

// Server is a running XMPP server under test, started from the deploy/
// configuration on free loopback ports in a temporary directory.
type Server struct {
	// Name is the runner's name: "prosody", "ejabberd" or "prosody012".
	Name string
	// Kind is the server software: "prosody" (13, or 0.12 for the runner
	// prosody012) or "ejabberd".
	Kind string
	// Domain is the users' domain (UserDomain).
	Domain string
	// Domains are every users' domain the server hosts and grants the
	// sidecar the privileges on: Domain, then ServerOptions.Domains.
	Domains []string
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
	// PresenceHelper is true when the server runs roster-sidecar's helper,
	// deploy/prosody/mod_roster_sidecar.lua (Prosody, unless started with
	// ProsodyNoHelper): the sidecar's writes send presence at once, and
	// each user's changes are one request.
	PresenceHelper bool
	// Process is the server process.
	Process *Process
	// APIURL is the base URL of ejabberd's mod_http_api on loopback
	// (".../api/"); empty for Prosody.
	APIURL string
	// Erlang is ejabberd's Erlang node, for probes; nil for Prosody.
	Erlang *ErlangNode
	// LuaPrefix is the prefix of Prosody's own Lua modules in require:
	// "prosody." (require "prosody.core.rostermanager") since Prosody 13,
	// "" in 0.12 (require "core.rostermanager").
	LuaPrefix string
	// prosodyctl is Prosody's prosodyctl for this server; nil for ejabberd.
	prosodyctl func(ctx context.Context, args ...string) *exec.Cmd

	// createUsers registers the users names@domain.
	createUsers func(ctx context.Context, domain, password string, names []string) error
	// shell runs Lua inside the server (Prosody only).
	shell func(ctx context.Context, lua string) (string, error)
	// waitReady waits until a freshly started process serves.
	waitReady func(ctx context.Context, p *Process) error
	// owner is the test that started the server: restarted processes live
	// as long as it, not as long as the subtest that restarted them.
	owner TB
}

// Crash kills the server with SIGKILL, leaving its data as a crash would.
func (s *Server) Crash(t TB) {
	t.Helper()
	s.Process.Kill()
	t.Logf("%s: killed with SIGKILL", s.Name)
}

// Restart starts the server again on the same ports and data, after Crash
// or Stop, and waits until it serves.
func (s *Server) Restart(t TB) {
	t.Helper()
	start := time.Now()
	s.Process = startProcess(s.owner, s.Name, s.Process.Command())
	if err := s.waitReady(context.Background(), s.Process); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: restarted in %v", s.Name, time.Since(start).Round(time.Millisecond))
}

// CreateUsers registers the given localparts on the server with password
// UserPassword and fails the test on error.
func (s *Server) CreateUsers(t TB, names ...string) {
	t.Helper()
	s.CreateUsersWithPassword(t, UserPassword, names...)
}

// CreateUsersWithPassword is CreateUsers with another password.
func (s *Server) CreateUsersWithPassword(t TB, password string, names ...string) {
	t.Helper()
	start := time.Now()
	if err := s.createUsers(context.Background(), UserDomain, password, names); err != nil {
		t.Fatalf("%s: creating users %q: %v", s.Name, names, err)
	}
	t.Logf("%s: created %d users in %v", s.Name, len(names), time.Since(start).Round(time.Millisecond))
}

// CreateUsersOn registers the given localparts on domain, one of
// s.Domains, with password UserPassword and fails the test on error.
func (s *Server) CreateUsersOn(t TB, domain string, names ...string) {
	t.Helper()
	start := time.Now()
	if err := s.createUsers(context.Background(), domain, UserPassword, names); err != nil {
		t.Fatalf("%s: creating users %q on %s: %v", s.Name, names, domain, err)
	}
	t.Logf("%s: created %d users on %s in %v", s.Name, len(names), domain, time.Since(start).Round(time.Millisecond))
}

// TryCreateUser registers name with UserPassword and returns the server's
// refusal instead of failing the test: for names a server may not take.
func (s *Server) TryCreateUser(name string) error {
	return s.createUsers(context.Background(), UserDomain, UserPassword, []string{name})
}

// ProsodyShell runs the Lua chunk lua inside a running Prosody through its
// admin socket (prosodyctl shell, mod_admin_shell) and returns what the
// shell printed: "Result: " and the chunk's return value on success. It
// fails the test on other servers and when the shell fails.
func (s *Server) ProsodyShell(t TB, lua string) string {
	t.Helper()
	if s.shell == nil {
		t.Fatalf("%s has no Lua shell", s.Name)
	}
	out, err := s.shell(context.Background(), lua)
	if err != nil {
		t.Fatalf("%s shell: %v: %s", s.Name, err, out)
	}
	return out
}

// Prosodyctl returns the command `prosodyctl --config <the server's> args...`
// of the server's Prosody version, with its directory and environment (for
// `prosodyctl shell`, the running server's admin socket); nil on ejabberd.
func (s *Server) Prosodyctl(ctx context.Context, args ...string) *exec.Cmd {
	if s.prosodyctl == nil {
		return nil
	}
	return s.prosodyctl(ctx, args...)
}

// ErlangNode is how to reach a server's Erlang node from another one.
type ErlangNode struct {
	Name     string // e.g. e2e123_4567@localhost
	Cookie   string
	DistPort int // the node listens here (no epmd)
}

// ServerOptions change how a Runner starts its server; the zero value
// starts it as the e2e suite does.
type ServerOptions struct {
	// CPUs, when not empty, is the CPU list (taskset -c) the server runs
	// on. The benchmark gives the server CPUs of its own.
	CPUs string
	// ProsodyOverlay is the path of another Prosody test overlay instead of
	// e2e/testdata/prosody-e2e.cfg.lua, which it should Include (the
	// environment variable PROSODY_E2E_OVERLAY holds that path).
	ProsodyOverlay string
	// ProsodyNoHelper starts Prosody without roster-sidecar's helper: with
	// the overlay e2e/testdata/prosody-nohelper.cfg.lua instead of
	// ProsodyOverlay.
	ProsodyNoHelper bool
	// ErlOptions are extra flags for ejabberd's Erlang VM, such as
	// "+sbwt none".
	ErlOptions string
	// Env holds extra KEY=value variables of the server process.
	Env []string
	// Domains are more users' domains the server hosts beside UserDomain,
	// through the deploy files themselves (Prosody: PROSODY_USER_DOMAINS,
	// one VirtualHost each; ejabberd: the XMPP_DOMAINS macro, one host
	// each): each grants the sidecar the same privileges as UserDomain.
	Domains []string
}

// domains is every users' domain of o, UserDomain first.
func (o ServerOptions) domains() []string {
	return append([]string{UserDomain}, o.Domains...)
}

// Runner starts one kind of server.
type Runner struct {
	// Name is "prosody", "ejabberd" or "prosody012".
	Name string
	// Binaries must all be on PATH (or be absolute paths).
	Binaries []string
	// Options say how Start starts the server.
	Options ServerOptions

	start func(t TB, o ServerOptions) *Server
}

// Runners returns a runner for every server, Prosody 13 first: "prosody"
// (13, on PATH), "ejabberd" and "prosody012" (Debian bookworm's Prosody
// 0.12.3 and its prosody-modules, unpacked in Prosody012Dir by
// deploy/install-servers.sh).
func Runners() []Runner {
	return []Runner{
		{Name: "prosody", Binaries: []string{"prosody", "prosodyctl"}, start: prosody13.start},
		{Name: "ejabberd", Binaries: []string{"ejabberdctl"}, start: startEjabberd},
		{Name: "prosody012", Binaries: []string{prosody012.prosody, prosody012.prosodyctl}, start: prosody012.start},
	}
}

// Lookup returns the runner named name.
func Lookup(name string) (Runner, bool) {
	for _, r := range Runners() {
		if r.Name == name {
			return r, true
		}
	}
	return Runner{}, false
}

// Installed returns an error naming the first of r.Binaries that is not
// on PATH.
func (r Runner) Installed() error {
	for _, b := range r.Binaries {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s is not installed (%v)", b, err)
		}
	}
	return nil
}

// Start starts a server with r.Options, waits until it serves and
// registers its cleanup on t.
func (r Runner) Start(t TB) *Server {
	t.Helper()
	return r.start(t, r.Options)
}

// serverCommand is exec.Command for a server process, on the CPUs of o.
func serverCommand(o ServerOptions, name string, args ...string) *exec.Cmd {
	if o.CPUs == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", o.CPUs, name}, args...)...)
}
