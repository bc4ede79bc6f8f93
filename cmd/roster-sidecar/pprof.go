//go:build pprof

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

// Built with -tags pprof (the benchmark does, for -pprof), the binary
// serves net/http/pprof on ROSTER_SIDECAR_PPROF_LISTEN when it is set. Release
// builds never contain this file.
func init() {
	if addr := os.Getenv("ROSTER_SIDECAR_PPROF_LISTEN"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
