package harness

import (
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"time"
)

// StartSidecarNoWait runs `roster-sidecar serve` against srv and backend as
// StartSidecar does, but returns as soon as its admin API answers /healthz,
// without waiting for /readyz: for a second instance on one component JID,
// which stands by (not ready) while another holds the connection.
func StartSidecarNoWait(t TB, srv *Server, backend *Backend, opts SidecarOptions) *Sidecar {
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
		Process: startProcess(t, "roster-sidecar standby ("+srv.Name+")", cmd),
		Admin:   newAdmin("http://"+adminAddr, opts.Token),
		Opts:    opts,
	}
	err := WaitFor(context.Background(), s.Process, 30*time.Second, "roster-sidecar /healthz",
		HTTPCheck(s.Admin.BaseURL+"/healthz", nil, http.StatusOK))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
