package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cast"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"mellium.im/xmpp/jid"

	"roster-sidecar/admin"
	"roster-sidecar/daemon"
	"roster-sidecar/leader"
	"roster-sidecar/rosterhttp"
)

// envPrefix prefixes every environment variable: xmpp.address is read from
// ROSTER_SIDECAR_XMPP_ADDRESS.
const envPrefix = "ROSTER_SIDECAR"

// setting is one configuration key with its default and help text. Secrets
// get no command-line flag: they must not show in the process list.
type setting struct {
	key    string
	def    any
	help   string
	secret bool
}

// settings lists every key; docs/configuration.md mirrors it.
var settings = []setting{
	{"xmpp.address", "127.0.0.1:5347", "host:port of the XMPP server's component listener", false},
	{"xmpp.domain", "", "the component's JID, e.g. roster.example.com (required)", false},
	{"xmpp.secret", "", "component shared secret (or xmpp.secret_file)", true},
	{"xmpp.secret_file", "", "file holding the component shared secret", false},
	{"xmpp.user_domain", "", "the (default) domain of the users whose rosters are managed: a username without a domain is one of its users (it or xmpp.user_domains is required)", false},
	{"xmpp.user_domains", []string{}, "every domain of the users whose rosters are managed, when several (a list; comma-separated in the environment or a flag); the default domain is xmpp.user_domain if set, else the first", false},
	{"xmpp.connect_timeout", 10 * time.Second, "TCP connect timeout", false},
	{"xmpp.privilege_wait", 2 * time.Second, "how long a connected component waits for the server's privilege message before check, sync and diff give up", false},
	{"xmpp.iq_timeout", 15 * time.Second, "how long to wait for each IQ reply", false},
	{"xmpp.ping_interval", 30 * time.Second, "XEP-0199 ping period that detects dead links (0 disables)", false},
	{"xmpp.reconnect_min", 500 * time.Millisecond, "first delay before reconnecting", false},
	{"xmpp.reconnect_max", 30 * time.Second, "largest delay between reconnects", false},
	{"xmpp.window", 16, "roster SETs in flight per user", false},
	{"xmpp.compare_subscription", "auto", "auto, always or never: whether a subscription difference alone rewrites an item (auto learns whether the server keeps subscriptions; ejabberd does not)", false},
	{"http_roster_url", "", "backend roster URL; the first %s is replaced by the user's localpart and every {domain} by its domain (it or http_roster_url_file is required; a token in it is better given in the file or the environment than as a flag)", false},
	{"http_roster_url_file", "", "file holding the backend roster URL, e.g. when its query carries a token", false},
	{"backend.timeout", 10 * time.Second, "timeout of one backend roster fetch", false},
	{"backend.max_body_bytes", int64(1 << 20), "largest backend answer accepted", false},
	{"backend.max_redirects", rosterhttp.DefaultMaxRedirects, "redirects followed per fetch (0: none, a redirect then fails the fetch)", false},
	{"backend.max_name_bytes", rosterhttp.DefaultMaxNameBytes, "longest contact name accepted, in bytes; a longer one skips that contact", false},
	{"backend.max_group_bytes", rosterhttp.DefaultMaxGroupBytes, "longest group name accepted, in bytes; a longer one skips that contact", false},
	{"backend.max_groups", rosterhttp.DefaultMaxGroups, "most groups per contact; more skip that contact", false},
	{"backend.max_items", rosterhttp.DefaultMaxItems, "most contacts per backend answer; more fail that user's sync and leave the roster alone", false},
	{"backend.max_item_bytes", rosterhttp.DefaultMaxItemBytes, "largest contact as the roster SET carries it (its <item/>, escaped), in bytes; keep it below the server's stanza size limit; a larger one skips that contact", false},
	{"backend.conditional_cache", rosterhttp.DefaultConditionalCache, "users whose backend validators (ETag, Last-Modified) and last sync are remembered for conditional fetches, at most (about 360 bytes each; the least recently synced forgotten first); 0 disables conditional fetches", false},
	{"backend.ca_file", "", "PEM file of extra CAs trusted for an https backend", false},
	{"backend.headers", map[string]string{}, "extra request headers for the backend (YAML map or JSON object in the env var)", true},
	{"backend.domain_urls", map[string]string{}, "backend roster URLs of some user domains, in place of http_roster_url, by domain (YAML map or JSON object in the env var; each a template as http_roster_url)", true},
	{"admin.listen", "127.0.0.1:5380", "admin API listen address (non-loopback needs admin.token or admin.hmac_secret)", false},
	{"admin.token", "", "bearer token required on /roster_admin/* (or admin.token_file; with admin.hmac_secret too, the token or a signature)", true},
	{"admin.token_file", "", "file holding the admin bearer token", false},
	{"admin.hmac_secret", "", "shared secret of HMAC-SHA256 request signatures on /roster_admin/*, at least 16 bytes (or admin.hmac_secret_file; with admin.token too, the token or a signature)", true},
	{"admin.hmac_secret_file", "", "file holding the admin HMAC secret", false},
	{"admin.max_body_bytes", int64(1 << 20), "largest refresh or push request body", false},
	{"admin.max_users", 10000, "usernames per refresh request, users per push", false},
	{"admin.concurrency", 8, "users synced at once", false},
	{"admin.request_timeout", 5 * time.Minute, "bound on one refresh request", false},
	{"admin.tls_cert_file", "", "PEM certificate for HTTPS on the admin listener", false},
	{"admin.tls_key_file", "", "PEM key for HTTPS on the admin listener", false},
	{"sync.timeout", 2 * time.Minute, "bound on one user's sync: the backend fetch and the server read must end within it; the writes go on while they progress, and fail the sync when none has succeeded for this long", false},
	{"sync.reconcile_interval", time.Hour, "after a backend 304 Not Modified, how long after the user's roster was last read in full the server read may be skipped where the server cannot say it is unchanged (Prosody; ejabberd after a sync that wrote); a roster changed behind the sidecar's back is reverted by the first refresh after this (0: always read)", false},
	{"sync.max_pending", 1024, "users being synced or waiting for a sync at most, all requests together (syncs go on when a caller stops waiting); beyond, a refresh of another user fails for that user", false},
	{"sync.on_login", true, "refresh a user's roster when a new session of the user comes online (needs the presence privilege)", false},
	{"sync.login_min_interval", 5 * time.Minute, "no login refresh for a user synced less than this ago (0: refresh at every login)", false},
	{"sync.login_rate", 20.0, "login refreshes started per second at most", false},
	{"sync.login_queue", 10000, "users waiting for a login refresh at most; beyond, they are refreshed when the queue has room (if still online) or at their next login", false},
	{"ejabberd_api.url", "", "ejabberd only: base URL of mod_http_api (e.g. http://127.0.0.1:5281/api); when set, rosters are read and written through ejabberd's API instead of XEP-0356, so subscriptions are honoured", false},
	{"ejabberd_api.user", "", "JID of the account the sidecar authenticates as on the ejabberd API (HTTP Basic), e.g. roster-sidecar@example.com", false},
	{"ejabberd_api.password", "", "password of ejabberd_api.user (or ejabberd_api.password_file)", true},
	{"ejabberd_api.password_file", "", "file holding the password of ejabberd_api.user", false},
	{"ejabberd_api.timeout", 15 * time.Second, "bound on one ejabberd API call", false},
	{"leader.lease_name", "", "name of the Kubernetes Lease for leader election among several instances: only its holder connects and syncs, the others forward the refresh calls to it (leader.advertise_url) or else answer 503 (empty: no leader election)", false},
	{"leader.lease_namespace", "", "namespace of the Lease (empty: the pod's own, from its service account)", false},
	{"leader.identity", "", "this instance's name in the Lease (empty: the host name, in Kubernetes the pod's name)", false},
	{"leader.advertise_url", "", "this instance's admin API as the other instances reach it, e.g. http://10.1.2.3:5380 (in Kubernetes from the pod IP); written into the Lease, so that standbys forward refresh, push and diff to the leader and count as ready (empty: none; standbys then answer 503)", false},
	{"leader.lease_duration", leader.DefaultLeaseDuration, "how long the others wait after the holder's last renewal before taking the lease over (whole seconds)", false},
	{"leader.renew_deadline", leader.DefaultRenewDeadline, "how long the holder tries to renew before it stops and stands by (below leader.lease_duration)", false},
	{"leader.retry_period", leader.DefaultRetryPeriod, "period of the holder's renewals and the others' polls (below leader.renew_deadline / 1.2)", false},
	{"log.level", "info", "debug, info, warn or error", false},
	{"log.format", "text", "text or json", false},
}

// newViper returns a viper instance with every default, the environment
// bound, and flags for the non-secret keys registered on fs.
func newViper(fs *pflag.FlagSet) *viper.Viper {
	v := viper.New()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
		if s.secret {
			continue
		}
		switch d := s.def.(type) {
		case string:
			fs.String(s.key, d, s.help)
		case int:
			fs.Int(s.key, d, s.help)
		case int64:
			fs.Int64(s.key, d, s.help)
		case time.Duration:
			fs.Duration(s.key, d, s.help)
		case bool:
			fs.Bool(s.key, d, s.help)
		case float64:
			fs.Float64(s.key, d, s.help)
		case []string:
			fs.StringSlice(s.key, d, s.help)
		}
		_ = v.BindPFlag(s.key, fs.Lookup(s.key))
	}
	return v
}

// loadConfig reads the optional file, then validates every value. Each
// error is one line that names the key to fix.
func loadConfig(v *viper.Viper, file string) (daemon.Config, error) {
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return daemon.Config{}, fmt.Errorf("read config file %s: %w", file, err)
		}
	}
	var errs []error
	need := func(key string) string {
		s := strings.TrimSpace(v.GetString(key))
		if s == "" {
			errs = append(errs, fmt.Errorf("%s is required (config file, --%s or %s)", key, key, envName(key)))
		}
		return s
	}
	positive := func(key string) time.Duration {
		d := v.GetDuration(key)
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration such as 10s, got %q", key, v.GetString(key)))
		}
		return d
	}
	atLeastOne := func(key string) int {
		n := v.GetInt(key)
		if n < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %q", key, v.GetString(key)))
		}
		return n
	}
	c := daemon.Config{
		XMPPAddress:      need("xmpp.address"),
		XMPPDomain:       need("xmpp.domain"),
		ConnectTimeout:   positive("xmpp.connect_timeout"),
		PrivilegeWait:    positive("xmpp.privilege_wait"),
		IQTimeout:        positive("xmpp.iq_timeout"),
		PingInterval:     v.GetDuration("xmpp.ping_interval"),
		ReconnectMin:     positive("xmpp.reconnect_min"),
		ReconnectMax:     positive("xmpp.reconnect_max"),
		Window:           atLeastOne("xmpp.window"),
		CompareSub:       v.GetString("xmpp.compare_subscription"),
		BackendTimeout:   positive("backend.timeout"),
		BackendMaxBody:   v.GetInt64("backend.max_body_bytes"),
		BackendMaxName:   atLeastOne("backend.max_name_bytes"),
		BackendMaxGroup:  atLeastOne("backend.max_group_bytes"),
		BackendMaxGroups: atLeastOne("backend.max_groups"),
		BackendMaxItems:  atLeastOne("backend.max_items"),
		BackendMaxItem:   atLeastOne("backend.max_item_bytes"),
		BackendCAFile:    v.GetString("backend.ca_file"),
		BackendHeaders:   v.GetStringMapString("backend.headers"),
		AdminListen:      need("admin.listen"),
		AdminMaxBody:     v.GetInt64("admin.max_body_bytes"),
		AdminMaxUsers:    atLeastOne("admin.max_users"),
		AdminConcurrency: atLeastOne("admin.concurrency"),
		AdminTimeout:     positive("admin.request_timeout"),
		AdminTLSCert:     v.GetString("admin.tls_cert_file"),
		AdminTLSKey:      v.GetString("admin.tls_key_file"),
		SyncTimeout:      positive("sync.timeout"),
		LoginMinInterval: v.GetDuration("sync.login_min_interval"),
		LoginQueue:       atLeastOne("sync.login_queue"),
		MaxPending:       atLeastOne("sync.max_pending"),
		EjabberdAPIURL:   strings.TrimSpace(v.GetString("ejabberd_api.url")),
		EjabberdAPIUser:  strings.TrimSpace(v.GetString("ejabberd_api.user")),
		EjabberdAPITime:  positive("ejabberd_api.timeout"),
	}
	c.UserDomain, c.UserDomains, errs = userDomains(v, errs)
	if b, err := cast.ToBoolE(v.Get("sync.on_login")); err != nil {
		errs = append(errs, fmt.Errorf("sync.on_login must be true or false, got %q", v.GetString("sync.on_login")))
	} else {
		c.OnLogin = b
	}
	if d, err := cast.ToDurationE(v.Get("sync.login_min_interval")); err != nil || d < 0 {
		errs = append(errs, fmt.Errorf("sync.login_min_interval must be a duration such as 5m (0 refreshes at every login), got %q", v.GetString("sync.login_min_interval")))
	}
	if r, err := cast.ToFloat64E(v.Get("sync.login_rate")); err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		errs = append(errs, fmt.Errorf("sync.login_rate must be a positive number of refreshes per second such as 20 or 0.5, got %q", v.GetString("sync.login_rate")))
	} else {
		c.LoginRate = r
	}
	if n, err := cast.ToIntE(v.Get("backend.conditional_cache")); err != nil || n < 0 {
		errs = append(errs, fmt.Errorf("backend.conditional_cache must be 0 (no conditional fetches) or more users, got %q", v.GetString("backend.conditional_cache")))
	} else {
		c.BackendConditional = n
	}
	if d, err := cast.ToDurationE(v.Get("sync.reconcile_interval")); err != nil || d < 0 {
		errs = append(errs, fmt.Errorf("sync.reconcile_interval must be a duration such as 1h (0 always reads the roster), got %q", v.GetString("sync.reconcile_interval")))
	} else {
		c.ReconcileInterval = d
	}
	// 0 is the operator's: unset takes the default, 3.
	if n, err := cast.ToIntE(v.Get("backend.max_redirects")); err != nil || n < 0 {
		errs = append(errs, fmt.Errorf("backend.max_redirects must be 0 (follow none) or more, got %q", v.GetString("backend.max_redirects")))
	} else {
		c.BackendRedirects = n
	}
	var err error
	if c.XMPPSecret, err = secret(v, "xmpp.secret", true); err != nil {
		errs = append(errs, err)
	}
	// The URL's query may carry the backend's token: it may come from a
	// file, and no error shows it.
	if c.RosterURL, err = secret(v, "http_roster_url", true); err != nil {
		errs = append(errs, err)
	}
	c.RosterURL = strings.TrimSpace(c.RosterURL)
	c.BackendDomainURLs, errs = domainURLs(v, c, errs)
	if c.AdminToken, err = secret(v, "admin.token", false); err != nil {
		errs = append(errs, err)
	}
	if c.AdminHMACSecret, err = secret(v, "admin.hmac_secret", false); err != nil {
		errs = append(errs, err)
	} else if n := len(c.AdminHMACSecret); n > 0 && n < admin.MinHMACSecretBytes {
		errs = append(errs, fmt.Errorf("admin.hmac_secret must be at least %d bytes (e.g. the output of openssl rand -hex 32), got %d", admin.MinHMACSecretBytes, n))
	}
	if c.EjabberdAPIPass, err = secret(v, "ejabberd_api.password", false); err != nil {
		errs = append(errs, err)
	}
	if c.EjabberdAPIURL != "" {
		if u, err := url.Parse(c.EjabberdAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, fmt.Errorf("ejabberd_api.url must be an http or https URL without credentials, such as http://127.0.0.1:5281/api, got %q", rosterhttp.RedactURL(c.EjabberdAPIURL)))
		}
	}
	if c.EjabberdAPIUser != "" {
		if j, err := jid.Parse(c.EjabberdAPIUser); err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			errs = append(errs, fmt.Errorf("ejabberd_api.user must be a bare JID such as roster-sidecar@example.com, got %q", c.EjabberdAPIUser))
		}
		if c.EjabberdAPIPass == "" {
			errs = append(errs, errors.New("ejabberd_api.password (or ejabberd_api.password_file) is required with ejabberd_api.user"))
		}
	}
	if c.BackendMaxBody < 1 || c.AdminMaxBody < 1 {
		errs = append(errs, errors.New("backend.max_body_bytes and admin.max_body_bytes must be at least 1"))
	}
	if c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, errors.New("xmpp.reconnect_max must not be smaller than xmpp.reconnect_min"))
	}
	if d := v.GetString("xmpp.domain"); d != "" {
		if _, err := parseDomain(d); err != nil {
			errs = append(errs, fmt.Errorf("xmpp.domain must be a domain name such as example.com, got %q", d))
		}
	}
	switch c.CompareSub {
	case "auto", "always", "never":
	default:
		errs = append(errs, fmt.Errorf("xmpp.compare_subscription must be auto, always or never, got %q", c.CompareSub))
	}
	c.Leader, errs = leaderConfig(v, errs)
	if c.LogLevel, err = logLevel(v.GetString("log.level")); err != nil {
		errs = append(errs, err)
	}
	switch f := v.GetString("log.format"); f {
	case "text":
	case "json":
		c.LogJSON = true
	default:
		errs = append(errs, fmt.Errorf("log.format must be text or json, got %q", f))
	}
	if len(errs) > 0 {
		return daemon.Config{}, errors.Join(errs...)
	}
	return c, nil
}

// leaderConfig reads the leader.* keys (leader election on a Kubernetes
// Lease) and appends what is wrong to errs.
func leaderConfig(v *viper.Viper, errs []error) (leader.Config, []error) {
	c := leader.Config{
		LeaseName:     strings.TrimSpace(v.GetString("leader.lease_name")),
		Namespace:     strings.TrimSpace(v.GetString("leader.lease_namespace")),
		Identity:      strings.TrimSpace(v.GetString("leader.identity")),
		AdvertiseURL:  strings.TrimSpace(v.GetString("leader.advertise_url")),
		LeaseDuration: v.GetDuration("leader.lease_duration"),
		RenewDeadline: v.GetDuration("leader.renew_deadline"),
		RetryPeriod:   v.GetDuration("leader.retry_period"),
	}
	switch {
	case c.LeaseDuration < time.Second || c.LeaseDuration%time.Second != 0:
		errs = append(errs, fmt.Errorf("leader.lease_duration must be whole seconds, at least 1s (the Lease stores seconds), got %q", v.GetString("leader.lease_duration")))
	case c.RenewDeadline <= 0 || c.RenewDeadline >= c.LeaseDuration:
		errs = append(errs, fmt.Errorf("leader.renew_deadline must be a positive duration below leader.lease_duration (%s), got %q", c.LeaseDuration, v.GetString("leader.renew_deadline")))
	case c.RetryPeriod <= 0 || float64(c.RenewDeadline) <= 1.2*float64(c.RetryPeriod):
		errs = append(errs, fmt.Errorf("leader.retry_period must be a positive duration below leader.renew_deadline / 1.2 (%s), got %q", c.RenewDeadline, v.GetString("leader.retry_period")))
	}
	if c.AdvertiseURL != "" {
		if err := leader.CheckAdvertiseURL(c.AdvertiseURL); err != nil {
			errs = append(errs, fmt.Errorf("leader.advertise_url must be the http or https URL of this instance's admin API, such as http://10.1.2.3:5380: %w", err))
		}
		if strings.ContainsFunc(c.Identity, unicode.IsSpace) {
			errs = append(errs, fmt.Errorf("leader.identity must not contain white space with leader.advertise_url, got %q", c.Identity))
		}
	}
	return c, errs
}

// parseDomain returns the domain d normalised (lower case, no trailing
// dot), or an error when it is not a domain name.
func parseDomain(d string) (string, error) {
	j, err := jid.Parse(strings.TrimSpace(d))
	if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		return "", errors.New("not a domain name")
	}
	return j.Domainpart(), nil
}

// stringList reads a list setting: a YAML list, or one string of items
// separated by commas or white space (the environment, a flag).
func stringList(v any) ([]string, error) {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return split(x), nil
	case []string:
		var out []string
		for _, s := range x {
			out = append(out, split(s)...)
		}
		return out, nil
	case []any:
		var out []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%v is not a string", e)
			}
			out = append(out, split(s)...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %T is not a list", v)
}

// userDomains reads xmpp.user_domain and xmpp.user_domains: the default
// domain and every domain served, normalised, the default first. With a
// list, the default is xmpp.user_domain when it is one of them, else the
// first. Errors are added to errs.
func userDomains(v *viper.Viper, errs []error) (string, []string, []error) {
	one := strings.TrimSpace(v.GetString("xmpp.user_domain"))
	list, err := stringList(v.Get("xmpp.user_domains"))
	if err != nil {
		return "", nil, append(errs, fmt.Errorf("xmpp.user_domains must be a list of domain names, got %q: %v", v.GetString("xmpp.user_domains"), err))
	}
	if one == "" && len(list) == 0 {
		return "", nil, append(errs, fmt.Errorf("xmpp.user_domain (or xmpp.user_domains, for several) is required (config file, --xmpp.user_domain or %s)", envName("xmpp.user_domain")))
	}
	var domains []string
	for _, d := range list {
		n, err := parseDomain(d)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("xmpp.user_domains must list domain names such as example.com, got %q", d))
		case slices.Contains(domains, n):
			errs = append(errs, fmt.Errorf("xmpp.user_domains lists %s twice", n))
		default:
			domains = append(domains, n)
		}
	}
	if one == "" {
		if len(domains) == 0 {
			return "", nil, errs
		}
		return domains[0], domains, errs
	}
	def, err := parseDomain(one)
	switch {
	case err != nil:
		return "", nil, append(errs, fmt.Errorf("xmpp.user_domain must be a domain name such as example.com, got %q", one))
	case len(list) == 0:
		return def, []string{def}, errs
	case !slices.Contains(domains, def):
		return "", nil, append(errs, fmt.Errorf("xmpp.user_domain %s is not one of xmpp.user_domains (%s): list it there too, or leave it unset (the first of the list is then the default)",
			def, strings.Join(domains, ", ")))
	}
	// The default first.
	return def, append([]string{def}, slices.DeleteFunc(domains, func(d string) bool { return d == def })...), errs
}

// domainURLs reads backend.domain_urls, whose keys must be user domains,
// and checks that no two user domains would fetch the same URLs: with
// several domains, every domain whose URL template has no {domain} needs
// a template of its own. Errors are added to errs; they never show a URL,
// which may hold a secret.
func domainURLs(v *viper.Viper, c daemon.Config, errs []error) (map[string]string, []error) {
	var raw map[string]string
	var err error
	if v.Get("backend.domain_urls") != nil { // an empty YAML key is nil
		raw, err = cast.ToStringMapStringE(v.Get("backend.domain_urls"))
	}
	if err != nil {
		return nil, append(errs, errors.New("backend.domain_urls must be a map of user domain to roster URL (a YAML map, or a JSON object in the environment)"))
	}
	urls := map[string]string{}
	for d, u := range raw {
		n, err := parseDomain(d)
		switch {
		case err != nil || !slices.Contains(c.UserDomains, n):
			errs = append(errs, fmt.Errorf("backend.domain_urls names %q, which is not one of the user domains (%s)", d, strings.Join(c.UserDomains, ", ")))
		case strings.TrimSpace(u) == "":
			errs = append(errs, fmt.Errorf("backend.domain_urls: the URL of %s is empty", n))
		default:
			urls[n] = strings.TrimSpace(u)
		}
	}
	// Which domains would fetch the same URLs.
	byTemplate := map[string][]string{}
	for _, d := range c.UserDomains {
		t, own := urls[d]
		if !own {
			t = c.RosterURL
		}
		if t != "" && !strings.Contains(t, rosterhttp.DomainPlaceholder) {
			byTemplate[t] = append(byTemplate[t], d)
		}
	}
	for _, d := range c.UserDomains { // in order, for a stable message
		for t, ds := range byTemplate {
			if len(ds) > 1 && ds[0] == d {
				what := "http_roster_url"
				if t != c.RosterURL {
					what = "backend.domain_urls"
				}
				errs = append(errs, fmt.Errorf("the user domains %s would fetch the same backend URLs (%s has no %s), and the users of one would get the rosters of the other's: "+
					"put %s in http_roster_url, or give each but one its own URL in backend.domain_urls", strings.Join(ds, " and "), what, rosterhttp.DomainPlaceholder, rosterhttp.DomainPlaceholder))
			}
		}
	}
	if len(urls) == 0 {
		return nil, errs
	}
	return urls, errs
}

// secret reads key, or the file named by key_file; not both.
func secret(v *viper.Viper, key string, required bool) (string, error) {
	val, file := v.GetString(key), v.GetString(key+"_file")
	switch {
	case val != "" && file != "":
		return "", fmt.Errorf("set %s or %s_file, not both", key, key)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", key, err)
		}
		val = strings.TrimRight(string(b), "\r\n")
		if val == "" {
			return "", fmt.Errorf("%s_file %s is empty", key, file)
		}
	case val == "" && required:
		return "", fmt.Errorf("%s is required (config file, %s, or %s_file / %s_FILE)", key, envName(key), key, envName(key))
	}
	return val, nil
}

func envName(key string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log.level must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

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
func (c *commandConfig) load() (daemon.Config, error) {
	cfg, err := loadConfig(c.v, c.file)
	if err != nil {
		return daemon.Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func newLogger(cfg daemon.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
