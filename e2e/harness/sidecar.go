package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SidecarBinary returns the roster-sidecar binary to run: the one named by
// ROSTER_SIDECAR_E2E_BINARY, else ./cmd/roster-sidecar of this module
// built with the given build tags into dir.
func SidecarBinary(dir string, tags ...string) (string, error) {
	if bin := os.Getenv(envBinary); bin != "" {
		return bin, nil
	}
	return buildSidecar(dir, tags...)
}

// buildSidecar builds ./cmd/roster-sidecar of this module with the given
// build tags into dir and returns the binary's path.
func buildSidecar(dir string, tags ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	name := "roster-sidecar"
	args := []string{"build"}
	if len(tags) > 0 {
		name += "-" + strings.Join(tags, "-")
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goBin, append(args, "-o", bin, "./cmd/roster-sidecar")...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return bin, nil
}

// SidecarOptions are the per-run settings of the sidecar.
type SidecarOptions struct {
	// Binary is the roster-sidecar executable (see SidecarBinary).
	Binary string
	// Token is ROSTER_SIDECAR_ADMIN_TOKEN ("" for none).
	Token string
	// BackendTimeout and IQTimeout are ROSTER_SIDECAR_BACKEND_TIMEOUT and
	// ROSTER_SIDECAR_XMPP_IQ_TIMEOUT.
	BackendTimeout, IQTimeout time.Duration
	// PingInterval is ROSTER_SIDECAR_XMPP_PING_INTERVAL (0: the default).
	PingInterval time.Duration
	// Env holds extra KEY=value settings.
	Env []string
}

// Sidecar is a running roster-sidecar process.
type Sidecar struct {
	*Process
	// Admin is a client of its admin API, with the configured token.
	Admin *Admin
	// Opts are the options it was started with.
	Opts SidecarOptions
}

// SidecarEnv is the environment of a roster-sidecar command that talks to
// srv and backend.
func SidecarEnv(srv *Server, backend *Backend) []string {
	return append(os.Environ(),
		"ROSTER_SIDECAR_XMPP_ADDRESS="+srv.ComponentAddr,
		"ROSTER_SIDECAR_XMPP_DOMAIN="+srv.ComponentDomain,
		"ROSTER_SIDECAR_XMPP_SECRET="+srv.ComponentSecret,
		"ROSTER_SIDECAR_XMPP_USER_DOMAIN="+srv.Domain,
		"ROSTER_SIDECAR_HTTP_ROSTER_URL="+backend.RosterURL(),
	)
}

// StartSidecar runs `roster-sidecar serve` against srv and backend, and
// waits until /readyz says it is connected with the roster privilege.
func StartSidecar(t TB, srv *Server, backend *Backend, opts SidecarOptions) *Sidecar {
	t.Helper()
	s := startSidecarProcess(t, "roster-sidecar ("+srv.Name+")", srv, backend, opts)
	header := http.Header{}
	if opts.Token != "" {
		header.Set("Authorization", "Bearer "+opts.Token)
	}
	err := WaitFor(context.Background(), s.Process, 30*time.Second, "roster-sidecar /readyz",
		HTTPCheck(s.Admin.BaseURL+"/readyz", header, http.StatusOK))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Alive fails the test if the sidecar has exited.
func (s *Sidecar) Alive(t TB) {
	t.Helper()
	if ok, err := s.Exited(); ok {
		t.Fatalf("roster-sidecar exited: %v", err)
	}
}

// startSidecarProcess runs `roster-sidecar serve` against srv and backend
// with opts on a free admin port, without waiting for it.
func startSidecarProcess(t TB, name string, srv *Server, backend *Backend, opts SidecarOptions) *Sidecar {
	t.Helper()
	if opts.Binary == "" {
		t.Fatal("no roster-sidecar binary given (SidecarOptions.Binary)")
	}
	adminAddr := "127.0.0.1:" + strconv.Itoa(FreePorts(t, 1)[0])
	env := append(SidecarEnv(srv, backend),
		"ROSTER_SIDECAR_ADMIN_LISTEN="+adminAddr,
		"ROSTER_SIDECAR_ADMIN_TOKEN="+opts.Token,
		"ROSTER_SIDECAR_BACKEND_TIMEOUT="+opts.BackendTimeout.String(),
		"ROSTER_SIDECAR_XMPP_IQ_TIMEOUT="+opts.IQTimeout.String(),
		"ROSTER_SIDECAR_LOG_LEVEL=debug",
	)
	if opts.PingInterval > 0 {
		env = append(env, "ROSTER_SIDECAR_XMPP_PING_INTERVAL="+opts.PingInterval.String())
	}
	env = append(env, opts.Env...)
	cmd := exec.Command(opts.Binary, "serve")
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	s := &Sidecar{
		Process: startProcess(t, name, cmd),
		Admin:   newAdmin("http://"+adminAddr, opts.Token),
		Opts:    opts,
	}
	return s
}
