package harness

import (
	"context"
	"net/http"
	"time"
)

// StartSidecarNoWait runs `roster-sidecar serve` against srv and backend as
// StartSidecar does, but returns as soon as its admin API answers /healthz,
// without waiting for /readyz: for a second instance on one component JID,
// which stands by (not ready) while another holds the connection.
func StartSidecarNoWait(t TB, srv *Server, backend *Backend, opts SidecarOptions) *Sidecar {
	t.Helper()
	s := startSidecarProcess(t, "roster-sidecar standby ("+srv.Name+")", srv, backend, opts)
	err := WaitFor(context.Background(), s.Process, 30*time.Second, "roster-sidecar /healthz",
		HTTPCheck(s.Admin.BaseURL+"/healthz", nil, http.StatusOK))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
