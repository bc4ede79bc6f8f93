package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"roster-sidecar/component"
	"roster-sidecar/ejabberdapi"
	"roster-sidecar/metrics"
	"roster-sidecar/rosterhttp"
)

// commandConfig is what every command that talks to the servers shares:
// --config and one flag per non-secret setting.
type commandConfig struct {
	file string
	v    *viper.Viper
}

// addConfigFlags registers --config and the setting flags on cmd. A
// logLevel other than "" replaces the default of log.level.
func addConfigFlags(cmd *cobra.Command, logLevel string) *commandConfig {
	c := &commandConfig{}
	cmd.Flags().StringVarP(&c.file, "config", "c", "", "YAML (or JSON/TOML) config file")
	c.v = newViper(cmd.Flags())
	if logLevel != "" {
		c.v.SetDefault("log.level", logLevel)
		f := cmd.Flags().Lookup("log.level")
		f.DefValue = logLevel
		_ = f.Value.Set(logLevel)
	}
	return c
}

// load reads and validates the configuration.
func (c *commandConfig) load() (Config, error) {
	cfg, err := loadConfig(c.v, c.file)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parts are what every command builds from the configuration: the backend
// client, the XMPP link and the Syncer. serve adds the admin API.
type parts struct {
	cfg     Config
	log     *slog.Logger
	fetcher *rosterhttp.Client
	conn    *component.Conn
	// api is ejabberd's HTTP API in API mode (ejabberd_api.url), else nil.
	api    *ejabberdapi.Client
	syncer *component.Syncer
	// login refreshes users at login; nil unless enableLoginRefresh.
	login *component.LoginRefresher

	started  bool
	stopConn context.CancelFunc
	// connDone yields Conn.Run's result once (nil when stopped, ErrAuth
	// when the server refused the secret).
	connDone chan error
}

// build wires the parts; m, when not nil, observes them all.
func build(cfg Config, log *slog.Logger, m *metrics.Metrics) (*parts, error) {
	bcfg := rosterhttp.Config{
		URLTemplate:  cfg.RosterURL,
		Headers:      cfg.BackendHeaders,
		Timeout:      cfg.BackendTimeout,
		MaxBodyBytes: cfg.BackendMaxBody,
		MaxRedirects: cfg.BackendRedirects,
		CAFile:       cfg.BackendCAFile,
	}
	ccfg := component.Config{
		Address:        cfg.XMPPAddress,
		Domain:         cfg.XMPPDomain,
		Secret:         cfg.XMPPSecret,
		ConnectTimeout: cfg.ConnectTimeout,
		IQTimeout:      cfg.IQTimeout,
		PingInterval:   cfg.PingInterval,
		PingTo:         cfg.UserDomain + "/roster-sidecar",
		MinBackoff:     cfg.ReconnectMin,
		MaxBackoff:     cfg.ReconnectMax,
	}
	scfg := component.SyncerConfig{
		UserDomain:          cfg.UserDomain,
		Window:              cfg.Window,
		SyncTimeout:         cfg.SyncTimeout,
		Concurrency:         cfg.AdminConcurrency,
		CompareSubscription: cfg.CompareSub,
		RememberSyncs:       cfg.LoginMinInterval,
	}
	if m != nil {
		bcfg.Observer, ccfg.Observer, scfg.Observer = m, m, m
	}
	fetcher, err := rosterhttp.New(bcfg)
	if err != nil {
		return nil, fmt.Errorf("config: http_roster_url/backend: %w", err)
	}
	conn := component.NewConn(ccfg, log)
	// The rosters are read and written over XEP-0356, or in API mode
	// through ejabberd's HTTP API; the component link serves readiness
	// (and login presence) in both.
	var server component.RosterServer = conn
	var api *ejabberdapi.Client
	if cfg.EjabberdAPIURL != "" {
		api, err = ejabberdapi.New(ejabberdapi.Config{
			URL: cfg.EjabberdAPIURL, User: cfg.EjabberdAPIUser, Password: cfg.EjabberdAPIPass,
			Timeout: cfg.EjabberdAPITime, Ready: conn.Connected,
		})
		if err != nil {
			return nil, fmt.Errorf("config: ejabberd_api: %w", err)
		}
		server = api
	}
	return &parts{
		cfg: cfg, log: log, fetcher: fetcher, conn: conn, api: api,
		syncer:   component.NewSyncer(scfg, server, fetcher, log),
		stopConn: func() {}, connDone: make(chan error, 1),
	}, nil
}

// enableLoginRefresh makes the parts refresh users at login (sync.on_login)
// once started; obs, when not nil, counts the outcomes. Call it before
// start.
func (p *parts) enableLoginRefresh(obs component.LoginObserver) {
	if !p.cfg.OnLogin {
		return
	}
	lcfg := component.LoginConfig{
		UserDomain:  p.cfg.UserDomain,
		MinInterval: p.cfg.LoginMinInterval,
		Rate:        p.cfg.LoginRate,
		QueueSize:   p.cfg.LoginQueue,
		// Half the sync slots at most, so that a burst of logins leaves
		// room for the backend's refresh requests.
		Concurrency: max(1, p.cfg.AdminConcurrency/2),
	}
	if obs != nil {
		lcfg.Observer = obs
	}
	p.login = component.NewLoginRefresher(lcfg, p.syncer, p.log)
	p.conn.SetPresenceListener(p.login)
}

// start connects to the XMPP server in the background and keeps the link
// up until stop.
func (p *parts) start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.started, p.stopConn = true, cancel
	if p.login != nil {
		go p.login.Run()
	}
	go func() { p.connDone <- p.conn.Run(ctx) }()
}

// stop ends the login refreshes, the syncs and their pending IQs, then
// closes the XMPP stream. Call it once.
func (p *parts) stop() {
	p.halt()
	if p.started {
		<-p.connDone
	}
}

// halt ends the login refreshes, the syncs and the connection's context.
func (p *parts) halt() {
	if p.login != nil {
		p.login.Close()
	}
	p.syncer.Close()
	p.stopConn()
}

// closing counts the connections that abandon left closing. main exits
// without waiting for them; tests wait.
var closing sync.WaitGroup

// abandon is stop for a command about to exit after a failed connection:
// it does not wait for the stream to close, which after a failed handshake
// takes xmpp.connect_timeout (the library waits for a close the server
// never sends).
func (p *parts) abandon() {
	p.halt()
	if p.started {
		closing.Go(func() { <-p.connDone })
	}
}

// privilegeGrace is how long a connected component waits for the privilege
// message, which servers send right after the handshake.
var privilegeGrace = 2 * time.Second

// waitReady waits until the component may read and write the rosters of
// the user domain. It gives up at the first failed connection attempt, when
// connected without the roster privilege for privilegeGrace, or after wait,
// with a *linkProblem that says what to fix.
func (p *parts) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var connectedAt time.Time
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := p.syncer.Ready() // the roster privilege, or in API mode the link
		if err == nil {
			return nil
		}
		connected := !errors.Is(err, component.ErrDisconnected)
		if connected && connectedAt.IsZero() {
			connectedAt = time.Now()
		}
		switch {
		case connected && (time.Since(connectedAt) >= privilegeGrace || time.Now().After(deadline)):
			return privilegeProblem(p.cfg, p.conn.Privileges())
		case !connected && p.conn.LastError() != nil:
			return connectProblem(p.cfg, p.conn.LastError())
		case time.Now().After(deadline):
			return &linkProblem{
				what: fmt.Sprintf("no connection to the XMPP server at %s within %s", p.cfg.XMPPAddress, wait),
				fix:  "check xmpp.address and the network between here and the server's component listener",
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// linkProblem says why the component cannot sync rosters, and what to fix.
type linkProblem struct {
	what, fix string
	// connected is true when the component connected but lacks the
	// roster privilege.
	connected bool
}

func (p *linkProblem) Error() string { return p.what + "\n  fix: " + p.fix }

// connectProblem explains a failed connection attempt.
func connectProblem(cfg Config, err error) *linkProblem {
	msg := err.Error()
	switch {
	case errors.Is(err, component.ErrAuth):
		return &linkProblem{
			what: fmt.Sprintf("the XMPP server at %s refused the component secret for %s (not-authorized)", cfg.XMPPAddress, cfg.XMPPDomain),
			fix: fmt.Sprintf("xmpp.secret must equal the server's secret for %s (Prosody: component_secret in its Component block; "+
				"ejabberd: password of the ejabberd_service listener), and xmpp.domain must name that component", cfg.XMPPDomain),
		}
	case strings.Contains(msg, "connection refused"):
		return &linkProblem{
			what: fmt.Sprintf("nothing accepts connections at %s (connection refused)", cfg.XMPPAddress),
			fix: "start the XMPP server, or set xmpp.address to its component listener " +
				"(Prosody: component_ports and component_interfaces; ejabberd: port and ip of the ejabberd_service listener)",
		}
	case strings.Contains(msg, "conflict"):
		return &linkProblem{
			what: fmt.Sprintf("the server refused a second connection as %s (conflict)", cfg.XMPPDomain),
			fix:  "another roster-sidecar is connected as this component: stop it first, or ask its admin API to refresh instead",
		}
	case strings.Contains(msg, "host-unknown"), strings.Contains(msg, "improper-addressing"):
		return &linkProblem{
			what: fmt.Sprintf("the server at %s does not know the component %s", cfg.XMPPAddress, cfg.XMPPDomain),
			fix:  "set xmpp.domain to the component's name (Prosody: the name of its Component block; ejabberd: a name the ejabberd_service listener accepts)",
		}
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return &linkProblem{
			what: fmt.Sprintf("no answer from %s within xmpp.connect_timeout (%s): %s", cfg.XMPPAddress, cfg.ConnectTimeout, msg),
			fix:  "check xmpp.address and that no firewall drops the connection",
		}
	}
	return &linkProblem{
		what: fmt.Sprintf("cannot connect to the XMPP server at %s: %s", cfg.XMPPAddress, msg),
		fix:  "check xmpp.address and that it is the server's component (XEP-0114) listener, not its client port",
	}
}

// privilegeProblem explains a connection without roster get and set for the
// user domain; grants are what the server sent, by domain.
func privilegeProblem(cfg Config, grants map[string]component.Grants) *linkProblem {
	domain := strings.ToLower(cfg.UserDomain)
	g, seen := grants[domain]
	setBoth := fmt.Sprintf(`set roster = "both" for %s in privileged_entities of VirtualHost %q (Prosody), or mod_privilege roster: both (ejabberd)`,
		cfg.XMPPDomain, cfg.UserDomain)
	switch {
	case !seen && len(grants) > 0:
		return &linkProblem{
			connected: true,
			what:      fmt.Sprintf("connected, but the server granted privileges only for %s, not for xmpp.user_domain %s", grantedDomains(grants), cfg.UserDomain),
			fix:       "set xmpp.user_domain to the users' domain, or grant the component roster access on " + cfg.UserDomain + ": " + setBoth,
		}
	case !seen:
		return &linkProblem{
			connected: true,
			what:      fmt.Sprintf("connected, but the server sent no privilege message for %s: mod_privilege is not enabled for the component", cfg.UserDomain),
			fix: fmt.Sprintf(`Prosody: add "privilege" to modules_enabled in both VirtualHost %q and Component %q, with privileged_entities = { [%q] = { roster = "both" } } on the VirtualHost; `+
				"ejabberd: enable mod_privilege with roster: both for the component", cfg.UserDomain, cfg.XMPPDomain, cfg.XMPPDomain),
		}
	case g.Roster == "" || g.Roster == "none":
		return &linkProblem{connected: true, what: "the server granted no roster access (" + g.String() + ")", fix: setBoth}
	default:
		return &linkProblem{connected: true, what: fmt.Sprintf("the server granted roster=%s only (need get and set)", g.Roster), fix: setBoth}
	}
}

func grantedDomains(grants map[string]component.Grants) string {
	var ds []string
	for d := range grants {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return strings.Join(ds, ", ")
}
