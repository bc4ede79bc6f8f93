//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// StartProsody runs `prosody -F` with deploy/prosody/prosody.cfg.lua,
// included unchanged from the test overlay e2e/testdata/prosody-e2e.cfg.lua,
// and every per-run value passed through the environment.
func StartProsody(t *testing.T) *Server {
	t.Helper()
	dir := tempDir(t, "e2e-prosody-")
	for _, d := range []string{"data", "certs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	// The overlay is copied so that relative paths in the configuration
	// (certificates = "certs") resolve inside the temporary directory.
	overlay, err := os.ReadFile(testdataFile(t, "prosody-e2e.cfg.lua"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	if err := os.WriteFile(cfg, overlay, 0o600); err != nil {
		t.Fatal(err)
	}

	ports := freePorts(t, 2)
	c2s, comp := ports[0], ports[1]
	logLevel := "info"
	if debug() {
		logLevel = "debug"
	}
	env := append(os.Environ(),
		"PROSODY_DEPLOY_CONFIG="+deployFile(t, "prosody", "prosody.cfg.lua"),
		"PROSODY_USER_DOMAIN="+userDomain,
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
	)

	cmd := exec.Command("prosody", "--config", cfg, "-F")
	cmd.Dir = dir
	cmd.Env = env
	start := time.Now()
	p := StartProcess(t, "prosody", cmd)

	s := &Server{
		Name:                "prosody",
		Domain:              userDomain,
		C2SAddr:             "127.0.0.1:" + strconv.Itoa(c2s),
		ComponentAddr:       "127.0.0.1:" + strconv.Itoa(comp),
		ComponentDomain:     componentDomain,
		ComponentSecret:     componentSecret,
		HonoursSubscription: true,
		Process:             p,
	}
	s.createUsers = func(ctx context.Context, t testing.TB, password string, names []string) error {
		// prosodyctl writes the account to storage directly (~50 ms a
		// call); a few at a time keep both cores busy.
		g, ctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for _, name := range names {
			g.Go(func() error {
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				c := exec.CommandContext(ctx, "prosodyctl", "--config", cfg, "register", name, userDomain, password)
				c.Dir = dir
				c.Env = env
				out, err := c.CombinedOutput()
				if err != nil {
					return fmt.Errorf("prosodyctl register %s: %v: %s", name, err, strings.TrimSpace(string(out)))
				}
				return nil
			})
		}
		return g.Wait()
	}

	ctx := context.Background()
	for _, addr := range []string{s.C2SAddr, s.ComponentAddr} {
		if err := waitFor(ctx, p, 20*time.Second, "prosody to listen on "+addr, dialCheck(addr)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("prosody ready in %v: c2s %s, component %s", time.Since(start).Round(time.Millisecond), s.C2SAddr, s.ComponentAddr)
	return s
}
