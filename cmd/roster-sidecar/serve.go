package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"roster-sidecar/admin"
	"roster-sidecar/metrics"
)

// shutdownGrace bounds the wait for in-flight refresh requests on stop.
const shutdownGrace = 30 * time.Second

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the component and the admin API",
		Long: `Connects to the XMPP server as an external component, waits for the roster
privilege, and serves the admin API (refresh, /healthz, /readyz, /metrics).
Stops gracefully on SIGINT or SIGTERM.

Every setting comes from the config file, ROSTER_SIDECAR_* environment
variables or flags (secrets only from the file, the environment or *_file).`,
		Example: `  roster-sidecar serve --config /etc/roster-sidecar/config.yaml
  ROSTER_SIDECAR_XMPP_SECRET_FILE=/run/secrets/xmpp roster-sidecar serve \
    --xmpp.domain roster.example.com --xmpp.user_domain example.com \
    --http_roster_url 'https://app.example.com/roster/%s'`,
		Args: usageArgs(cobra.NoArgs),
	}
	conf := addConfigFlags(cmd, "")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := conf.load()
		if err != nil {
			return err
		}
		return serve(cmd.Context(), cfg, newLogger(cfg, cmd.ErrOrStderr()))
	}
	return cmd
}

// serve runs until ctx ends or the server refuses the secret, then stops in
// order: the HTTP API first (in-flight refreshes finish), then the syncs
// and their pending IQs, then the XMPP stream.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	m := metrics.New()
	p, err := build(cfg, log, m)
	if err != nil {
		return err
	}
	api, err := newAdmin(cfg, p.syncer, log, m)
	if err != nil {
		return err
	}
	api.Mount("/metrics", m.Handler())
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}

	p.enableLoginRefresh(m)
	p.start()
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Serve(ln) }()
	log.Info("roster-sidecar started", "version", version, "admin", ln.Addr().String(), "xmpp", cfg.XMPPAddress, "component", cfg.XMPPDomain, "user_domain", cfg.UserDomain)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-p.connDone:
		runErr = err // only ErrAuth ends Run on its own
		p.connDone <- nil
	case err := <-apiDone:
		runErr = fmt.Errorf("admin API: %w", err)
		apiDone <- nil
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := api.Shutdown(shutdownCtx); err != nil {
		log.Warn("admin API shutdown", "error", err)
	}
	if err := <-apiDone; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("admin API: %w", err)
	}
	p.stop()
	log.Info("stopped")
	return runErr
}

// newAdmin builds the admin API from the configuration; obs may be nil.
func newAdmin(cfg Config, syncer admin.Syncer, log *slog.Logger, obs admin.Observer) (*admin.Server, error) {
	acfg := admin.Config{
		Listen:         cfg.AdminListen,
		Token:          cfg.AdminToken,
		UserDomain:     cfg.UserDomain,
		MaxBodyBytes:   cfg.AdminMaxBody,
		MaxUsers:       cfg.AdminMaxUsers,
		Concurrency:    cfg.AdminConcurrency,
		RequestTimeout: cfg.AdminTimeout,
		TLSCertFile:    cfg.AdminTLSCert,
		TLSKeyFile:     cfg.AdminTLSKey,
		Observer:       obs,
	}
	api, err := admin.New(acfg, syncer, log)
	if err != nil {
		return nil, fmt.Errorf("config: admin: %w", err)
	}
	return api, nil
}
