// Package harness runs what the end-to-end tests (e2e/) and the benchmark
// (bench/) work against: real Prosody and ejabberd servers started from the
// deploy/ configuration on free loopback ports, the roster-sidecar process,
// a scriptable roster backend and a client of the sidecar's admin API. The
// scenarios themselves stay in e2e/ and bench/.
//
// Its functions take a TB: *testing.T satisfies it, and so does the
// benchmark program's runner. Environment variables:
//
//	ROSTER_SIDECAR_E2E_BINARY  use this roster-sidecar binary instead of building one
//	ROSTER_SIDECAR_E2E_DEBUG   1: debug logging in the servers
//	ROSTER_SIDECAR_E2E_KEEP    1: keep the servers' temporary directories
//
// The servers need prosody, prosodyctl and ejabberdctl on PATH, and for the
// runner "prosody012" Prosody 0.12 in Prosody012Dir (see
// deploy/install-servers.sh).
package harness

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

// TB is the part of testing.TB that the harness uses. Fatal and Fatalf must
// not return: testing.T ends the calling goroutine.
type TB interface {
	Cleanup(func())
	Failed() bool
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Helper()
	Logf(format string, args ...any)
}

// Environment variables read by the harness (see the package documentation).
const (
	envBinary = "ROSTER_SIDECAR_E2E_BINARY"
	envDebug  = "ROSTER_SIDECAR_E2E_DEBUG"
	envKeep   = "ROSTER_SIDECAR_E2E_KEEP"
)

// Debug reports whether ROSTER_SIDECAR_E2E_DEBUG asks for verbose server
// logs (and, in e2e, the XML console of the test clients).
func Debug() bool { return envBool(envDebug) }

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

// RepoRoot returns the module root, found from this file's path at build
// time (a binary built with -trimpath cannot use the harness).
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", errors.New("harness: cannot locate the module root (built with -trimpath?)")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file))), nil
}

// RepoFile returns the absolute path of a file of the repository, given
// from the module root, and fails t when it does not exist.
func RepoFile(t TB, parts ...string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(append([]string{root}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("file missing: %v", err)
	}
	return p
}
