// Package leader runs work on one instance at a time: the holder of a
// Kubernetes Lease (coordination.k8s.io/v1), elected through client-go's
// tools/leaderelection as every Kubernetes controller is.
//
// An [Elector] campaigns for the lease; while it holds it, it runs the work
// with a context that ends the moment the lease is lost: when a renewal
// has not succeeded for RenewDeadline, or a renewal finds another holder.
// The others wait, polling the lease every RetryPeriod (with jitter), and
// take it over once it has not been renewed for LeaseDuration, or at once
// after the holder released it.
//
// On a clean stop (Run's context ends) the holder first stops its work and
// waits for it, then releases the lease, so that a successor never runs
// beside it and takes over within one RetryPeriod instead of LeaseDuration.
// client-go's own ReleaseOnCancel is not used: it releases after a lost
// lease too, judging by the holder it saw last, and can then wipe a
// successor's fresh lease; this package releases only a lease that a fresh
// read shows it still holds.
//
// # Timing
//
// The defaults (8s / 4s / 1s) bound the take-over after the holder is
// killed (no release) to LeaseDuration plus two polls of at most 1.2 ×
// RetryPeriod each: 12.4 s; measured 7.8 to 9.6 s (TestFailoverWithDefaults).
// client-go's usual 15s / 10s / 2s gives 14.8 to 17.2 s. client-go compares
// lease records at one-second precision, so the others may count the
// LeaseDuration from up to 1 s before the last renewal. A holder that
// cannot renew stops its work after RetryPeriod + RenewDeadline (5 s), so at
// least LeaseDuration − 1 s − RetryPeriod − RenewDeadline (2 s) before any
// other instance can take the lease.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Defaults for zero Config durations (see the package doc for the
// failover they give).
const (
	DefaultLeaseDuration = 8 * time.Second
	DefaultRenewDeadline = 4 * time.Second
	DefaultRetryPeriod   = time.Second
)

// namespaceFile is where a pod finds its namespace.
const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config configures an Elector.
type Config struct {
	// LeaseName is the Lease's name; leader election is off when empty.
	LeaseName string
	// Namespace is the Lease's namespace; empty: the pod's own (see
	// PodNamespace).
	Namespace string
	// Identity names this instance in the Lease's holderIdentity; empty:
	// the host name (a pod's name). With AdvertiseURL it must not contain
	// white space.
	Identity string
	// AdvertiseURL is the base URL of this instance's admin API, such as
	// http://10.1.2.3:5380, written into the Lease's holderIdentity after
	// the Identity (see HolderIdentity) so that the others can forward
	// requests to the holder; empty: none advertised. It must be an http
	// or https URL with a host and nothing after it (see
	// CheckAdvertiseURL).
	AdvertiseURL string
	// LeaseDuration is how long the others wait after the last renewal
	// before they take the lease over; whole seconds (the Lease stores
	// seconds). Default DefaultLeaseDuration.
	LeaseDuration time.Duration
	// RenewDeadline is how long the holder tries to renew before it gives
	// up and stops its work; below LeaseDuration. Default
	// DefaultRenewDeadline.
	RenewDeadline time.Duration
	// RetryPeriod is the period of renewals and of the others' polls;
	// RenewDeadline must exceed 1.2 × RetryPeriod. Default
	// DefaultRetryPeriod.
	RetryPeriod time.Duration
	// Client reaches the Lease API; nil: InClusterClient. Tests pass
	// k8s.io/client-go/kubernetes/fake's CoordinationV1().
	Client coordinationv1client.LeasesGetter
}

// Enabled reports whether leader election is configured.
func (c Config) Enabled() bool { return c.LeaseName != "" }

// Describe names the lease, e.g. "chat/roster-sidecar".
func (c Config) Describe() string { return c.Namespace + "/" + c.LeaseName }

// Observer receives leadership changes, e.g. for metrics. Its methods are
// called from the elector's goroutines and must not block.
type Observer interface {
	// Leading is called with true when this instance starts its work as
	// the holder and with false when it stops (lease lost or released).
	Leading(leading bool)
	// NewLeader is called when the holder seen in the Lease changes to
	// identity (this instance's included; not for a released lease).
	NewLeader(identity string)
}

// Work is what runs while this instance holds the lease. It must return
// soon after ctx ends. A non-nil error ends Elector.Run (after the lease is
// released); nil when ctx has not ended puts the instance back in the
// campaign.
type Work func(ctx context.Context) error

// Elector campaigns for the lease and runs the work while holding it.
type Elector struct {
	cfg  Config
	log  *slog.Logger
	logr logr.Logger
	obs  Observer

	// working holds the context of the running work; Leading is true while
	// it has not ended.
	working atomic.Pointer[context.Context]

	// holderID is this instance's holderIdentity in the Lease: the
	// Identity and the AdvertiseURL (HolderIdentity).
	holderID string

	mu     sync.Mutex
	holder string
}

// New validates cfg and fills in its defaults (Namespace and Identity
// included) and returns an Elector; log and obs may be nil.
func New(cfg Config, log *slog.Logger, obs Observer) (*Elector, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log = log.With("lease", cfg.Describe(), "identity", cfg.Identity)
	return &Elector{cfg: cfg, log: log, logr: logr.FromSlogHandler(log.Handler()), obs: obs,
		holderID: HolderIdentity(cfg.Identity, cfg.AdvertiseURL)}, nil
}

func (c *Config) setDefaults() error {
	if c.LeaseName == "" {
		return errors.New("leader: no lease name")
	}
	if msgs := validation.IsDNS1123Subdomain(c.LeaseName); len(msgs) > 0 {
		return fmt.Errorf("leader: lease name %q: %s", c.LeaseName, strings.Join(msgs, "; "))
	}
	if c.Namespace == "" {
		ns, err := PodNamespace()
		if err != nil {
			return err
		}
		c.Namespace = ns
	}
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		return fmt.Errorf("leader: namespace %q: %s", c.Namespace, strings.Join(msgs, "; "))
	}
	if c.Identity == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("leader: no identity given and no host name: %v", err)
		}
		c.Identity = h
	}
	if c.AdvertiseURL != "" {
		if strings.ContainsFunc(c.Identity, unicode.IsSpace) {
			return fmt.Errorf("leader: identity %q contains white space, which cannot be told from the advertised URL in the Lease", c.Identity)
		}
		if err := CheckAdvertiseURL(c.AdvertiseURL); err != nil {
			return err
		}
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	switch {
	case c.LeaseDuration < time.Second || c.LeaseDuration%time.Second != 0:
		return fmt.Errorf("leader: the lease duration must be whole seconds, at least 1s (the Lease stores seconds), got %s", c.LeaseDuration)
	case c.RenewDeadline <= 0 || c.RenewDeadline >= c.LeaseDuration:
		return fmt.Errorf("leader: the renew deadline (%s) must be positive and below the lease duration (%s)", c.RenewDeadline, c.LeaseDuration)
	case c.RetryPeriod <= 0 || float64(c.RenewDeadline) <= leaderelection.JitterFactor*float64(c.RetryPeriod):
		return fmt.Errorf("leader: the renew deadline (%s) must exceed %.1f × the retry period (%s)", c.RenewDeadline, leaderelection.JitterFactor, c.RetryPeriod)
	}
	if c.Client == nil {
		client, err := InClusterClient(c.RenewDeadline / 2)
		if err != nil {
			return err
		}
		c.Client = client
	}
	return nil
}

// PodNamespace returns the namespace of the pod this runs in, from its
// service-account files.
func PodNamespace() (string, error) {
	b, err := os.ReadFile(namespaceFile)
	if err != nil {
		return "", fmt.Errorf("leader: no lease namespace given, and not in a pod with a service account (%w): set the namespace (the Kubernetes manifests pass it through the downward API)", err)
	}
	ns := strings.TrimSpace(string(b))
	if ns == "" {
		return "", fmt.Errorf("leader: %s is empty", namespaceFile)
	}
	return ns, nil
}

// InClusterClient returns a Lease client authenticated with the pod's
// service account; each request is bounded by timeout.
func InClusterClient(timeout time.Duration) (coordinationv1client.LeasesGetter, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("leader: leader election needs the Kubernetes API from inside a pod with a service-account token: %w", err)
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "roster-sidecar"
	client, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader: Kubernetes client: %w", err)
	}
	return client, nil
}

// Config returns the configuration with its defaults filled in.
func (e *Elector) Config() Config { return e.cfg }

// Leading reports whether this instance holds the lease and its work runs.
// It turns false the moment the lease is lost or the work is told to stop.
func (e *Elector) Leading() bool {
	c := e.working.Load()
	return c != nil && (*c).Err() == nil
}

// Holder returns the holderIdentity of the lease as last seen ("" when
// none was seen, or the lease was released); ParseHolder splits it.
func (e *Elector) Holder() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Leader returns the identity of the lease holder as last seen and the
// admin URL it advertises: both empty when no holder was seen, the URL
// empty when it advertises none. While this instance holds the lease they
// are its own.
func (e *Elector) Leader() (identity, adminURL string) {
	return ParseHolder(e.Holder())
}

// Standby returns nil while leading, else an error saying that this
// instance is on standby, and who holds the lease.
func (e *Elector) Standby() error {
	if e.Leading() {
		return nil
	}
	if h := e.Holder(); h != "" && h != e.holderID {
		id, _ := ParseHolder(h)
		return fmt.Errorf("standby: %s holds the lease %s; this instance takes over when it is released or expires", id, e.cfg.Describe())
	}
	return fmt.Errorf("standby: waiting for the lease %s", e.cfg.Describe())
}

// Run campaigns for the lease until ctx ends, and runs work while it holds
// it (as many terms as it wins). When ctx ends it stops the work, waits for
// it, releases the lease and returns nil. When the work fails, it releases
// the lease and returns the work's error. Call it once.
func (e *Elector) Run(ctx context.Context, work Work) error {
	for {
		err := e.term(ctx, work)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// term campaigns until this instance holds the lease or ctx ends, then runs
// work until the lease is lost, ctx ends or the work returns.
func (e *Elector) term(ctx context.Context, work Work) error {
	started := make(chan context.Context, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: e.cfg.LeaseName, Namespace: e.cfg.Namespace},
			Client:     e.cfg.Client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.holderID},
		},
		LeaseDuration: e.cfg.LeaseDuration,
		RenewDeadline: e.cfg.RenewDeadline,
		RetryPeriod:   e.cfg.RetryPeriod,
		Name:          e.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) { started <- leading },
			OnStoppedLeading: func() {},
			OnNewLeader:      e.observeHolder,
		},
	})
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	// The election runs until the work has stopped, whatever ctx does.
	electCtx, stopElection := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), e.logr))
	electionDone := make(chan struct{})
	go func() {
		defer close(electionDone)
		le.Run(electCtx)
	}()
	stop := func() {
		stopElection()
		<-electionDone
	}

	var held context.Context // ends when the lease is lost
	select {
	case <-ctx.Done():
		stop()
		e.release() // in case the lease was won just now
		return nil
	case held = <-started:
	}

	workCtx, stopWork := context.WithCancel(held)
	defer stopWork()
	e.working.Store(&workCtx)
	e.log.Info("leader: holding the lease, starting")
	e.report(true)
	reported := make(chan struct{})
	context.AfterFunc(workCtx, func() {
		defer close(reported)
		e.report(false)
	})
	unlink := context.AfterFunc(ctx, stopWork)
	defer unlink()
	var takenOver atomic.Bool
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		takenOver.Store(e.watch(workCtx, le, stopWork))
	}()

	err = work(workCtx)
	lost := held.Err() != nil
	stopWork()
	<-watchDone
	<-reported
	stop()
	switch {
	case takenOver.Load():
		lost = true // watch logged it
	case ctx.Err() != nil:
		e.log.Info("leader: stopped; releasing the lease")
	case lost:
		e.log.Warn("leader: lost the lease (not renewed within the renew deadline); stopped, back on standby")
	case err != nil:
		e.log.Error("leader: the work failed; releasing the lease", "error", err)
	default:
		e.log.Warn("leader: the work ended; releasing the lease and campaigning again")
	}
	if !lost {
		e.release()
	}
	if err == nil && ctx.Err() == nil {
		// Not in a tight loop if the work keeps ending at once.
		select {
		case <-ctx.Done():
		case <-time.After(e.cfg.RetryPeriod):
		}
	}
	return err
}

// watch stops the work as soon as a renewal finds another holder in the
// Lease (someone took it over, or deleted and recreated it), rather than
// after the renew deadline, and reports whether it did.
func (e *Elector) watch(ctx context.Context, le *leaderelection.LeaderElector, stopWork context.CancelFunc) bool {
	tick := time.NewTicker(e.cfg.RetryPeriod / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			if h := le.GetLeader(); h != e.holderID {
				e.log.Warn("leader: the lease has another holder; stopped, back on standby", "holder", h)
				stopWork()
				return true
			}
		}
	}
}

// release gives the lease up, as client-go does (no holder, a duration of
// one second), if a fresh read shows that this instance still holds it. The
// update carries the read's resourceVersion, so it cannot overwrite a
// successor's lease.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	leases := e.cfg.Client.Leases(e.cfg.Namespace)
	l, err := leases.Get(ctx, e.cfg.LeaseName, metav1.GetOptions{})
	if err != nil {
		e.log.Warn("leader: releasing the lease: read failed; it expires on its own", "error", err)
		return
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != e.holderID {
		return
	}
	none, one := "", int32(1)
	now := metav1.NewMicroTime(time.Now())
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = &none, &one
	l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		e.log.Warn("leader: releasing the lease failed; it expires on its own", "error", err)
		return
	}
	e.log.Info("leader: released the lease")
}

// observeHolder is client-go's OnNewLeader.
func (e *Elector) observeHolder(identity string) {
	e.mu.Lock()
	e.holder = identity
	e.mu.Unlock()
	if identity == "" {
		return
	}
	if identity != e.holderID {
		id, adminURL := ParseHolder(identity)
		e.log.Info("leader: the lease is held by another instance; standby", "holder", id, "admin_url", adminURL)
	}
	if e.obs != nil {
		e.obs.NewLeader(identity)
	}
}

func (e *Elector) report(leading bool) {
	if e.obs != nil {
		e.obs.Leading(leading)
	}
}
