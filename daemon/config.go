package daemon

import (
	"log/slog"
	"slices"
	"time"

	"roster-sidecar/leader"
)

// Config is the validated configuration of the daemon: what the command
// line's config file, environment and flags say (see cmd/roster-sidecar for
// the keys). BackendRedirects 0 follows no redirect; BackendMaxName ...
// BackendMaxItem are the rosterhttp.Limits of the backend's answers.
type Config struct {
	// Leader configures leader election on a Kubernetes Lease; off when
	// its LeaseName is empty (see leader.go).
	Leader leader.Config

	XMPPAddress string
	XMPPDomain  string
	XMPPSecret  string
	// UserDomain is the default user domain: a username without a domain
	// is one of its users.
	UserDomain string
	// UserDomains are every user domain served, normalised, the default
	// first; empty means UserDomain alone.
	UserDomains    []string
	ConnectTimeout time.Duration
	// PrivilegeWait is how long a connected component waits for the
	// privilege message, which servers send right after the handshake.
	PrivilegeWait time.Duration
	IQTimeout     time.Duration
	PingInterval  time.Duration
	ReconnectMin  time.Duration
	ReconnectMax  time.Duration
	Window        int
	CompareSub    string
	RosterURL     string
	// BackendDomainURLs are the roster URL templates of some user domains,
	// in place of RosterURL (backend.domain_urls).
	BackendDomainURLs map[string]string
	BackendTimeout    time.Duration
	BackendMaxBody    int64
	BackendRedirects  int
	BackendCAFile     string
	BackendMaxName    int
	BackendMaxGroup   int
	BackendMaxGroups  int
	BackendMaxItems   int
	BackendMaxItem    int
	BackendHeaders    map[string]string
	AdminListen       string
	AdminToken        string
	AdminHMACSecret   string
	AdminMaxBody      int64
	AdminMaxUsers     int
	AdminConcurrency  int
	AdminTimeout      time.Duration
	AdminTLSCert      string
	AdminTLSKey       string
	SyncTimeout       time.Duration
	OnLogin           bool
	LoginMinInterval  time.Duration
	LoginRate         float64
	LoginQueue        int
	MaxPending        int
	EjabberdAPIURL    string
	EjabberdAPIUser   string
	EjabberdAPIPass   string
	EjabberdAPITime   time.Duration
	LogLevel          slog.Level
	LogJSON           bool

	// BackendConditional is how many users' backend validators and last
	// syncs are remembered for conditional fetches; 0 disables them.
	BackendConditional int
	// ReconcileInterval is how long after a full read a 304 may skip
	// reading the server roster where no versioned read exists.
	ReconcileInterval time.Duration
}

// Domains returns the user domains served, the default first.
func (c Config) Domains() []string {
	if len(c.UserDomains) == 0 {
		return []string{c.UserDomain}
	}
	return slices.Clone(c.UserDomains)
}
