package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"mellium.im/xmpp/jid"

	"roster-sidecar/component"
	"roster-sidecar/daemon"
	"roster-sidecar/ejabberdapi"
	"roster-sidecar/rosterhttp"
)

// defaultProbeUser is the user whose roster check fetches by default.
const defaultProbeUser = "roster-sidecar-check"

func checkCmd() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the config, the backend and the XMPP server's privileges",
		Long: `Checks what serve needs, in order, and says what to fix:

  config      every setting is valid (the same validation as serve)
  daemon      whether serve runs at admin.listen: then the checks from xmpp
              on are those of its connection, and check opens none
  backend     GET http_roster_url for --user answers 200 with a valid roster
              (fetched by check itself, with the same settings)
  api         (API mode) ejabberd's get_roster answers for --user: the URL,
              the credentials and the api_permissions rule work
  xmpp        the component connects and the server accepts its secret
  privileges  what the server granted, per domain
  ready       roster get and set are granted for each user domain
              (xmpp.user_domain, xmpp.user_domains)
  helper      (XEP-0356 mode) whether the server's optional helper answers,
              per user domain: presence at once and one request per user's
              changes (Prosody's mod_roster_sidecar); reported, never a failure

With several user domains, backend fetches --user's roster on each (on the
one --user names, if it names one).

It changes nothing: no roster is written, and none is read on the XMPP server
except --user's through the API in API mode.

When serve runs (its admin API answers at admin.listen of the same config,
with admin.token or admin.hmac_secret), check asks it for its link, its
privileges and its readiness (GET /roster_admin/status) instead of opening a
component connection of its own, which the server would refuse ("conflict")
or, on ejabberd, accept at the cost of both connections' privileges. Without
a daemon, or with --local, check connects as the component itself.

Exit status: 0 everything works, 1 something must be fixed.`,
		Example: `  roster-sidecar check --config /etc/roster-sidecar/config.yaml
  roster-sidecar check -c config.yaml --user john --wait 5s`,
		Args: usageArgs(cobra.NoArgs),
	}
	o := addOneShotFlags(cmd)
	cmd.Flags().StringVar(&user, "user", defaultProbeUser, "username whose roster is fetched from the backend")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !runCheck(cmd.Context(), o, user, cmd.OutOrStdout(), cmd.ErrOrStderr()) {
			return exitError(exitFailure)
		}
		return nil
	}
	return cmd
}

// checkReport prints aligned "label: result" lines, with a fix under
// failures.
type checkReport struct {
	out io.Writer
	ok  bool
}

func (r *checkReport) line(label, format string, args ...any) {
	if label != "" {
		label += ":"
	}
	fmt.Fprintf(r.out, "%-11s %s\n", label, fmt.Sprintf(format, args...))
}

func (r *checkReport) fail(label, what, fix string) {
	r.ok = false
	r.line(label, "FAIL: %s", what)
	if fix != "" {
		r.line("", "fix: %s", fix)
	}
}

// runCheck runs every check it can and reports whether all passed.
func runCheck(ctx context.Context, o *oneShot, user string, out, stderr io.Writer) bool {
	r := &checkReport{out: out, ok: true}
	cfg, err := o.conf.load()
	if err != nil {
		r.fail("config", strings.TrimPrefix(err.Error(), "config: "), "set the key it names (config file, ROSTER_SIDECAR_* environment variable or flag)")
		return false
	}
	p, err := daemon.Build(cfg, newLogger(cfg, stderr), nil, false)
	if err == nil {
		_, err = daemon.NewAdmin(cfg, p.Syncer, p.Log, nil)
	}
	if err != nil {
		r.fail("config", strings.TrimPrefix(err.Error(), "config: "), "correct the setting it names")
		return false
	}
	source := "environment and flags"
	if o.conf.file != "" {
		source = o.conf.file
	}
	r.line("config", "ok (%s)", source)

	d, why, err := o.findDaemon(ctx, cfg)
	switch {
	case err != nil:
		r.fail("daemon", err.Error(), "")
		return false
	case d != nil:
		defer d.close()
		r.line("daemon", "ok: %s answers: xmpp, privileges, ready and helper below are its connection's (check opens none)", why)
		d.settle(ctx, o.wait)
	case o.local:
		r.line("daemon", "not looked for (--local): check connects as the component itself")
	default:
		r.line("daemon", "none: %s: check connects as the component itself", why)
	}

	checkBackend(ctx, r, p, user)
	if p.API != nil {
		checkAPI(ctx, r, p, user)
	}
	if d != nil {
		checkThroughDaemon(r, d, cfg.UserDomain)
		return r.ok
	}

	s := start(ctx, p)
	defer s.stop()
	err = p.WaitReady(ctx, o.wait)
	var problem *daemon.LinkProblem
	if err != nil && !errors.As(err, &problem) {
		r.fail("xmpp", err.Error(), "")
		return false
	}
	if problem != nil && !problem.Connected {
		r.fail("xmpp", problem.What, problem.Fix)
		return false
	}
	r.line("xmpp", "ok: connected to %s as %s", cfg.XMPPAddress, cfg.XMPPDomain)
	grants := p.Conn.Privileges()
	domains := make([]string, 0, len(grants))
	for d := range grants {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	if len(domains) == 0 {
		r.line("privileges", "none received")
	}
	for i, d := range domains {
		label := "privileges"
		if i > 0 {
			label = ""
		}
		r.line(label, "%s: %s", d, grants[d])
	}
	if problem != nil {
		r.fail("ready", problem.What, problem.Fix)
		return false
	}
	several := len(cfg.Domains()) > 1
	for i, d := range p.Syncer.ReadyDomains() {
		label := "ready"
		if i > 0 {
			label = ""
		}
		switch {
		case d.Err != nil:
			pr := p.DomainProblem(d.Domain)
			r.fail(label, pr.What, pr.Fix)
		case several && d.Default:
			r.line(label, "ok: the component may read and write the rosters of %s (the default domain)", d.Domain)
		default:
			r.line(label, "ok: the component may read and write the rosters of %s", d.Domain)
		}
	}
	if p.API == nil {
		for i, d := range cfg.Domains() {
			checkHelper(ctx, r, p, d, i == 0)
		}
	}
	return r.ok
}

// checkHelper reports whether the server helper answers for a user domain
// (XEP-0356 mode), under the label "helper" when first. It is optional: a
// missing helper is no failure.
func checkHelper(ctx context.Context, r *checkReport, p *daemon.Parts, domain string, first bool) {
	label := "helper"
	if !first {
		label = ""
	}
	info, err := p.Conn.WaitServerInfo(ctx, domain)
	if err != nil {
		r.line(label, "unknown on %s: %v", domain, err)
		return
	}
	helperLine(r, label, domain, info)
}

// helperLine reports under label whether the server helper answers for
// domain, and what a server that answers no disco#info (ejabberd) means
// for presence.
func helperLine(r *checkReport, label, domain string, info component.ServerInfo) {
	switch {
	case info.Helper:
		r.line(label, "ok: %s answers %s (mod_roster_sidecar): contacts see each other's presence at once, and each user's roster changes are one request", domain, component.NSHelper)
	case info.Silent:
		r.line(label, "missing on %s, and %s did not answer disco#info, as ejabberd does", domain, domain)
		r.line("presence", "on ejabberd in XEP-0356 mode contacts NEVER see each other's presence: ejabberd stores every privileged roster write with "+
			"subscription none (as RFC 6121 tells servers to). API mode fixes it: set ejabberd_api.url (docs/deploy-ejabberd.md)")
	default:
		r.line(label, "missing on %s (optional; the Prosody module deploy/prosody/mod_roster_sidecar.lua, docs/deploy-prosody.md): "+
			"without it contacts see each other's presence only from their next status change or login, not at once, "+
			"and each roster item is a write of its own (slow for large rosters on Prosody)", domain)
	}
}

// probeJID is the JID of --user (on the default domain unless it names
// one), or a failure reported under label.
func probeJID(r *checkReport, label string, p *daemon.Parts, user string) (jid.JID, bool) {
	local, domain, err := rosterhttp.ParseUser(user, p.Config.Domains())
	if err == nil {
		var owner jid.JID
		if owner, err = jid.New(local, domain, ""); err == nil {
			return owner, true
		}
	}
	r.fail(label, fmt.Sprintf("--user: %v", err), "pass a valid username with --user")
	return jid.JID{}, false
}

// checkAPI reads the roster of user through ejabberd's HTTP API (API
// mode) and reports the outcome.
func checkAPI(ctx context.Context, r *checkReport, p *daemon.Parts, user string) {
	owner, ok := probeJID(r, "api", p, user)
	if !ok {
		return
	}
	items, err := p.API.Roster(ctx, owner.String())
	if err != nil {
		var apiErr *ejabberdapi.Error
		fix := "check ejabberd_api.url and that ejabberd's mod_http_api listens there"
		if errors.As(err, &apiErr) {
			fix = "" // the error says what to check
		}
		r.fail("api", err.Error(), fix)
		return
	}
	r.line("api", "ok: get_roster of %s answered through %s (%d items)", owner, p.Config.EjabberdAPIURL, len(items))
	// Presence probes (new friends online at once) need user_resources
	// and send_stanza; only the first can be tried without sending
	// anything. Rosters sync without them: no failure.
	if _, err := p.API.Sessions(ctx, owner.String()); err != nil {
		r.line("presence", "no probes: %v", err)
		r.line("", "fix: allow user_resources and send_stanza for the API account (the roster-sidecar rule of deploy/ejabberd/ejabberd.yml): "+
			"without them rosters still sync, but a new friend is shown online only after a status change or a new login")
		return
	}
	r.line("presence", "ok: user_resources allowed; new friends are probed for presence (send_stanza must be allowed too)")
}

// checkBackend fetches the roster of user and reports the outcome: on the
// domain user names, else on every user domain.
func checkBackend(ctx context.Context, r *checkReport, p *daemon.Parts, user string) {
	owner, ok := probeJID(r, "backend", p, user)
	if !ok {
		return
	}
	owners := []jid.JID{owner}
	if !strings.Contains(user, "@") {
		for _, d := range p.Config.Domains()[1:] {
			if o, err := jid.New(owner.Localpart(), d, ""); err == nil {
				owners = append(owners, o)
			}
		}
	}
	for i, owner := range owners {
		label := "backend"
		if i > 0 {
			label = ""
		}
		name := owner.Localpart()
		if owner.Domainpart() != p.Config.Domains()[0] {
			name = owner.String()
		}
		start := time.Now()
		roster, err := p.Fetcher.Fetch(ctx, owner)
		if err != nil {
			r.fail(label, err.Error(), backendFix(err))
			continue
		}
		r.line(label, "ok: roster of %s: %d contacts, %d skipped, in %s", name, len(roster.Items), len(roster.Skipped),
			time.Since(start).Round(time.Millisecond))
		for _, s := range roster.Skipped {
			r.line("", "skipped %q: %s", s.JID, s.Reason)
		}
	}
}

// backendFix suggests what to do about a failed fetch.
func backendFix(err error) string {
	var status *rosterhttp.StatusError
	var tooLarge *rosterhttp.TooLargeError
	var tooMany *rosterhttp.TooManyContactsError
	var notRoster *rosterhttp.NotRosterError
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &status) && (status.Code == http.StatusUnauthorized || status.Code == http.StatusForbidden):
		return "the backend refused the request: give it the credentials it expects in backend.headers (e.g. Authorization: Bearer ...)"
	case status != nil && status.Code == http.StatusNotFound:
		return "check http_roster_url (its first %s is replaced by the username, {domain} by its domain) and backend.domain_urls, or pass --user with a user the backend knows"
	case status != nil && status.Code >= 500:
		return "the backend failed: see its logs"
	case status != nil:
		return "the backend must answer 200 with a JSON object keyed by contact JID (docs/PROTOCOL.md)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens at the host and port of http_roster_url: start the backend or correct the URL"
	case errors.As(err, &dnsErr):
		return "the host of http_roster_url does not resolve: correct the URL"
	case errors.As(err, &certErr):
		return "the backend's TLS certificate is not trusted: add its CA with backend.ca_file"
	case errors.Is(err, rosterhttp.ErrTimeout):
		return "the backend answers too slowly: raise backend.timeout, or make it faster"
	case errors.As(err, &tooLarge):
		return "raise backend.max_body_bytes"
	case errors.As(err, &tooMany):
		return "raise backend.max_items, or have the backend send fewer contacts"
	case errors.Is(err, rosterhttp.ErrTooManyRedirects):
		return "point http_roster_url at the final address, or raise backend.max_redirects"
	case errors.As(err, &notRoster):
		return `the backend must answer a JSON object keyed by contact JID, e.g. {"marie@example.com": {"name": "Marie", "groups": ["Friends"]}}`
	}
	return "check http_roster_url and the backend.* settings"
}

// usageArgs makes an argument error a usage error (exit status 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
