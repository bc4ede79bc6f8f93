//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
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
	if bin := os.Getenv(envBinary); bin != "" {
		sidecarBinary = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sidecarBinary, sidecarBuildErr = buildSidecar(dir)
	if sidecarBuildErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: building roster-sidecar failed; tests that need it will fail:\n%v\n", sidecarBuildErr)
	}
	return m.Run()
}

func buildSidecar(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	wd, err := os.Getwd() // the e2e package directory
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "roster-sidecar")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/roster-sidecar")
	cmd.Dir = filepath.Dir(wd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/roster-sidecar: %v\n%s", err, out)
	}
	return bin, nil
}

// requireSidecar fails the test when there is no binary to run.
func requireSidecar(t testing.TB) {
	t.Helper()
	if sidecarBuildErr != nil {
		t.Fatalf("no roster-sidecar binary: %v", sidecarBuildErr)
	}
}

// SidecarOptions are the per-run settings of the sidecar.
type SidecarOptions struct {
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

// sidecarEnv is the environment of a roster-sidecar command that talks to
// srv and backend.
func sidecarEnv(srv *Server, backend *Backend) []string {
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
func StartSidecar(t testing.TB, srv *Server, backend *Backend, opts SidecarOptions) *Sidecar {
	t.Helper()
	requireSidecar(t)
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePorts(t, 1)[0])
	env := append(sidecarEnv(srv, backend),
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
	cmd := exec.Command(sidecarBinary, "serve")
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	s := &Sidecar{
		Process: StartProcess(t, "roster-sidecar ("+srv.Name+")", cmd),
		Admin:   NewAdmin("http://"+adminAddr, opts.Token),
		Opts:    opts,
	}
	header := http.Header{}
	if opts.Token != "" {
		header.Set("Authorization", "Bearer "+opts.Token)
	}
	err := waitFor(context.Background(), s.Process, 30*time.Second, "roster-sidecar /readyz",
		httpCheck(s.Admin.BaseURL+"/readyz", header, http.StatusOK))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Alive fails the test if the sidecar has exited.
func (s *Sidecar) Alive(t testing.TB) {
	t.Helper()
	if ok, err := s.Exited(); ok {
		t.Fatalf("roster-sidecar exited: %v", err)
	}
}
