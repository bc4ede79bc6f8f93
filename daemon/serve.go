package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"roster-sidecar/admin"
	"roster-sidecar/metrics"
	"roster-sidecar/rosterhttp"
)

// Serve runs the daemon until ctx ends or the server refuses the secret:
// the XMPP link, the sync engine, the login refresher and the admin API
// with /metrics. It stops in order: the HTTP API first (in-flight
// refreshes finish, within admin.DefaultShutdownGrace), then the syncs and
// their pending IQs, then the XMPP stream. version is logged at start.
func Serve(ctx context.Context, cfg Config, log *slog.Logger, version string) error {
	m := metrics.New()
	p, err := Build(cfg, log, m, true)
	if err != nil {
		return err
	}
	var syncer admin.Syncer = p.Syncer
	run, status := p.Run, p.LinkStatus
	// Leader election (leader.go): only the lease holder runs the parts,
	// and the standbys forward the refresh calls to it.
	var el *elected
	if cfg.Leader.Enabled() {
		if el, err = newElected(cfg, log, m, p); err != nil {
			return err
		}
		syncer, run, status = el, el.Run, el.LinkStatus
	}
	api, err := NewAdmin(cfg, syncer, log, m)
	if err != nil {
		return err
	}
	api.Mount("/metrics", m.Handler())
	api.SetStatus(version, status)
	if el != nil {
		api.SetLeader(el.Role, el.forwardObserver())
	}
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return &ConfigError{Key: "admin.listen", Err: err}
	}

	// Neither part's context is ctx: the API stops first, and the parts
	// must keep running until its in-flight refreshes are done.
	partsCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopParts()
	partsDone := make(chan error, 1)
	go func() { partsDone <- run(partsCtx) }()
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Run(apiCtx, ln) }()
	log.Info("roster-sidecar started", "version", version, "admin", ln.Addr().String(), "xmpp", cfg.XMPPAddress, "component", cfg.XMPPDomain, "user_domains", cfg.Domains())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping")
	case runErr = <-partsDone: // only ErrAuth ends the parts on their own
		partsDone <- nil
	case err := <-apiDone: // Run returns early only when its listener fails
		runErr = fmt.Errorf("admin API: %w", err)
		apiDone <- nil
	}

	stopAPI()
	if err := <-apiDone; err != nil {
		log.Warn("admin API shutdown", "error", err)
	}
	stopParts()
	<-partsDone
	log.Info("stopped")
	return runErr
}

// NewAdmin builds the admin API from the configuration; obs may be nil.
func NewAdmin(cfg Config, syncer admin.Syncer, log *slog.Logger, obs admin.Observer) (*admin.Server, error) {
	acfg := admin.Config{
		Listen:         cfg.AdminListen,
		Token:          cfg.AdminToken,
		HMACSecret:     cfg.AdminHMACSecret,
		UserDomain:     cfg.UserDomain,
		UserDomains:    cfg.Domains(),
		MaxBodyBytes:   cfg.AdminMaxBody,
		MaxUsers:       cfg.AdminMaxUsers,
		Concurrency:    cfg.AdminConcurrency,
		RequestTimeout: cfg.AdminTimeout,
		TLSCertFile:    cfg.AdminTLSCert,
		TLSKeyFile:     cfg.AdminTLSKey,
		Observer:       obs,
		// A pushed roster is held to the limits of a backend answer.
		RosterLimits: rosterhttp.Limits{
			MaxNameBytes: cfg.BackendMaxName, MaxGroupBytes: cfg.BackendMaxGroup, MaxGroups: cfg.BackendMaxGroups,
			MaxItems: cfg.BackendMaxItems, MaxItemBytes: cfg.BackendMaxItem,
		},
		MaxRosterBytes: cfg.BackendMaxBody,
	}
	api, err := admin.New(acfg, syncer, log)
	if err != nil {
		return nil, &ConfigError{Key: "admin", Err: err}
	}
	return api, nil
}
