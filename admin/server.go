// Package admin is the sidecar's HTTP API (PROTOCOL.md sections 2 and 3): the
// backend asks it to refresh users' rosters, and operators probe its health.
//
// Routes:
//
//	POST     /roster_admin/refresh        body: JSON array of usernames
//	GET|POST /roster_admin/refresh/:user  one user
//	POST     /roster_admin/push           body: JSON object, rosters by username
//	POST     /roster_admin/diff           body: JSON array of usernames; changes nothing
//	GET      /roster_admin/status         readiness, link, privileges and limits
//	GET      /healthz                     200 while the process runs
//	GET      /readyz                      200 when Syncer.Ready() == nil, else 503; lists the domains
//	                                      (a standby: 200 while it knows a leader to forward to)
//	GET      /openapi.yaml                the OpenAPI 3 description of the API
//
// Usernames are localparts of the default domain (Config.UserDomain) or
// bare JIDs on any domain served (Config.UserDomains); results name the
// default domain's users by localpart and the others by bare JID.
//
// With leader election ([Server.SetLeader]), a standby forwards refresh,
// push and diff to the leader and relays its answers (forward.go).
//
// More routes (such as /metrics) can be added with [Server.Mount]. Every
// answer but the OpenAPI document is JSON; every error, including unknown
// routes (404), wrong methods (405) and recovered panics (500), has the body
// {"status":"error","message":"..."}.
//
// # Authentication
//
// With Config.Token, a /roster_admin request passes with that bearer
// token; with Config.HMACSecret, it passes with a valid request signature
// (signature.go, PROTOCOL.md "Signed requests"). With both, either one
// suffices. Without either, the API listens on loopback only.
//
// # Browsers
//
// The API listens on loopback without a token by default, where every web
// page open in a browser on the same host can send it requests. It refuses
// them with 403 before anything runs; backends and curl, which send neither
// Sec-Fetch-Site nor Origin, are not affected:
//
//   - Cross-origin requests: under /roster_admin (every method, GET
//     included, since GET /roster_admin/refresh/:user refreshes), a request
//     whose Sec-Fetch-Site is cross-site or same-site (or unknown), or, without
//     Sec-Fetch-Site, whose Origin does not match its Host. Same-origin
//     requests and typed URLs (Sec-Fetch-Site: none) pass. These are the
//     rules of [http.CrossOriginProtection], applied to GET, HEAD and
//     OPTIONS too. The read-only routes (/healthz, /readyz, /metrics,
//     /openapi.yaml) answer any page, whose scripts cannot read the answers.
//   - DNS rebinding: without a token or an HMAC secret, every route
//     answers only requests whose Host is a loopback name (localhost,
//     127.0.0.0/8 or [::1], with or without a port, or no Host at all), so a
//     page whose own name was made to resolve to 127.0.0.1 can neither
//     refresh nor read anything. With a token or a secret any Host is
//     served: they protect the refreshes.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"mellium.im/xmpp/jid"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// Defaults used for zero Config fields.
const (
	// DefaultListen is the loopback address listened on by default.
	DefaultListen = "127.0.0.1:5380"
	// DefaultMaxBodyBytes limits a refresh request body to 1 MiB.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxUsers limits the usernames of one refresh request, and the
	// users of one push.
	DefaultMaxUsers = 10000
	// DefaultConcurrency is how many users are synced at once.
	DefaultConcurrency = 8
	// DefaultRequestTimeout bounds one refresh request.
	DefaultRequestTimeout = 5 * time.Minute
	// DefaultShutdownGrace bounds the wait for in-flight requests when Run
	// stops.
	DefaultShutdownGrace = 30 * time.Second
)

// Timeouts of the HTTP server. The write timeout is RequestTimeout plus
// writeTimeoutSlack, so that a refresh that runs to its bound can still answer.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	idleTimeout       = 2 * time.Minute
	writeTimeoutSlack = 30 * time.Second
	maxHeaderBytes    = 64 << 10
	// maxPanicStack bounds the stack logged with a recovered panic.
	maxPanicStack = 64 << 10
)

// adminPrefix is the path prefix guarded by the bearer token.
const adminPrefix = "/roster_admin"

// errShuttingDown cancels in-flight refreshes when Run's grace period runs
// out.
var errShuttingDown = errors.New("server shutting down")

// Messages of the 403 answers to browser requests (see the package doc).
const (
	msgCrossOrigin = "cross-origin request refused: web pages may not call /roster_admin " +
		"(Sec-Fetch-Site or Origin names another site)"
	msgForeignHost = "request refused: without admin.token or admin.hmac_secret the API answers only requests " +
		"whose Host is a loopback name (localhost, 127.0.0.0/8, [::1])"
)

// Syncer is what the API needs from the component.
type Syncer interface {
	// Ready returns nil when refreshes can run, else an error saying why
	// (not connected, roster privilege not granted ...).
	Ready() error
	// Sync brings one user's roster (normalised localpart) in line with the
	// backend. It must return soon after ctx ends.
	Sync(ctx context.Context, user string) rostersync.Result
	// Push is Sync with the desired roster given instead of fetched from
	// the backend (rostersync.Syncer.Push).
	Push(ctx context.Context, user string, desired rosterhttp.Roster) rostersync.Result
	// Preview returns what Sync would change for user, writing nothing
	// (rostersync.Syncer.Preview). It must return soon after ctx ends.
	Preview(ctx context.Context, user string) (rostersync.Preview, error)
}

// Observer receives measurements of the API, e.g. to feed Prometheus
// metrics. Its methods are called concurrently and must not block.
type Observer interface {
	// ObserveRequest is called once per HTTP request after the answer was
	// written, with the matched route pattern (such as
	// "/roster_admin/refresh/:user"; empty or a catch-all when none matched),
	// the status code and the time taken.
	ObserveRequest(method, route string, code int, d time.Duration)
}

// Config configures the API server. Zero values take the defaults named on
// each field.
type Config struct {
	// Listen is the TCP address to listen on; default DefaultListen.
	Listen string
	// Token, when set, is the bearer token every /roster_admin/* request
	// must carry (or, with HMACSecret too, a valid signature). Without it or
	// HMACSecret, New refuses a non-loopback Listen address.
	Token string
	// HMACSecret, when set, is the shared secret of request signatures
	// (HMAC-SHA256, see signature.go): every /roster_admin/* request must
	// be signed with it (or, with Token too, carry the token). At least
	// MinHMACSecretBytes long.
	HMACSecret string
	// UserDomain is the default XMPP domain of the users (required); a
	// username may be given as "user" or "user@UserDomain", and results
	// name its users by localpart.
	UserDomain string
	// UserDomains are the other domains served (UserDomain may be listed
	// too): their users are given, and named in results, as bare JIDs
	// ("user@other.example"). A user of a domain not served fails alone in
	// a bulk refresh or a push.
	UserDomains []string
	// MaxBodyBytes limits the request body of a refresh or push (and of a
	// signed request, read to check its signature); default
	// DefaultMaxBodyBytes. Larger bodies are answered with 413.
	MaxBodyBytes int64
	// MaxUsers limits the usernames in one refresh request, counted as
	// sent (before removing duplicates), and the users of one push; default
	// DefaultMaxUsers. More are answered with 400.
	MaxUsers int
	// RosterLimits are the limits of a pushed roster: those of the
	// backend's answers (zero fields take rosterhttp's defaults).
	RosterLimits rosterhttp.Limits
	// MaxRosterBytes limits one user's roster in a push, as sent, like the
	// size limit of a backend answer; default rosterhttp.DefaultMaxBodyBytes.
	// A larger one fails that user.
	MaxRosterBytes int64
	// Concurrency is how many users one request syncs at once; default
	// DefaultConcurrency. The bound across all requests belongs to the
	// Syncer, so that requests waiting for the same user share its sync.
	Concurrency int
	// RequestTimeout bounds one refresh request; default
	// DefaultRequestTimeout. Users not synced when it ends fail with
	// "request cancelled".
	RequestTimeout time.Duration
	// ShutdownGrace is how long Run waits for in-flight requests once its
	// context ends; default DefaultShutdownGrace. Refreshes still running
	// then are cancelled: their users not synced yet fail with
	// "request cancelled: server shutting down".
	ShutdownGrace time.Duration
	// TLSCertFile and TLSKeyFile, when both set, make the listener serve
	// HTTPS with this PEM certificate and key. Set both or neither.
	TLSCertFile, TLSKeyFile string
	// Observer, when not nil, receives measurements for metrics.
	Observer Observer
}

// DomainReporter is a Syncer that says which of the domains it serves are
// ready (rostersync.Syncer): /readyz lists them.
type DomainReporter interface {
	ReadyDomains() []rostersync.DomainReady
}

// Server is the admin HTTP API. Create it with New.
type Server struct {
	cfg    Config
	syncer Syncer
	// domains are the domains served, normalised, the default first.
	domains   []string
	log       *slog.Logger
	echo      *echo.Echo
	tokenHash [sha256.Size]byte
	tlsConfig *tls.Config
	// crossOrigin holds the rules for refusing cross-origin requests.
	crossOrigin *http.CrossOriginProtection
	// now is the clock that signature timestamps are checked against.
	now func() time.Time
	// seen remembers the signatures accepted within the replay window.
	seen *replayCache
	// abortCtx ends when Run's grace period ran out. The contexts of the
	// requests Run serves derive from it, so it cancels in-flight refreshes
	// at once, with errShuttingDown as their cause.
	abortCtx context.Context
	abort    context.CancelCauseFunc
	// handling is read-locked while a served request is handled, so that
	// Run can wait for the requests it cancelled by write-locking it.
	handling sync.RWMutex
	// status is what GET /roster_admin/status reports besides readiness
	// (SetStatus).
	status statusSource
	// leader says where this instance stands in leader election
	// (SetLeader); its role is nil without leader election.
	leader leaderSource
}

// New validates cfg, fills in defaults and builds the server. It refuses a
// Listen address that is not loopback (127.0.0.0/8, ::1 or "localhost"; an
// empty host such as ":5380" listens on all interfaces and is not loopback)
// unless Token is set. A nil log means slog.Default().
func New(cfg Config, s Syncer, log *slog.Logger) (*Server, error) {
	if s == nil {
		return nil, errors.New("admin: nil Syncer")
	}
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	domains, err := servedDomains(cfg)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	loopback, err := isLoopback(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if !loopback && cfg.Token == "" && cfg.HMACSecret == "" {
		return nil, fmt.Errorf("refusing to listen on %s without admin.token or admin.hmac_secret", cfg.Listen)
	}
	if cfg.HMACSecret != "" && len(cfg.HMACSecret) < MinHMACSecretBytes {
		return nil, fmt.Errorf("admin: the HMAC secret must be at least %d bytes, got %d", MinHMACSecretBytes, len(cfg.HMACSecret))
	}
	probe, _ := jid.New("probe", cfg.UserDomain, "")
	if _, err := cfg.RosterLimits.Parse([]byte("{}"), probe); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	srv := &Server{
		cfg:         cfg,
		syncer:      s,
		domains:     domains,
		log:         log,
		tokenHash:   sha256.Sum256([]byte(cfg.Token)),
		crossOrigin: http.NewCrossOriginProtection(),
		now:         time.Now,
		seen:        newReplayCache(maxSeenSignatures),
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("admin: set both admin.tls_cert_file and admin.tls_key_file, or neither")
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("admin: load TLS certificate: %w", err)
		}
		srv.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv.abortCtx, srv.abort = context.WithCancelCause(context.Background())
	srv.echo = srv.newEcho()
	return srv, nil
}

func (c *Config) setDefaults() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxUsers == 0 {
		c.MaxUsers = DefaultMaxUsers
	}
	if c.MaxRosterBytes == 0 {
		c.MaxRosterBytes = rosterhttp.DefaultMaxBodyBytes
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	switch {
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("admin: max body bytes must not be negative, got %d", c.MaxBodyBytes)
	case c.MaxUsers < 0:
		return fmt.Errorf("admin: max users must not be negative, got %d", c.MaxUsers)
	case c.MaxRosterBytes < 0:
		return fmt.Errorf("admin: max roster bytes must not be negative, got %d", c.MaxRosterBytes)
	case c.Concurrency < 0:
		return fmt.Errorf("admin: concurrency must not be negative, got %d", c.Concurrency)
	case c.RequestTimeout < 0:
		return fmt.Errorf("admin: request timeout must not be negative, got %s", c.RequestTimeout)
	case c.ShutdownGrace < 0:
		return fmt.Errorf("admin: shutdown grace must not be negative, got %s", c.ShutdownGrace)
	}
	return nil
}

// isLoopback reports whether the host of addr is a loopback address or
// "localhost". An empty host means all interfaces, so it is not loopback.
// Other host names are not resolved and count as non-loopback.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("admin: invalid listen address %q: %w", addr, err)
	}
	return loopbackName(host), nil
}

// loopbackName reports whether host (without port or brackets) is
// "localhost" in any case or a loopback address, with or without an IPv6
// zone. Names are not resolved.
func loopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// loopbackHost reports whether a request's Host header names a loopback
// host: a loopback name as loopbackName reports it, with an optional
// numeric port, IPv6 addresses in brackets. An empty Host (HTTP/1.0 without
// one; browsers always send it) counts as loopback.
func loopbackHost(hostport string) bool {
	if hostport == "" {
		return true
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil { // no port
		host, port = hostport, ""
		if b, ok := strings.CutPrefix(host, "["); ok {
			if host, ok = strings.CutSuffix(b, "]"); !ok {
				return false
			}
		} else if strings.Contains(host, ":") {
			return false // an IPv6 address must be in brackets
		}
	} else if port == "" || strings.Trim(port, "0123456789") != "" {
		return false
	}
	// Brackets hold an IPv6 address and nothing else ("[127.0.0.1]" is no
	// host a URL parser takes), and a Host header has no zone.
	if strings.HasPrefix(hostport, "[") != strings.Contains(host, ":") || strings.Contains(host, "%") {
		return false
	}
	return loopbackName(host)
}

func (s *Server) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError

	hs := e.Server
	hs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handling.RLock()
		defer s.handling.RUnlock()
		e.ServeHTTP(w, r)
	})
	hs.ReadHeaderTimeout = readHeaderTimeout
	hs.ReadTimeout = readTimeout
	hs.WriteTimeout = s.cfg.RequestTimeout + writeTimeoutSlack
	hs.IdleTimeout = idleTimeout
	hs.MaxHeaderBytes = maxHeaderBytes
	hs.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	hs.TLSConfig = s.tlsConfig // ServeTLS clones it
	hs.BaseContext = func(net.Listener) context.Context { return s.abortCtx }

	e.Use(s.observe)
	e.Use(s.recoverPanic())
	e.Use(s.refuseForeignHost)
	e.Use(s.refuseCrossOrigin)
	e.Use(s.authenticate)

	// The calls that need the XMPP link go to the leader from a standby
	// (forward.go).
	fwd := s.forwardToLeader
	e.POST(adminPrefix+"/refresh", s.handleRefresh, fwd)
	e.GET(adminPrefix+"/refresh/:user", s.handleRefreshUser, fwd)
	e.POST(adminPrefix+"/refresh/:user", s.handleRefreshUser, fwd)
	e.POST(adminPrefix+"/push", s.handlePush, fwd)
	e.POST(adminPrefix+"/diff", s.handleDiff, fwd)
	e.GET(adminPrefix+"/status", s.handleStatus)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.GET("/openapi.yaml", s.handleOpenAPI)
	return e
}

// Handler returns the API as an http.Handler, e.g. for httptest.
func (s *Server) Handler() http.Handler { return s.echo }

// Mount serves h for GET requests on path, e.g. Mount("/metrics",
// promhttp.Handler()). Paths outside /roster_admin need no token. Call it
// before serving; it is not safe to call concurrently with requests.
func (s *Server) Mount(path string, h http.Handler) {
	s.echo.GET(path, echo.WrapHandler(h))
}

// Run answers requests on ln (over TLS when configured) until ctx ends,
// then stops gracefully: it closes ln and waits up to ShutdownGrace for the
// requests in flight. When the grace runs out, it cancels the refreshes
// still running (their users not synced yet fail with "request cancelled:
// server shutting down"), closes the connections, waits for the handlers to
// return and reports the lapse as an error wrapping
// context.DeadlineExceeded. It returns nil after a clean stop. If serving ln
// fails, Run stops the same way at once and returns that error. Call it
// once.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	served := make(chan error, 1)
	go func() {
		if s.tlsConfig != nil {
			served <- s.echo.Server.ServeTLS(ln, "", "")
		} else {
			served <- s.echo.Server.Serve(ln)
		}
	}()
	select {
	case <-ctx.Done():
	case err := <-served: // ln failed
		served <- err
	}
	stopErr := s.stop()
	err := <-served
	if errors.Is(err, http.ErrServerClosed) {
		return stopErr
	}
	return errors.Join(fmt.Errorf("admin: serve: %w", err), stopErr)
}

// stop shuts the HTTP server down within ShutdownGrace, then cancels what
// is left (see Run).
func (s *Server) stop() error {
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if s.leader.transport != nil {
		defer s.leader.transport.CloseIdleConnections()
	}
	err := s.echo.Server.Shutdown(grace)
	if err == nil {
		return nil
	}
	s.abort(errShuttingDown)
	if cerr := s.echo.Server.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	// Wait for the handlers, which return soon now (Syncer.Sync must return
	// soon after its context ends).
	s.handling.Lock()
	//lint:ignore SA2001 the critical section is empty: Lock waits for the handlers' read locks
	s.handling.Unlock()
	return fmt.Errorf("admin: shutdown: requests still running after %s were cancelled: %w", s.cfg.ShutdownGrace, err)
}

// observe reports each request to the Observer. It hands errors to the
// error handler itself so that the final status code is known.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	if s.cfg.Observer == nil {
		return next
	}
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		s.cfg.Observer.ObserveRequest(c.Request().Method, c.Path(), c.Response().Status, time.Since(start))
		return nil
	}
}

// recoverPanic is Echo's Recover middleware: a panic of a handler (other
// than http.ErrAbortHandler) is logged with the panicking goroutine's stack
// and becomes a 500 answer, returned like any other handler error.
func (s *Server) recoverPanic() echo.MiddlewareFunc {
	return middleware.RecoverWithConfig(middleware.RecoverConfig{
		StackSize:           maxPanicStack,
		DisableStackAll:     true,
		DisableErrorHandler: true,
		LogErrorFunc: func(c echo.Context, p error, stack []byte) error {
			s.log.Error("admin: panic while serving request", "method", c.Request().Method,
				"path", c.Request().URL.Path, "panic", p, "stack", string(stack))
			return echo.NewHTTPError(http.StatusInternalServerError, "internal server error").
				SetInternal(fmt.Errorf("panic: %w", p))
		},
	})
}

// refuseForeignHost answers 403 to a request whose Host is not a loopback
// name when neither a token nor an HMAC secret is configured (which New
// allows on loopback only): a DNS-rebinding page reaches the listener under
// its own name and must not read or trigger anything.
func (s *Server) refuseForeignHost(next echo.HandlerFunc) echo.HandlerFunc {
	if s.cfg.Token != "" || s.cfg.HMACSecret != "" {
		return next
	}
	return func(c echo.Context) error {
		if !loopbackHost(c.Request().Host) {
			return s.refuse(c, msgForeignHost, "the Host header is not a loopback name")
		}
		return next(c)
	}
}

// refuseCrossOrigin answers 403 to a cross-origin browser request under
// /roster_admin, whatever its method: http.CrossOriginProtection's rules,
// which it applies only to the methods other than GET, HEAD and OPTIONS, are
// applied to those too (GET /roster_admin/refresh/:user refreshes, and an
// <img> tag can send it).
func (s *Server) refuseCrossOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !underAdmin(r.URL.Path) && !underAdmin(echo.GetPath(r)) {
			return next(c)
		}
		checked := r
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			checked = r.Clone(r.Context())
			checked.Method = http.MethodPost // judged as the unsafe request it is here
		}
		if err := s.crossOrigin.Check(checked); err != nil {
			return s.refuse(c, msgCrossOrigin, err.Error())
		}
		return next(c)
	}
}

// refuse logs a request refused before any handler ran and returns the 403
// error for the error handler. Header values are not logged: they are the
// sender's, and as long as it likes.
func (s *Server) refuse(c echo.Context, msg, reason string) error {
	s.log.Info("admin: request refused", "code", http.StatusForbidden, "method", c.Request().Method,
		"route", c.Path(), "reason", reason)
	return echo.NewHTTPError(http.StatusForbidden, msg)
}

// authenticate demands the bearer token or a valid request signature, as
// configured, on every /roster_admin path, also unknown ones, before
// anything else is looked at. With both configured either suffices: the
// token is looked at first, then the signature.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	if s.cfg.Token == "" && s.cfg.HMACSecret == "" {
		return next
	}
	return func(c echo.Context) error {
		r := c.Request()
		if !underAdmin(r.URL.Path) && !underAdmin(echo.GetPath(r)) {
			return next(c)
		}
		if s.cfg.Token != "" && s.validToken(r.Header.Get(echo.HeaderAuthorization)) {
			return next(c)
		}
		var msg string
		switch {
		case s.cfg.HMACSecret == "":
			msg = "missing or invalid bearer token"
		case !signed(r):
			msg = "missing request signature (" + HeaderTimestamp + " and " + HeaderSignature + ")"
			if s.cfg.Token != "" {
				msg = "missing or invalid bearer token, and no request signature (" + HeaderTimestamp + " and " + HeaderSignature + ")"
			}
		default:
			herr := s.verifySignature(r)
			if herr == nil {
				return next(c)
			}
			if herr.Code != http.StatusUnauthorized {
				return herr
			}
			msg = herr.Message.(string)
		}
		h := c.Response().Header()
		if s.cfg.Token != "" {
			h.Add(echo.HeaderWWWAuthenticate, "Bearer")
		}
		if s.cfg.HMACSecret != "" {
			h.Add(echo.HeaderWWWAuthenticate, signatureScheme)
		}
		return echo.NewHTTPError(http.StatusUnauthorized, msg)
	}
}

func underAdmin(path string) bool {
	return path == adminPrefix || strings.HasPrefix(path, adminPrefix+"/")
}

// validToken checks an Authorization header value. It compares SHA-256
// hashes in constant time, so neither the content nor the length of the
// token leaks through timing.
func (s *Server) validToken(header string) bool {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// handleError renders every error as {"status":"error","message":...}.
// Errors that are not *echo.HTTPError become a 500 whose details are logged,
// not sent.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, "internal server error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = he.Code
		if m, ok := he.Message.(string); ok && m != http.StatusText(code) {
			msg = m
		} else {
			msg = strings.ToLower(http.StatusText(code))
		}
	} else {
		s.log.Error("admin: request failed", "method", c.Request().Method,
			"path", c.Request().URL.Path, "error", err)
	}
	if werr := c.JSON(code, ErrorResponse{Status: statusError, Message: msg}); werr != nil {
		s.log.Debug("admin: write error answer", "error", werr)
	}
}

func (s *Server) handleHealthz(c echo.Context) error {
	return c.JSON(http.StatusOK, StatusResponse{Status: statusOK})
}

// handleReadyz answers 200 when the Syncer is ready (its default domain),
// else 503 with the reason; with a DomainReporter, both list every domain
// served and whether it is ready. Under leader election they name the role
// and the leader, and a standby answers 200 while it knows a leader to
// forward to, else 503 with the reason.
func (s *Server) handleReadyz(c echo.Context) error {
	resp := ReadyResponse{Status: statusOK}
	if s.leader.role != nil {
		role := s.leader.role()
		resp.Role, resp.Leader, resp.LeaderURL = RoleLeader, role.Leader, role.LeaderURL
		if !role.Leading {
			resp.Role = RoleStandby
			if role.LeaderURL != "" {
				return c.JSON(http.StatusOK, resp)
			}
			err := s.syncer.Ready()
			if err == nil { // it became the leader just now
				err = errors.New("standby: no leader known to forward to")
			}
			resp.Status, resp.Message = statusError, err.Error()
			return c.JSON(http.StatusServiceUnavailable, resp)
		}
	}
	if dr, ok := s.syncer.(DomainReporter); ok {
		for _, d := range dr.ReadyDomains() {
			ds := DomainStatus{Domain: d.Domain, Default: d.Default, Ready: d.Err == nil}
			if d.Err != nil {
				ds.Error = d.Err.Error()
			}
			resp.Domains = append(resp.Domains, ds)
		}
	}
	if err := s.syncer.Ready(); err != nil {
		resp.Status, resp.Message = statusError, err.Error()
		return c.JSON(http.StatusServiceUnavailable, resp)
	}
	return c.JSON(http.StatusOK, resp)
}
