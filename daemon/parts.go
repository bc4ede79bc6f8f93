// Package daemon assembles roster-sidecar from its configuration: the
// backend client, the XMPP link, the ejabberd API client in API mode, the
// sync engine and the login refresher (Parts), and for serve the admin API
// and the metrics around them (Serve). It holds the start-up diagnostics
// that say what to fix when the link does not come up (LinkProblem). The
// command line (cmd/roster-sidecar) only reads the configuration and
// prints.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"roster-sidecar/component"
	"roster-sidecar/ejabberdapi"
	"roster-sidecar/metrics"
	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// Parts are what every command builds from the configuration.
type Parts struct {
	Config  Config
	Log     *slog.Logger
	Fetcher *rosterhttp.Client
	Conn    *component.Conn
	// API is ejabberd's HTTP API in API mode (ejabberd_api.url), else nil.
	API    *ejabberdapi.Client
	Syncer *rostersync.Syncer
	// Login refreshes users at login; nil unless asked for and enabled
	// (sync.on_login).
	Login *rostersync.LoginRefresher
}

// Build wires the parts. m, when not nil, observes them all; withLogin
// adds the login refresher when the configuration enables it.
func Build(cfg Config, log *slog.Logger, m *metrics.Metrics, withLogin bool) (*Parts, error) {
	bcfg := rosterhttp.Config{
		URLTemplate:  cfg.RosterURL,
		Headers:      cfg.BackendHeaders,
		Timeout:      cfg.BackendTimeout,
		MaxBodyBytes: cfg.BackendMaxBody,
		MaxRedirects: cfg.BackendRedirects,
		CAFile:       cfg.BackendCAFile,
	}
	bcfg.MaxNameBytes, bcfg.MaxGroupBytes, bcfg.MaxGroups = cfg.BackendMaxName, cfg.BackendMaxGroup, cfg.BackendMaxGroups
	bcfg.MaxItems, bcfg.MaxItemBytes = cfg.BackendMaxItems, cfg.BackendMaxItem
	bcfg.ConditionalCache = cfg.BackendConditional
	bcfg.DomainURLs = cfg.BackendDomainURLs
	domains := cfg.Domains()
	ccfg := component.Config{
		Address:        cfg.XMPPAddress,
		Domain:         cfg.XMPPDomain,
		Secret:         cfg.XMPPSecret,
		ConnectTimeout: cfg.ConnectTimeout,
		IQTimeout:      cfg.IQTimeout,
		PingInterval:   cfg.PingInterval,
		// The default domain is pinged.
		PingTo:      cfg.UserDomain + "/roster-sidecar",
		UserDomains: domains,
		// The server helper writes rosters: of no use in API mode.
		DetectHelper: cfg.EjabberdAPIURL == "",
		MinBackoff:   cfg.ReconnectMin,
		MaxBackoff:   cfg.ReconnectMax,
	}
	scfg := rostersync.SyncerConfig{
		UserDomain:          cfg.UserDomain,
		UserDomains:         domains,
		Window:              cfg.Window,
		SyncTimeout:         cfg.SyncTimeout,
		Concurrency:         cfg.AdminConcurrency,
		CompareSubscription: cfg.CompareSub,
		RememberSyncs:       cfg.LoginMinInterval,
		MaxPending:          cfg.MaxPending,
	}
	// The Syncer remembers the same users as the backend client: a 304
	// is only of use with both.
	scfg.RememberUsers, scfg.ReconcileInterval = cfg.BackendConditional, cfg.ReconcileInterval
	if m != nil {
		bcfg.Observer, ccfg.Observer, scfg.Observer = m, m, m
		m.ServeDomains(domains...)
	}
	fetcher, err := rosterhttp.New(bcfg)
	if err != nil {
		return nil, &ConfigError{Key: "http_roster_url/backend", Err: err}
	}
	conn := component.NewConn(ccfg, log)
	p := &Parts{Config: cfg, Log: log, Fetcher: fetcher, Conn: conn}
	// The rosters are read and written over XEP-0356, or in API mode
	// through ejabberd's HTTP API; the component link serves readiness
	// (and login presence) in both.
	var link rostersync.Link = conn
	var store rostersync.Store = conn
	if cfg.EjabberdAPIURL != "" {
		p.API, err = ejabberdapi.New(ejabberdapi.Config{
			URL: cfg.EjabberdAPIURL, User: cfg.EjabberdAPIUser, Password: cfg.EjabberdAPIPass, Timeout: cfg.EjabberdAPITime,
		})
		if err != nil {
			return nil, &ConfigError{Key: "ejabberd_api", Err: err}
		}
		link, store = connectedLink{conn}, p.API
		if scfg.CompareSubscription == rostersync.CompareAuto {
			scfg.CompareSubscription = rostersync.CompareAlways // the API stores subscriptions
		}
	}
	p.Syncer = rostersync.NewSyncer(scfg, link, store, fetcher, log)
	if withLogin && cfg.OnLogin {
		lcfg := rostersync.LoginConfig{
			MinInterval: cfg.LoginMinInterval,
			Rate:        cfg.LoginRate,
			QueueSize:   cfg.LoginQueue,
			// Half the sync slots at most, so that a burst of logins
			// leaves room for the backend's refresh requests.
			Concurrency: max(1, cfg.AdminConcurrency/2),
		}
		if m != nil {
			lcfg.Observer = m
		}
		p.Login = rostersync.NewLoginRefresher(lcfg, p.Syncer, log)
		conn.SetPresenceListener(p.Login)
	}
	return p, nil
}

// The component writes a user's whole plan in one request where the
// server helper answers (component.NSHelper).
var _ rostersync.BatchStore = (*component.Conn)(nil)

// In API mode, the contacts whose item gained "to" are probed after the
// writes (ejabberdapi.Client.ProbePresence).
var _ rostersync.PresenceProber = (*ejabberdapi.Client)(nil)

// connectedLink is the readiness of API mode: the component link only
// carries the login presence, and no roster privilege is needed.
type connectedLink struct{ conn *component.Conn }

func (l connectedLink) Ready(string) error       { return l.conn.Connected() }
func (l connectedLink) Changed() <-chan struct{} { return l.conn.Changed() }

// allDomainsReady reports whether every user domain's rosters can be
// synced now.
func (p *Parts) allDomainsReady() bool {
	for _, d := range p.Syncer.ReadyDomains() {
		if d.Err != nil {
			return false
		}
	}
	return true
}

// DomainProblem says what to fix for a user domain whose rosters cannot
// be synced on the current connection (Syncer.ReadyDomains says which),
// from the privileges the server sent.
func (p *Parts) DomainProblem(domain string) *LinkProblem {
	return privilegeProblem(p.Config, domain, p.Conn.Privileges())
}

// ConfigError is a setting that cannot work.
type ConfigError struct {
	// Key names the setting or group of settings.
	Key string
	Err error
}

func (e *ConfigError) Error() string { return "config: " + e.Key + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Run connects to the XMPP server and runs the sync engine until ctx ends
// or the server refuses the secret (component.ErrAuth). It stops in order:
// the login refreshes and the syncs (with their pending IQs) first, then
// the XMPP stream.
func (p *Parts) Run(ctx context.Context) error {
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLink()
	linkDone := make(chan error, 1)
	go func() { linkDone <- p.Conn.Run(linkCtx) }()

	engineCtx, stopEngine := context.WithCancel(ctx)
	var engine errgroup.Group
	engine.Go(func() error { return p.Syncer.Run(engineCtx) })
	if p.Login != nil {
		engine.Go(func() error { return p.Login.Run(engineCtx) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-linkDone: // only ErrAuth ends the link on its own
		linkDone <- nil
	}
	stopEngine()
	_ = engine.Wait()
	stopLink()
	<-linkDone
	return err
}

// WaitReady waits until the component may read and write the rosters of
// the default user domain (in API mode: until it is connected), and for
// Config.PrivilegeWait after connecting at most for those of the other
// domains (whose users fail while they are not ready: Syncer.ReadyDomains
// says which). It gives up at the first failed connection attempt, when
// connected without the roster privilege for the default domain for
// Config.PrivilegeWait, or after wait, with a *LinkProblem that says what
// to fix. Run must be running.
func (p *Parts) WaitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var grace <-chan time.Time
	for {
		changed := p.Conn.Changed()
		err := p.Syncer.Ready()
		if err == nil && p.allDomainsReady() {
			return nil
		}
		connected := err == nil || !errors.Is(err, component.ErrDisconnected)
		if connected && grace == nil {
			t := time.NewTimer(p.Config.PrivilegeWait)
			defer t.Stop()
			grace = t.C
		}
		if !connected {
			if lastErr := p.Conn.LastError(); lastErr != nil {
				return connectProblem(p.Config, lastErr)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-grace:
			if p.Syncer.Ready() == nil {
				return nil
			}
			return privilegeProblem(p.Config, p.Config.UserDomain, p.Conn.Privileges())
		case <-deadline.C:
			if p.Syncer.Ready() == nil {
				return nil
			}
			if connected {
				return privilegeProblem(p.Config, p.Config.UserDomain, p.Conn.Privileges())
			}
			return &LinkProblem{
				What: fmt.Sprintf("no connection to the XMPP server at %s within %s", p.Config.XMPPAddress, wait),
				Fix:  "check xmpp.address and the network between here and the server's component listener",
			}
		}
	}
}
