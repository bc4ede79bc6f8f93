package admin

import (
	"math"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Modes of the link, for LinkStatus.Mode.
const (
	// ModePrivilege: rosters are read and written over XEP-0356.
	ModePrivilege = "xep-0356"
	// ModeEjabberdAPI: rosters are read and written through ejabberd's
	// HTTP API (ejabberd_api.url).
	ModeEjabberdAPI = "ejabberd-api"
)

// Values of LinkStatus.Helper.
const (
	HelperFound   = "found"
	HelperMissing = "missing"
	// HelperSilent: missing, and the domain answered no disco#info at
	// all, as ejabberd does (it never stores subscriptions written over
	// XEP-0356).
	HelperSilent  = "silent"
	HelperUnknown = "unknown"
)

// ServerStatus is the 200 body of GET /roster_admin/status: what a client
// of the API (the one-shot commands sync, diff and check) needs to know of
// the running daemon. It holds no secret.
type ServerStatus struct {
	// Status is "ok": the report was made (Ready says whether refreshes
	// can run).
	Status string `json:"status"`
	// Ready is true when refreshes can run, as GET /readyz answers 200.
	Ready bool `json:"ready"`
	// Reason says why not; empty when Ready.
	Reason string `json:"reason,omitempty"`
	// Version is the daemon's version, when it reports one.
	Version string `json:"version,omitempty"`
	// UserDomain is the domain of the users (xmpp.user_domain).
	UserDomain string `json:"user_domain"`
	// Limits are the limits of one request.
	Limits Limits `json:"limits"`
	// Link is the state of the XMPP link; absent when the daemon does not
	// report it.
	Link *LinkStatus `json:"link,omitempty"`
}

// Limits are the limits of one request of the admin API.
type Limits struct {
	// MaxUsers is admin.max_users: usernames per refresh or diff request,
	// users per push.
	MaxUsers int `json:"max_users"`
	// MaxBodyBytes is admin.max_body_bytes: the largest request body.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// Concurrency is admin.concurrency: users one request syncs or
	// previews at once.
	Concurrency int `json:"concurrency"`
	// RequestTimeoutSeconds is admin.request_timeout: the bound on one
	// request, in whole seconds (rounded up).
	RequestTimeoutSeconds int64 `json:"request_timeout_seconds"`
}

// LinkStatus is the state of the daemon's link to the XMPP server.
type LinkStatus struct {
	// Mode is ModePrivilege or ModeEjabberdAPI.
	Mode string `json:"mode"`
	// Address is the server's component listener (xmpp.address).
	Address string `json:"address"`
	// Component is the component's JID (xmpp.domain).
	Component string `json:"component"`
	// Connected is true while the component is connected.
	Connected bool `json:"connected"`
	// Error is why the last connection attempt failed or the last
	// connection was lost; empty while connected.
	Error string `json:"error,omitempty"`
	// Privileges are what the server granted on the current connection,
	// by domain, sorted by domain.
	Privileges []DomainPrivileges `json:"privileges"`
	// Helper says whether the server helper (mod_roster_sidecar) answers
	// for the user domain: HelperFound, HelperMissing, HelperSilent or
	// HelperUnknown;
	// absent in ejabberd API mode, where it is of no use.
	Helper string `json:"helper,omitempty"`
	// CompareSubscription is the xmpp.compare_subscription in effect:
	// auto, always or never.
	CompareSubscription string `json:"compare_subscription"`
	// Problem says what to fix while refreshes cannot run; absent when
	// they can.
	Problem *Problem `json:"problem,omitempty"`
}

// DomainPrivileges are the XEP-0356 privileges granted for one domain.
type DomainPrivileges struct {
	// Domain is the server domain (lower case).
	Domain string `json:"domain"`
	// Roster is the roster access: none, get, set or both.
	Roster string `json:"roster"`
	// Message and Presence are the other permissions, when granted.
	Message  string `json:"message,omitempty"`
	Presence string `json:"presence,omitempty"`
}

// Problem is what is wrong and what to do about it.
type Problem struct {
	What string `json:"what"`
	Fix  string `json:"fix"`
}

// statusSource is what SetStatus gives GET /roster_admin/status.
type statusSource struct {
	version string
	link    func() LinkStatus
}

// SetStatus makes GET /roster_admin/status report version and, through
// link (called once per request; it must not block), the state of the XMPP
// link. Without it the status reports readiness and limits only. Call it
// before serving; it is not safe to call concurrently with requests.
func (s *Server) SetStatus(version string, link func() LinkStatus) {
	s.status = statusSource{version: version, link: link}
}

// handleStatus serves GET /roster_admin/status: 200 with a ServerStatus,
// whether or not the Syncer is ready.
func (s *Server) handleStatus(c echo.Context) error {
	st := ServerStatus{
		Status: statusOK, Ready: true, Version: s.status.version, UserDomain: s.cfg.UserDomain,
		Limits: Limits{
			MaxUsers: s.cfg.MaxUsers, MaxBodyBytes: s.cfg.MaxBodyBytes, Concurrency: s.cfg.Concurrency,
			RequestTimeoutSeconds: int64(math.Ceil(s.cfg.RequestTimeout.Seconds())),
		},
	}
	if err := s.syncer.Ready(); err != nil {
		st.Ready, st.Reason = false, err.Error()
	}
	if s.status.link != nil {
		link := s.status.link()
		if link.Privileges == nil {
			link.Privileges = []DomainPrivileges{}
		}
		st.Link = &link
	}
	return c.JSON(http.StatusOK, st)
}
