package rosterhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/internal/lru"
)

// Defaults of the Config fields left zero (Timeout, MaxBodyBytes), and
// the usual MaxRedirects.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxRedirects = 3
)

// drainBytes is how much of an unwanted answer is read so that its
// connection can be reused.
const drainBytes = 64 << 10

// Config configures a Client.
type Config struct {
	// URLTemplate is the roster URL; its first "%s" is replaced by the
	// user's localpart escaped with url.PathEscape, and every
	// DomainPlaceholder by the user's domain, escaped alike. It must be an
	// absolute http or https URL with the "%s" (and any DomainPlaceholder)
	// in its path or query.
	URLTemplate string
	// DomainURLs are the roster URL templates of some user domains, in
	// place of URLTemplate, by normalised domain; each is a template as
	// URLTemplate is.
	DomainURLs map[string]string
	// Headers are extra request headers, such as Authorization. They are
	// sent after Accept, so they may replace it, and are dropped when a
	// redirect leads to another host. Host cannot be set here.
	Headers map[string]string
	// Timeout bounds a whole fetch, reading the answer included;
	// DefaultTimeout when zero.
	Timeout time.Duration
	// MaxBodyBytes is the largest answer accepted; DefaultMaxBodyBytes when
	// zero.
	MaxBodyBytes int64
	// MaxRedirects is how many redirects a fetch follows before it fails;
	// zero follows none: a redirect answer fails the fetch (it is no
	// default, as zero is the operator's way to allow no other URL; set
	// DefaultMaxRedirects for the usual). A redirect from https to http
	// always fails.
	MaxRedirects int
	// CAFile optionally names a PEM file of CA certificates trusted in
	// addition to the system's. Certificates are always verified.
	CAFile string
	// MaxNameBytes, MaxGroupBytes, MaxGroups, MaxItems and MaxItemBytes
	// are the Limits of the answers (see Limits.Parse); each takes its
	// default when zero.
	MaxNameBytes, MaxGroupBytes, MaxGroups, MaxItems, MaxItemBytes int
	// ConditionalCache is how many users' validators (the ETag and
	// Last-Modified of their last answer) FetchChanged remembers at most,
	// the least recently used forgotten first; zero or less remembers none,
	// and FetchChanged then fetches like Fetch. Each entry takes about
	// 180 bytes with a 64-byte ETag (DefaultConditionalCache: 18 MB).
	ConditionalCache int
	// Observer, when not nil, is told about every fetch (for metrics).
	Observer Observer
}

// Observer receives a measurement of every fetch, e.g. to feed metrics. It
// is called concurrently and must not block.
type Observer interface {
	// FetchDone reports one fetch: class is the status class of the
	// backend's answer ("2xx", "4xx", "5xx" ...) or "error" when no
	// complete answer was read (network error, timeout, body too large);
	// d runs from sending the request to reading the body.
	FetchDone(class string, d time.Duration)
	// ConditionalFetch reports a fetch that sent validators (FetchChanged):
	// ConditionalNotModified, ConditionalModified or ConditionalError.
	ConditionalFetch(outcome string)
}

// Client fetches rosters from the backend. It is safe for concurrent use and
// keeps connections alive between fetches.
type Client struct {
	// template is URLTemplate's; domainTemplates are DomainURLs'.
	template        urlTemplate
	domainTemplates map[string]urlTemplate
	header          http.Header
	timeout         time.Duration
	maxBody         int64
	maxRedirects    int
	hc              *http.Client
	observer        Observer
	limits          Limits
	// secrets are what error texts hide of the URLs (urlSecrets).
	secrets []string
	// validators holds each user's last validators for FetchChanged; nil
	// when Config.ConditionalCache is zero.
	validators *lru.Cache[cacheKey, validators]
}

// New checks cfg and returns a Client for it.
func New(cfg Config) (*Client, error) {
	c := &Client{
		timeout:      cfg.Timeout,
		maxBody:      cfg.MaxBodyBytes,
		maxRedirects: cfg.MaxRedirects,
		header:       make(http.Header, len(cfg.Headers)),
		observer:     cfg.Observer,
		validators:   newValidatorCache(cfg.ConditionalCache),
	}
	var err error
	if c.template, err = parseTemplate(cfg.URLTemplate); err != nil {
		return nil, fmt.Errorf("roster URL template %w", err)
	}
	c.secrets = urlSecrets(c.template)
	for domain, raw := range cfg.DomainURLs {
		t, err := parseTemplate(raw)
		if err != nil {
			return nil, fmt.Errorf("roster URL template of %s %w", domain, err)
		}
		if c.domainTemplates == nil {
			c.domainTemplates = map[string]urlTemplate{}
		}
		c.domainTemplates[strings.ToLower(domain)] = t
		for _, s := range urlSecrets(t) {
			if !slices.Contains(c.secrets, s) {
				c.secrets = append(c.secrets, s)
			}
		}
	}
	slices.SortFunc(c.secrets, func(a, b string) int { return len(b) - len(a) })
	switch {
	case c.timeout < 0:
		return nil, fmt.Errorf("roster fetch timeout %s is negative", c.timeout)
	case c.timeout == 0:
		c.timeout = DefaultTimeout
	}
	switch {
	case c.maxBody < 0:
		return nil, fmt.Errorf("roster body limit %d is negative", c.maxBody)
	case c.maxBody == 0:
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.maxRedirects < 0 {
		return nil, fmt.Errorf("roster redirect limit %d is negative", c.maxRedirects)
	}
	c.limits, err = Limits{
		MaxNameBytes: cfg.MaxNameBytes, MaxGroupBytes: cfg.MaxGroupBytes, MaxGroups: cfg.MaxGroups,
		MaxItems: cfg.MaxItems, MaxItemBytes: cfg.MaxItemBytes,
	}.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("roster %w", err)
	}
	for name, value := range cfg.Headers {
		if err := checkHeader(name, value); err != nil {
			return nil, err
		}
		canonical := http.CanonicalHeaderKey(name)
		if _, dup := c.header[canonical]; dup {
			return nil, fmt.Errorf("roster request header %s is given twice", canonical)
		}
		c.header.Set(canonical, value)
	}

	// Like http.DefaultTransport, with more idle connections per host, as all
	// fetches go to the same backend.
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if cfg.CAFile != "" {
		pool, err := loadCAs(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.hc = &http.Client{Transport: transport, CheckRedirect: c.checkRedirect}
	return c, nil
}

// DomainPlaceholder is replaced by the user's domain in a roster URL
// template. Braces may not appear unescaped in a URL (RFC 3986), so no URL
// that worked before has it.
const DomainPlaceholder = "{domain}"

// urlTemplate is a roster URL template split around its first "%s".
type urlTemplate struct {
	prefix, suffix string
}

// Samples that parseTemplate and urlSecrets put in templates.
const (
	sampleUser   = "rosterhttp-sample-user"
	sampleDomain = "rosterhttp-sample-domain.example"
)

// parseTemplate splits raw and checks that it makes absolute http(s) URLs
// with the username, and the domain if it has DomainPlaceholder, in the
// path or query. Its errors do not show the template, which may hold a
// secret; they read after "roster URL template".
func parseTemplate(raw string) (urlTemplate, error) {
	var t urlTemplate
	var ok bool
	if t.prefix, t.suffix, ok = strings.Cut(raw, "%s"); !ok {
		return t, errors.New(`has no "%s" for the username`)
	}
	u, err := url.Parse(t.url(sampleUser, sampleDomain))
	if err != nil {
		return t, fmt.Errorf("does not make a valid URL: %w", urlProblem(err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return t, errors.New("does not make an absolute http or https URL")
	}
	if !strings.Contains(u.EscapedPath(), sampleUser) && !strings.Contains(u.RawQuery, sampleUser) {
		return t, errors.New(`must have its first "%s" in the path or query`)
	}
	if strings.Contains(raw, DomainPlaceholder) && (strings.Contains(u.Host, sampleDomain) ||
		u.User != nil && strings.Contains(u.User.String(), sampleDomain) || strings.Contains(u.Fragment, sampleDomain)) {
		return t, errors.New("must have " + DomainPlaceholder + " in the path or query only")
	}
	return t, nil
}

// url returns the roster URL of the user local@domain.
func (t urlTemplate) url(local, domain string) string {
	d := url.PathEscape(domain)
	return strings.ReplaceAll(t.prefix, DomainPlaceholder, d) + url.PathEscape(local) + strings.ReplaceAll(t.suffix, DomainPlaceholder, d)
}

// checkHeader rejects a header that net/http would refuse to send or that
// would break the request.
func checkHeader(name, value string) error {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
		return fmt.Errorf("roster request header name %q is not valid", name)
	}
	if http.CanonicalHeaderKey(name) == "Host" {
		return errors.New("roster request header Host cannot be set; put the host in the URL template")
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		// The value may be a secret: do not show it.
		return fmt.Errorf("roster request header %s has a value with a line break or NUL", http.CanonicalHeaderKey(name))
	}
	return nil
}

// isTokenChar reports whether r may occur in a header name (RFC 9110 tchar).
func isTokenChar(r rune) bool {
	return r < 0x7f && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// loadCAs returns the system's certificate pool plus the PEM file's ones.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read roster CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("roster CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// checkRedirect limits redirects, refuses https to http and drops the extra
// headers when a redirect leaves the configured host.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if c.maxRedirects == 0 {
		return fmt.Errorf("backend answered a redirect, and no redirect may be followed: %w", ErrTooManyRedirects)
	}
	if len(via) > c.maxRedirects {
		return fmt.Errorf("more than %d redirects: %w", c.maxRedirects, ErrTooManyRedirects)
	}
	if via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("refused a redirect from https to http")
	}
	if req.URL.Host != via[0].URL.Host {
		for name := range c.header {
			req.Header.Del(name)
		}
	}
	return nil
}

// url returns the roster URL of the user local@domain: DomainURLs' template
// of the domain, else URLTemplate's.
func (c *Client) url(local, domain string) string {
	if t, ok := c.domainTemplates[domain]; ok {
		return t.url(local, domain)
	}
	return c.template.url(local, domain)
}

// Fetch fetches and parses the roster of owner from the backend (see
// Limits.Parse, with the Config's limits).
// Any failure, including a non-200 answer, a timeout and an answer over the
// size limit, is an error, after which the user's roster must be left alone.
// Error texts never show header values nor the URL, whose user information
// and query may hold a secret (not even where the backend echoes them, as in
// a redirect's Location); a network error may name the backend's host and
// port.
func (c *Client) Fetch(ctx context.Context, owner jid.JID) (Roster, error) {
	return c.fetchRoster(ctx, owner, false, false)
}

// FetchChanged is Fetch for the sync engine: it remembers the validators
// (ETag, Last-Modified) of each 200 answer, and with ifChanged it sends
// those of the user's last answer as If-None-Match and If-Modified-Since.
// The backend's 304 Not Modified to that returns a Roster with only
// NotModified set: the backend's roster is still the one of that last
// answer. A 304 to a request without validators is an error, as with
// Fetch.
//
// The remembered validators are always those of the user's last answer
// fetched by FetchChanged, so a caller that serialises its calls per user
// (as rostersync.Syncer does) knows which answer a 304 refers to: a failed
// fetch, or an answer without validators, forgets them, and Fetch neither
// uses nor changes them. At most Config.ConditionalCache users are
// remembered; with none, FetchChanged is Fetch.
func (c *Client) FetchChanged(ctx context.Context, owner jid.JID, ifChanged bool) (Roster, error) {
	return c.fetchRoster(ctx, owner, c.validators != nil, ifChanged)
}

// fetchRoster is Fetch, remembering validators when remember, and sending
// them when also ifChanged.
func (c *Client) fetchRoster(ctx context.Context, owner jid.JID, remember, ifChanged bool) (Roster, error) {
	r, err := c.fetch(ctx, owner, remember, ifChanged)
	if err != nil {
		return Roster{}, fmt.Errorf("fetch roster of %s: %w", owner.Bare(), redact(err, c.secrets))
	}
	return r, nil
}

// fetch does the work of fetchRoster; its errors lack the user.
func (c *Client) fetch(parent context.Context, owner jid.JID, remember, ifChanged bool) (r Roster, err error) {
	if owner.Localpart() == "" {
		return Roster{}, errors.New("the user's JID has no localpart")
	}
	// Whatever asked for the sync (a refresh call, a login, the command
	// line), the username is checked here, before any request.
	user, err := parseLocal(owner.Localpart(), []jid.JID{owner.Domain()})
	if err != nil {
		return Roster{}, fmt.Errorf("invalid username %s: %w", quote(owner.Localpart()), err)
	}
	local, domain := user.Localpart(), user.Domainpart()
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(local, domain), nil)
	if err != nil {
		return Roster{}, c.failure(parent, ctx, "build request", err)
	}
	req.Header.Set("Accept", "application/json")
	for name, values := range c.header {
		req.Header[name] = values
	}
	var key cacheKey
	conditional := false
	if remember {
		key = keyOf(local, domain)
		if v, ok := c.validators.Get(key); ok && ifChanged {
			v.set(req.Header)
			conditional = true
		}
		// Whatever fails forgets the validators: the next fetch is not
		// conditional.
		defer func() {
			if err != nil {
				c.validators.Delete(key)
			}
		}()
	}

	class, start := "error", time.Now()
	if c.observer != nil {
		defer func() {
			c.observer.FetchDone(class, time.Since(start))
			if conditional {
				outcome := ConditionalModified
				switch {
				case err != nil:
					outcome = ConditionalError
				case r.NotModified:
					outcome = ConditionalNotModified
				}
				c.observer.ConditionalFetch(outcome)
			}
		}()
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Roster{}, c.failure(parent, ctx, "request", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && conditional {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		class = "3xx"
		return Roster{NotModified: true}, nil
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		class = fmt.Sprintf("%dxx", resp.StatusCode/100)
		return Roster{}, &StatusError{Code: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return Roster{}, c.failure(parent, ctx, "read answer", err)
	}
	if int64(len(body)) > c.maxBody {
		return Roster{}, &TooLargeError{Limit: c.maxBody}
	}
	class = "2xx"
	if r, err = c.limits.Parse(body, owner); err != nil || !remember {
		return r, err
	}
	if v := validatorsOf(resp.Header); !v.empty() {
		c.validators.Put(key, v)
		r.Validated = true
	} else {
		c.validators.Delete(key)
	}
	return r, nil
}

// failure describes a failed step of a fetch. It drops the URL that net/http
// puts in its errors, as the URL may hold a secret, and names the timeout
// when it was this fetch's own deadline that struck.
func (c *Client) failure(parent, ctx context.Context, step string, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w within %s: %w", step, ErrTimeout, c.timeout, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}
