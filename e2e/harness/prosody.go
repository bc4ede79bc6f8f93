package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// Prosody012Dir is where deploy/install-servers.sh unpacks Debian
// bookworm's own Prosody 0.12.3 and prosody-modules (hg20230223, with its
// mod_privilege), beside the installed Prosody 13; its launchers in
// usr/bin use that directory's libraries and modules.
const Prosody012Dir = "/opt/roster-sidecar-e2e/prosody-0.12"

// prosodyVersion is what differs between the Prosody runners.
type prosodyVersion struct {
	name                string // the runner's name
	prosody, prosodyctl string // the executables
	luaPrefix           string // Server.LuaPrefix
}

var (
	prosody13  = prosodyVersion{name: "prosody", prosody: "prosody", prosodyctl: "prosodyctl", luaPrefix: "prosody."}
	prosody012 = prosodyVersion{name: "prosody012", prosody: Prosody012Dir + "/usr/bin/prosody",
		prosodyctl: Prosody012Dir + "/usr/bin/prosodyctl"}
)

func (v prosodyVersion) start(t TB, o ServerOptions) *Server {
	t.Helper()
	return startProsody(t, o, v)
}

// startProsody runs `prosody -F` (of version v) with
// deploy/prosody/prosody.cfg.lua, included unchanged from the test overlay
// e2e/testdata/prosody-e2e.cfg.lua (or o.ProsodyOverlay, or with
// o.ProsodyNoHelper prosody-nohelper.cfg.lua, each of which includes that
// one), and every per-run value passed through the environment;
// deploy/prosody is the plugin path, for mod_roster_sidecar.
func startProsody(t TB, o ServerOptions, v prosodyVersion) *Server {
	t.Helper()
	dir := TempDir(t, "e2e-"+v.name+"-")
	for _, d := range []string{"data", "certs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	// The overlay is copied so that relative paths in the configuration
	// (certificates = "certs") resolve inside the temporary directory.
	defaultOverlay := RepoFile(t, "e2e", "testdata", "prosody-e2e.cfg.lua")
	overlayFile := defaultOverlay
	switch {
	case o.ProsodyNoHelper && o.ProsodyOverlay != "":
		t.Fatal("ProsodyNoHelper and ProsodyOverlay are exclusive")
	case o.ProsodyNoHelper:
		overlayFile = RepoFile(t, "e2e", "testdata", "prosody-nohelper.cfg.lua")
	case o.ProsodyOverlay != "":
		overlayFile = o.ProsodyOverlay
	}
	overlay, err := os.ReadFile(overlayFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	if err := os.WriteFile(cfg, overlay, 0o600); err != nil {
		t.Fatal(err)
	}

	ports := FreePorts(t, 2)
	c2s, comp := ports[0], ports[1]
	logLevel := "info"
	if Debug() {
		logLevel = "debug"
	}
	env := append(os.Environ(),
		"PROSODY_DEPLOY_CONFIG="+RepoFile(t, "deploy", "prosody", "prosody.cfg.lua"),
		"PROSODY_FIREWALL_SCRIPT="+RepoFile(t, "deploy", "prosody", "roster-sidecar.pfw"),
		"PROSODY_PLUGIN_PATH="+filepath.Dir(RepoFile(t, "deploy", "prosody", "mod_roster_sidecar.lua")),
		"PROSODY_USER_DOMAIN="+UserDomain,
		"PROSODY_USER_DOMAINS="+strings.Join(o.domains(), " "),
		"PROSODY_COMPONENT_DOMAIN="+componentDomain,
		"PROSODY_COMPONENT_SECRET="+componentSecret,
		"PROSODY_COMPONENT_INTERFACE=127.0.0.1",
		"PROSODY_COMPONENT_PORT="+strconv.Itoa(comp),
		"PROSODY_C2S_INTERFACE=127.0.0.1",
		"PROSODY_C2S_PORT="+strconv.Itoa(c2s),
		"PROSODY_DATA_DIR="+filepath.Join(dir, "data"),
		"PROSODY_PID_FILE="+filepath.Join(dir, "prosody.pid"),
		"PROSODY_LOG=*console",
		"PROSODY_LOG_LEVEL="+logLevel,
		"PROSODY_E2E_OVERLAY="+defaultOverlay,
	)
	env = append(env, o.Env...)

	cmd := serverCommand(o, v.prosody, "--config", cfg, "-F")
	cmd.Dir = dir
	cmd.Env = env
	start := time.Now()
	p := startProcess(t, v.name, cmd)

	s := &Server{
		Name:                v.name,
		Kind:                "prosody",
		LuaPrefix:           v.luaPrefix,
		Domain:              UserDomain,
		Domains:             o.domains(),
		C2SAddr:             "127.0.0.1:" + strconv.Itoa(c2s),
		ComponentAddr:       "127.0.0.1:" + strconv.Itoa(comp),
		ComponentDomain:     componentDomain,
		ComponentSecret:     componentSecret,
		HonoursSubscription: true,
		PresenceHelper:      !o.ProsodyNoHelper,
		Process:             p,
		owner:               t,
	}
	s.prosodyctl = func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, v.prosodyctl, append([]string{"--config", cfg}, args...)...)
		c.Dir = dir
		c.Env = env
		return c
	}
	s.createUsers = func(ctx context.Context, domain, password string, names []string) error {
		if len(names) >= ProsodyBulkMin && bulkSafe(password, names) {
			return prosodyBulkCreate(ctx, s, domain, password, names)
		}
		// prosodyctl writes the account to storage directly (~50 ms a
		// call); a few at a time keep both cores busy.
		g, ctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for _, name := range names {
			g.Go(func() error {
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				out, err := s.Prosodyctl(ctx, "register", name, domain, password).CombinedOutput()
				if err != nil {
					return fmt.Errorf("prosodyctl register %s: %v: %s", name, err, strings.TrimSpace(string(out)))
				}
				return nil
			})
		}
		return g.Wait()
	}

	s.shell = func(ctx context.Context, lua string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, v.prosodyctl, "--config", cfg, "shell", ">"+lua)
		c.Dir = dir
		c.Env = env
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	s.waitReady = func(ctx context.Context, p *Process) error {
		for _, addr := range []string{s.C2SAddr, s.ComponentAddr} {
			if err := WaitFor(ctx, p, 20*time.Second, v.name+" to listen on "+addr, DialCheck(addr)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.waitReady(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s ready in %v: c2s %s, component %s", v.name, time.Since(start).Round(time.Millisecond), s.C2SAddr, s.ComponentAddr)
	return s
}

// ProsodyBulkMin is the number of users from which CreateUsers registers
// them inside the running server (prosodyBulkCreate) instead of one
// prosodyctl process per user.
const ProsodyBulkMin = 20

// prosodyBulkCreate registers users through Prosody's admin socket
// (mod_admin_shell): one `prosodyctl shell` call per 500 names runs a Lua
// loop over usermanager.create_user in the server, ~2 ms a user (the
// password hash) instead of ~70 ms a prosodyctl process.
func prosodyBulkCreate(ctx context.Context, s *Server, domain, password string, names []string) error {
	const batch = 500
	for len(names) > 0 {
		n := min(batch, len(names))
		var lua strings.Builder
		fmt.Fprintf(&lua, `>local um = require "%score.usermanager"; local n = 0; for _, u in ipairs({`, s.LuaPrefix)
		for i, name := range names[:n] {
			if i > 0 {
				lua.WriteByte(',')
			}
			lua.WriteString(strconv.Quote(name))
		}
		fmt.Fprintf(&lua, `}) do local ok, err = um.create_user(u, %q, %q); if not ok then error(u .. ": " .. tostring(err)) end; n = n + 1 end; return n`, password, domain)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		out, err := s.Prosodyctl(cctx, "shell", lua.String()).CombinedOutput()
		cancel()
		if want := fmt.Sprintf("Result: %d", n); err != nil || !strings.Contains(string(out), want) {
			return fmt.Errorf("prosodyctl shell (creating %d users from %q): %v: %s", n, names[0], err, strings.TrimSpace(string(out)))
		}
		names = names[n:]
	}
	return nil
}

// bulkSafe reports whether every name and the password can be written as a
// Lua string literal by strconv.Quote: plain printable ASCII without
// backslash escapes that Lua reads differently.
func bulkSafe(password string, names []string) bool {
	ok := func(s string) bool {
		for _, r := range s {
			if r < 0x20 || r > 0x7e || r == '\\' {
				return false
			}
		}
		return true
	}
	if !ok(password) {
		return false
	}
	for _, n := range names {
		if !ok(n) {
			return false
		}
	}
	return true
}
