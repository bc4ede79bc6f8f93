package admin

// Forwarding to the leader: with leader election (Server.SetLeader), only
// the lease holder has the XMPP link. A standby verifies the caller's
// credentials as for any request, then hands the refresh, push and diff
// calls to the leader's admin API (the URL the leader advertises) with
// their method, path, query, headers and body unchanged, so that a bearer
// token passes and a request signature stays valid, and relays the
// leader's answer unchanged. The forwarded request carries
// HeaderForwarded: an instance that gets one and does not lead answers it
// 503 itself instead of forwarding it again.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
)

// HeaderForwarded marks a request that a standby forwarded to the
// instance it took for the leader.
const HeaderForwarded = "X-Roster-Sidecar-Forwarded"

// Roles of an instance under leader election, for ReadyResponse.Role.
const (
	RoleLeader  = "leader"
	RoleStandby = "standby"
)

// forwardDialTimeout bounds connecting to the leader.
const forwardDialTimeout = 5 * time.Second

// Role is where this instance stands in leader election.
type Role struct {
	// Leading is true while this instance holds the lease: it serves
	// every call itself.
	Leading bool
	// Leader is the identity of the lease holder as last seen; empty
	// when none is known.
	Leader string
	// LeaderURL is the base URL of the holder's admin API, as it
	// advertises it; empty when none is known (or it is this instance's
	// own, from a lease it no longer holds).
	LeaderURL string
}

// ForwardObserver counts the calls a standby forwarded to the leader. Its
// method is called concurrently and must not block.
type ForwardObserver interface {
	// ForwardDone is called once per forwarded call, with the route
	// pattern and the leader's status code, or 0 when the leader was not
	// reached (the caller then got a 503 from this instance).
	ForwardDone(route string, code int)
}

// leaderSource is what SetLeader gives the server.
type leaderSource struct {
	role      func() Role
	obs       ForwardObserver
	transport *http.Transport
	// errorLog receives the proxy's own complaints (an answer cut short).
	errorLog *log.Logger
}

// errForwardedToStandby is the reason of the 503 answer to a forwarded
// request that reached an instance that does not lead either.
var errForwardedToStandby = errors.New("standby: this request was forwarded by another instance that took this one for the leader, " +
	"but this one does not hold the lease either (a hand-over is under way); retry")

// forwardError is the reason of the 503 answer when a standby could not
// reach the leader.
type forwardError struct {
	// leader is the identity of the leader, and url its admin URL.
	leader, url string
	err         error
}

func (e *forwardError) Error() string {
	return fmt.Sprintf("standby: forwarding to the leader %s at %s failed: %v; retry", e.leader, e.url, e.err)
}

func (e *forwardError) Unwrap() error { return e.err }

// SetLeader puts the API under leader election: role (called once per
// request; it must not block) says whether this instance leads and where
// the leader's admin API is. On a standby, the calls that need the XMPP
// link (refresh, push, diff) are forwarded to the leader and /readyz
// answers 200 while a leader to forward to is known. obs, when not nil,
// counts the forwarded calls. Call it before serving; it is not safe to
// call concurrently with requests.
func (s *Server) SetLeader(role func() Role, obs ForwardObserver) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The leader is another instance of this Deployment: straight there,
	// never through an HTTP proxy of the environment.
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: forwardDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.MaxIdleConnsPerHost = s.cfg.Concurrency
	s.leader = leaderSource{role: role, obs: obs, transport: t, errorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
}

// forwardContextKey holds, in the echo.Context of a call a standby did not
// forward, why: the handler answers 503 with it (Server.ready).
const forwardContextKey = "admin.notForwarded"

// ready is the Syncer's readiness for the call of c, or why a standby
// neither forwarded it nor can serve it.
func (s *Server) ready(c echo.Context) error {
	if err, ok := c.Get(forwardContextKey).(error); ok {
		return err
	}
	return s.syncer.Ready()
}

// forwardToLeader is the middleware of the routes that need the XMPP link:
// on a standby that knows the leader's URL, it forwards the call there and
// relays the answer. It runs after authentication. Otherwise it lets the
// handler answer, which on a standby is a 503 saying why.
func (s *Server) forwardToLeader(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.leader.role == nil {
			return next(c)
		}
		role := s.leader.role()
		r := c.Request()
		switch {
		case role.Leading:
			return next(c)
		case len(r.Header.Values(HeaderForwarded)) > 0:
			s.log.Warn("admin: forwarded request refused, not the leader", "method", r.Method, "route", c.Path(), "leader", role.Leader)
			c.Set(forwardContextKey, errForwardedToStandby)
			return next(c)
		case role.LeaderURL == "":
			return next(c) // Ready says: standby, no leader known
		}
		target, err := url.Parse(role.LeaderURL)
		if err != nil {
			c.Set(forwardContextKey, &forwardError{leader: role.Leader, url: role.LeaderURL, err: err})
			return next(c)
		}
		// The body is read here, within MaxBodyBytes, so that it can be
		// sent again to the handler when the leader cannot be reached.
		var body []byte
		if r.Body != nil && r.Body != http.NoBody {
			var herr *echo.HTTPError
			if body, herr = s.readBody(r); herr != nil {
				return herr
			}
		}
		restore := func() {
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		restore()
		if err := s.forward(c, target, role.Leader); err != nil {
			restore()
			c.Set(forwardContextKey, err)
			return next(c)
		}
		return nil
	}
}

// forward sends the request of c to the leader's admin API at target and
// relays the answer. It returns a *forwardError, having written nothing,
// when the leader could not be reached.
func (s *Server) forward(c echo.Context, target *url.URL, leader string) error {
	start := time.Now()
	var failed error
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target) // the path and query as received, the Host the leader's
			pr.SetXForwarded()
			pr.Out.Header.Set(HeaderForwarded, "1")
		},
		Transport: s.leader.transport,
		ErrorLog:  s.leader.errorLog,
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) {
			failed = err
		},
	}
	proxy.ServeHTTP(c.Response(), c.Request())
	route := c.Path()
	if failed != nil && !c.Response().Committed {
		s.log.Warn("admin: forwarding to the leader failed", "method", c.Request().Method, "route", route,
			"leader", leader, "url", target.String(), "error", failed)
		s.observeForward(route, 0)
		return &forwardError{leader: leader, url: target.String(), err: failed}
	}
	code := c.Response().Status
	s.log.Debug("admin: forwarded to the leader", "method", c.Request().Method, "route", route, "leader", leader,
		"code", code, "duration", time.Since(start).Round(time.Millisecond))
	s.observeForward(route, code)
	return nil
}

func (s *Server) observeForward(route string, code int) {
	if s.leader.obs != nil {
		s.leader.obs.ForwardDone(route, code)
	}
}
