package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"k8s.io/klog/v2"

	"roster-sidecar/admin"
	"roster-sidecar/leader"
	"roster-sidecar/metrics"
	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// elected runs serve's parts under leader election (Config.Leader): only
// the holder of the Kubernetes Lease runs them, that is connects to the XMPP
// server and syncs, with fresh parts for each term it wins. It stands in
// for the parts' Syncer in the admin API, and tells it where the leader is
// (Role): a standby forwards the refresh calls to the leader's advertised
// admin URL, and answers 503 with the reason (Ready) when it knows none.
type elected struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics.Metrics
	elector *leader.Elector
	// lm are the leader metrics; nil without metrics.
	lm *metrics.Leader

	mu sync.Mutex
	// next are parts built and not run yet: Serve's, for the first term.
	next *Parts
	// current are the running term's parts; nil on standby.
	current *Parts
}

// errStarting is the answer in the instant between winning the lease and
// the parts running.
var errStarting = errors.New("standby: won the leader election lease, starting")

// newElected prepares leader election with first as the parts of the
// first term; m, when not nil, gets the leader metrics.
func newElected(cfg Config, log *slog.Logger, m *metrics.Metrics, first *Parts) (*elected, error) {
	// client-go's own log lines (contextual ones get the elector's logger).
	klog.SetSlogLogger(log.With("source", "client-go"))
	var obs leader.Observer
	var lm *metrics.Leader
	if m != nil {
		lm = m.Leader()
		obs = lm
	}
	el, err := leader.New(cfg.Leader, log, obs)
	if err != nil {
		return nil, &ConfigError{Key: "leader", Err: err}
	}
	return &elected{cfg: cfg, log: log, m: m, elector: el, lm: lm, next: first}, nil
}

// Role tells the admin API where this instance stands (admin.SetLeader):
// leading, or on standby with the holder's identity and the admin URL it
// advertises. The holder seen is this instance itself only for an instant
// after it lost the lease: it has no URL to forward to then.
func (e *elected) Role() admin.Role {
	own := e.elector.Config()
	if e.elector.Leading() {
		return admin.Role{Leading: true, Leader: own.Identity, LeaderURL: own.AdvertiseURL}
	}
	id, adminURL := e.elector.Leader()
	if id == own.Identity {
		adminURL = ""
	}
	return admin.Role{Leader: id, LeaderURL: adminURL}
}

// forwardObserver counts the forwarded calls in the leader metrics; nil
// without metrics.
func (e *elected) forwardObserver() admin.ForwardObserver {
	if e.lm == nil {
		return nil
	}
	return e.lm
}

// Run campaigns for the lease and runs the parts while holding it, until
// ctx ends (the parts stop first, then the lease is released) or the parts
// fail (component.ErrAuth).
func (e *elected) Run(ctx context.Context) error {
	return e.elector.Run(ctx, e.term)
}

// term runs one term's parts until ctx ends (the lease lost, or serve
// stopping).
func (e *elected) term(ctx context.Context) error {
	e.mu.Lock()
	p := e.next
	e.next = nil
	e.mu.Unlock()
	if p == nil {
		var err error
		if p, err = Build(e.cfg, e.log, e.m, true); err != nil {
			return err
		}
	}
	e.mu.Lock()
	e.current = p
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.current = nil
		e.mu.Unlock()
	}()
	return p.Run(ctx)
}

// parts returns the running term's parts, or why there are none.
func (e *elected) parts() (*Parts, error) {
	if err := e.elector.Standby(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current == nil {
		return nil, errStarting
	}
	return e.current, nil
}

// Ready implements admin.Syncer: the standby's reason, else the running
// parts' readiness.
func (e *elected) Ready() error {
	p, err := e.parts()
	if err != nil {
		return err
	}
	return p.Syncer.Ready()
}

// Sync implements admin.Syncer.
func (e *elected) Sync(ctx context.Context, user string) rostersync.Result {
	p, err := e.parts()
	if err != nil {
		return rostersync.Result{User: user, Err: err}
	}
	return p.Syncer.Sync(ctx, user)
}

// Push implements admin.Syncer.
func (e *elected) Push(ctx context.Context, user string, desired rosterhttp.Roster) rostersync.Result {
	p, err := e.parts()
	if err != nil {
		return rostersync.Result{User: user, Err: err}
	}
	return p.Syncer.Push(ctx, user, desired)
}

// Preview implements admin.Syncer.
func (e *elected) Preview(ctx context.Context, user string) (rostersync.Preview, error) {
	p, err := e.parts()
	if err != nil {
		return rostersync.Preview{User: user}, err
	}
	return p.Syncer.Preview(ctx, user)
}

// LinkStatus is the current term's link status; a standby reports its
// parts of the last term (or the unstarted ones) as not connected, and why.
func (e *elected) LinkStatus() admin.LinkStatus {
	p, err := e.parts()
	if err == nil {
		return p.LinkStatus()
	}
	e.mu.Lock()
	idle := e.next
	e.mu.Unlock()
	st := admin.LinkStatus{Mode: admin.ModePrivilege, Address: e.cfg.XMPPAddress, Component: e.cfg.XMPPDomain,
		CompareSubscription: e.cfg.CompareSub, Privileges: []admin.DomainPrivileges{}}
	if idle != nil {
		st = idle.LinkStatus()
	}
	st.Connected = false
	st.Problem = &admin.Problem{What: err.Error(), Fix: "this instance is a standby: it forwards refresh, push and diff to the lease holder " +
		"when the holder advertises its admin URL (leader.advertise_url); check the holder's link against the holder itself"}
	return st
}

// ReadyDomains implements admin.DomainReporter: the current term's
// domains; none on a standby (Ready says why).
func (e *elected) ReadyDomains() []rostersync.DomainReady {
	p, err := e.parts()
	if err != nil {
		return nil
	}
	return p.Syncer.ReadyDomains()
}
