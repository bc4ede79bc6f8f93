package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"roster-sidecar/admin"
	"roster-sidecar/component"
	"roster-sidecar/rosterhttp"
)

// shutdownGrace bounds the wait for in-flight refresh requests on stop.
const shutdownGrace = 30 * time.Second

func serveCmd() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the component and the admin API",
		Long: `Connects to the XMPP server as an external component, waits for the roster
privilege, and serves the admin API. Stops gracefully on SIGINT or SIGTERM.

Every setting comes from the config file, ROSTER_SIDECAR_* environment
variables or flags (secrets only from the file, the environment or *_file).`,
		Example: `  roster-sidecar serve --config /etc/roster-sidecar/config.yaml
  ROSTER_SIDECAR_XMPP_SECRET_FILE=/run/secrets/xmpp roster-sidecar serve \
    --xmpp.domain roster.example.com --xmpp.user_domain example.com \
    --http_roster_url 'https://app.example.com/roster/%s'`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "YAML (or JSON/TOML) config file")
	v := newViper(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(v, configFile)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return serve(ctx, cfg, newLogger(cfg, os.Stderr))
	}
	return cmd
}

func newLogger(cfg Config, w *os.File) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs until ctx ends or the server refuses the secret, then stops in
// order: the HTTP API first (in-flight refreshes finish), then the syncs
// and their pending IQs, then the XMPP stream.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	fetcher, err := rosterhttp.New(rosterhttp.Config{
		URLTemplate:  cfg.RosterURL,
		Headers:      cfg.BackendHeaders,
		Timeout:      cfg.BackendTimeout,
		MaxBodyBytes: cfg.BackendMaxBody,
		MaxRedirects: cfg.BackendRedirects,
		CAFile:       cfg.BackendCAFile,
	})
	if err != nil {
		return fmt.Errorf("config: http_roster_url/backend: %w", err)
	}
	conn := component.NewConn(component.Config{
		Address:        cfg.XMPPAddress,
		Domain:         cfg.XMPPDomain,
		Secret:         cfg.XMPPSecret,
		ConnectTimeout: cfg.ConnectTimeout,
		IQTimeout:      cfg.IQTimeout,
		PingInterval:   cfg.PingInterval,
		PingTo:         cfg.UserDomain + "/roster-sidecar",
		MinBackoff:     cfg.ReconnectMin,
		MaxBackoff:     cfg.ReconnectMax,
	}, log)
	syncer := component.NewSyncer(component.SyncerConfig{
		UserDomain:          cfg.UserDomain,
		Window:              cfg.Window,
		SyncTimeout:         cfg.SyncTimeout,
		Concurrency:         cfg.AdminConcurrency,
		CompareSubscription: cfg.CompareSub,
	}, conn, fetcher, log)
	api, err := admin.New(admin.Config{
		Listen:         cfg.AdminListen,
		Token:          cfg.AdminToken,
		UserDomain:     cfg.UserDomain,
		MaxBodyBytes:   cfg.AdminMaxBody,
		MaxUsers:       cfg.AdminMaxUsers,
		Concurrency:    cfg.AdminConcurrency,
		RequestTimeout: cfg.AdminTimeout,
		TLSCertFile:    cfg.AdminTLSCert,
		TLSKeyFile:     cfg.AdminTLSKey,
	}, syncer, log)
	if err != nil {
		return fmt.Errorf("config: admin: %w", err)
	}
	api.Mount("/metrics", promhttp.Handler())
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}

	connCtx, stopConn := context.WithCancel(context.Background())
	connDone := make(chan error, 1)
	go func() { connDone <- conn.Run(connCtx) }()
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Serve(ln) }()
	log.Info("roster-sidecar started", "version", version, "admin", ln.Addr().String(), "xmpp", cfg.XMPPAddress, "component", cfg.XMPPDomain, "user_domain", cfg.UserDomain)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case err := <-connDone:
		runErr = err // only ErrAuth ends Run on its own
		connDone <- nil
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
	syncer.Close()
	stopConn()
	<-connDone
	log.Info("stopped")
	return runErr
}
