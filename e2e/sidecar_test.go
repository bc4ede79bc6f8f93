//go:build e2e

package e2e

import (
	"fmt"
	"os"
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
