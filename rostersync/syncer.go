package rostersync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"mellium.im/xmpp/jid"

	"roster-sidecar/roster"
	"roster-sidecar/rosterhttp"
)

// ErrStopped is the error of a sync requested after the Syncer stopped.
var ErrStopped = errors.New("syncer stopped")

// ErrBusy is the error of a sync requested while MaxPending users are
// already being synced or waiting for a sync.
var ErrBusy = errors.New("too many syncs running or waiting: try again later")

// DefaultMaxPending is SyncerConfig.MaxPending when zero.
const DefaultMaxPending = 1024

// Ways of comparing subscriptions, for SyncerConfig.CompareSubscription.
const (
	// CompareAuto compares subscriptions once a read-back has shown that
	// the server stores them, and stops comparing when it has shown that
	// it does not (ejabberd).
	CompareAuto = "auto"
	// CompareAlways always compares subscriptions.
	CompareAlways = "always"
	// CompareNever never compares subscriptions.
	CompareNever = "never"
)

// SyncObserver receives measurements of a Syncer, e.g. to feed metrics. Its
// methods are called concurrently and must not block.
type SyncObserver interface {
	// SyncStarted is called when a user's sync starts running.
	SyncStarted()
	// SyncEnded is called when that sync ends, with its result and the
	// time it took.
	SyncEnded(res Result, d time.Duration)
}

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	// UserDomain is the domain of the users whose rosters are managed.
	UserDomain string
	// Window is the number of roster writes in flight per user.
	Window int
	// SyncTimeout bounds one user's whole sync (fetch, read, writes).
	SyncTimeout time.Duration
	// CompareSubscription is CompareAuto (the default when empty),
	// CompareAlways or CompareNever.
	CompareSubscription string
	// Concurrency is how many users are synced at once; requests for
	// further users wait, and requests for a user already waiting or
	// running join its sync.
	Concurrency int
	// Observer, when not nil, is told when syncs start and end (for
	// metrics).
	Observer SyncObserver
	// RememberSyncs is how long the start time of each user's last
	// successful sync is kept, for SyncedWithin; 0 keeps none.
	RememberSyncs time.Duration
	// MaxPending bounds the users being synced or waiting for a sync, all
	// requests together (DefaultMaxPending when zero): a sync goes on when
	// its requester stops waiting, so without a bound callers that give up
	// could pile up work. Beyond it, a sync of another user fails with
	// ErrBusy.
	MaxPending int
}

// Syncer brings users' rosters in line with the backend. Syncs of one user
// never overlap: a request that arrives while that user's sync runs waits
// for exactly one more sync after it, shared by every request that arrived
// meanwhile, so the last backend state always wins.
type Syncer struct {
	cfg   SyncerConfig
	link  Link
	store Store
	fetch Fetcher
	log   *slog.Logger

	ctx     context.Context // ends when Run stops
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running chan struct{} // one token per sync running

	mu    sync.Mutex
	users map[string]*userQueue
	// synced holds when each user's last successful sync started, for
	// RememberSyncs; entries older than that are pruned as it grows.
	synced    map[string]time.Time
	pruneSize int
	// subscriptionKept records whether the server was seen to store the
	// subscription of a write (the server software does not change while
	// the sidecar runs); unset until learnt.
	subscriptionKept *bool
}

// userQueue is the sync running for one user and the one queued after it.
type userQueue struct {
	running, next *syncCall
}

type syncCall struct {
	done chan struct{}
	res  Result
	// pushed, when set, is the roster the sync applies instead of fetching
	// one (Push); each request but a join that waits for a queued sync sets
	// it, so the latest one decides.
	pushed *rosterhttp.Roster
}

// NewSyncer returns a Syncer that reads readiness from link, rosters from
// store and desired rosters from fetch. It syncs until Run returns.
func NewSyncer(cfg SyncerConfig, link Link, store Store, fetch Fetcher, log *slog.Logger) *Syncer {
	ctx, cancel := context.WithCancel(context.Background())
	return &Syncer{cfg: cfg, link: link, store: store, fetch: pushedOr{fetch}, log: log, ctx: ctx, cancel: cancel,
		running: make(chan struct{}, max(1, cfg.Concurrency)), users: map[string]*userQueue{},
		synced: map[string]time.Time{}, pruneSize: minPruneSize}
}

// Run returns when ctx ends, after cancelling the syncs still running and
// waiting for them; syncs requested later fail with ErrStopped.
func (s *Syncer) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Ready returns nil when rosters of the user domain can be synced.
func (s *Syncer) Ready() error { return s.link.Ready(s.cfg.UserDomain) }

// Changed returns a channel closed at the next change of readiness.
func (s *Syncer) Changed() <-chan struct{} { return s.link.Changed() }

// Sync brings the roster of user (a normalised localpart) in line with the
// backend and reports what changed. When ctx ends first, the sync goes on
// to completion in the background and Sync returns ctx's error.
func (s *Syncer) Sync(ctx context.Context, user string) Result {
	return s.wait(ctx, user, s.enqueue(user, false, nil))
}

// SyncJoin is Sync for a refresh that any sync of user will do, e.g. at
// login: it joins the user's queued sync, or else the running one, and
// starts a sync only when none is queued or running.
func (s *Syncer) SyncJoin(ctx context.Context, user string) Result {
	return s.wait(ctx, user, s.enqueue(user, true, nil))
}

// SyncedWithin reports whether a sync of user that started less than d ago
// succeeded (as far as RememberSyncs looks back).
func (s *Syncer) SyncedWithin(user string, d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.synced[user]
	return ok && time.Since(at) < d
}

// minPruneSize is the size of the synced map below which it is not pruned.
const minPruneSize = 1024

// recordSync notes that a sync of user that started at start succeeded.
func (s *Syncer) recordSync(user string, start time.Time) {
	if s.cfg.RememberSyncs <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.synced[user]; !ok || start.After(at) {
		s.synced[user] = start
	}
	if len(s.synced) < s.pruneSize {
		return
	}
	// Amortised: the map is swept when it has doubled since the last
	// sweep, so it holds at most about twice the users synced within
	// RememberSyncs.
	for u, at := range s.synced {
		if time.Since(at) >= s.cfg.RememberSyncs {
			delete(s.synced, u)
		}
	}
	s.pruneSize = max(minPruneSize, 2*len(s.synced))
}

func (s *Syncer) wait(ctx context.Context, user string, call *syncCall) Result {
	select {
	case <-call.done:
		return call.res
	case <-ctx.Done():
		return Result{User: user, Err: fmt.Errorf("sync of %s: %w", user, ctx.Err())}
	}
}

// enqueue returns the sync of user a request waits for: a new one when none
// is running, else the one queued after the running one. With join, a
// running sync is joined when none is queued. pushed is the roster a push
// asks for, nil for a fetch; a request that is not a join decides what the
// queued sync applies, as the latest one to arrive.
func (s *Syncer) enqueue(user string, join bool, pushed *rosterhttp.Roster) *syncCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.users[user]
	if q == nil && len(s.users) >= s.maxPending() {
		busy := &syncCall{done: make(chan struct{}), res: Result{User: user, Err: fmt.Errorf("sync of %s: %w", user, ErrBusy)}}
		close(busy.done)
		return busy
	}
	if q == nil {
		q = &userQueue{running: &syncCall{done: make(chan struct{}), pushed: pushed}}
		s.users[user] = q
		s.wg.Add(1)
		go s.drain(user, q.running)
		return q.running
	}
	if join && q.next == nil {
		return q.running
	}
	if q.next == nil {
		q.next = &syncCall{done: make(chan struct{})}
	}
	if !join {
		q.next.pushed = pushed
	}
	return q.next
}

func (s *Syncer) maxPending() int {
	if s.cfg.MaxPending > 0 {
		return s.cfg.MaxPending
	}
	return DefaultMaxPending
}

// drain runs the user's syncs one after another until none is queued.
func (s *Syncer) drain(user string, call *syncCall) {
	defer s.wg.Done()
	for call != nil {
		call.res = s.syncOnce(user, call.pushed)
		close(call.done)
		s.mu.Lock()
		q := s.users[user]
		call, q.running, q.next = q.next, q.next, nil
		if call == nil {
			delete(s.users, user)
		}
		s.mu.Unlock()
	}
}

func (s *Syncer) syncOnce(user string, pushed *rosterhttp.Roster) Result {
	res := Result{User: user}
	select {
	case s.running <- struct{}{}:
		defer func() { <-s.running }()
	case <-s.ctx.Done():
		res.Err = fmt.Errorf("sync of %s: %w", user, ErrStopped)
		return res
	}
	ctx, cancel := context.WithTimeout(withPushed(s.ctx, pushed), s.cfg.SyncTimeout)
	defer cancel()
	start := time.Now()
	if s.cfg.Observer != nil {
		s.cfg.Observer.SyncStarted()
	}
	res.Err = s.sync(ctx, &res)
	d := time.Since(start)
	if res.Err == nil {
		s.recordSync(user, start)
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.SyncEnded(res, d)
	}
	s.log.Debug("user sync", "user", user, "added", res.Added, "updated", res.Updated, "removed", res.Removed,
		"skipped", len(res.Skipped), "error", res.Err, "duration", d.Round(time.Microsecond))
	return res
}

func (s *Syncer) sync(ctx context.Context, res *Result) error {
	owner, desired, current, err := s.read(ctx, res.User)
	res.Skipped = desired.Skipped
	if err != nil {
		return err
	}
	compare, known := s.compareSubscription()
	plan := holdSkipped(Diff(desired.Items, current, compare), desired.Skipped)
	if err := s.apply(ctx, owner.String(), plan, res); err != nil {
		return err
	}
	if !known {
		s.learnSubscription(ctx, owner.String(), plan)
	}
	return nil
}

// read fetches the user's desired roster from the backend and the current
// one from the server. desired is set when the fetch succeeded, even if the
// read failed.
func (s *Syncer) read(ctx context.Context, user string) (owner jid.JID, desired rosterhttp.Roster, current []roster.Item, err error) {
	if err := s.link.Ready(s.cfg.UserDomain); err != nil {
		return owner, desired, nil, err
	}
	owner, err = jid.New(user, s.cfg.UserDomain, "")
	if err != nil {
		return owner, desired, nil, fmt.Errorf("user %q: %w", user, err)
	}
	if desired, err = s.fetch.Fetch(ctx, owner); err != nil {
		return owner, desired, nil, err
	}
	current, err = s.store.Roster(ctx, owner.String())
	return owner, desired, current, err
}

// compareSubscription says whether the diff compares subscriptions, and
// whether that is settled. Until it is, subscriptions are compared.
func (s *Syncer) compareSubscription() (compare, known bool) {
	switch s.cfg.CompareSubscription {
	case CompareAlways:
		return true, true
	case CompareNever:
		return false, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscriptionKept == nil {
		return true, false
	}
	return *s.subscriptionKept, true
}

// learnSubscription reads back one item the plan wrote with a subscription
// other than none, and records whether the server kept it. It costs one
// read, once.
func (s *Syncer) learnSubscription(ctx context.Context, owner string, plan Plan) {
	var probe *roster.Item
	for _, it := range append(plan.Add, plan.Update...) {
		if it.Subscription != roster.SubscriptionNone {
			probe = &it
			break
		}
	}
	if probe == nil {
		return
	}
	items, err := s.store.Roster(ctx, owner)
	if err != nil {
		return
	}
	for _, it := range items {
		if contactKey(it.JID) == contactKey(probe.JID) {
			kept := it.SubscriptionOrNone() == probe.Subscription
			s.mu.Lock()
			first := s.subscriptionKept == nil
			s.subscriptionKept = &kept
			s.mu.Unlock()
			if first {
				s.log.Info("learnt how the server stores roster subscriptions", "domain", strings.ToLower(s.cfg.UserDomain), "subscription_honoured", kept)
			}
			return
		}
	}
}

// apply makes the plan's writes, at most Window in flight, and counts what
// succeeded. Every change is tried even when some fail: the next sync
// converges from whatever state this one leaves.
func (s *Syncer) apply(ctx context.Context, owner string, plan Plan, res *Result) error {
	var added, updated, removed, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	note := func(err error, ok *atomic.Int64) {
		if err != nil {
			failed.Add(1)
			errOnce.Do(func() { firstErr = err })
			return
		}
		ok.Add(1)
	}
	// Removals first, then updates, then additions; Window writes in
	// flight, the next one starting as soon as one is answered.
	var g errgroup.Group
	g.SetLimit(max(1, s.cfg.Window))
	for _, it := range plan.Remove {
		g.Go(func() error { note(s.store.Remove(ctx, owner, it.JID), &removed); return nil })
	}
	for _, it := range plan.Update {
		g.Go(func() error { note(s.store.Put(ctx, owner, it), &updated); return nil })
	}
	for _, it := range plan.Add {
		g.Go(func() error { note(s.store.Put(ctx, owner, it), &added); return nil })
	}
	_ = g.Wait()
	res.Added, res.Updated, res.Removed = int(added.Load()), int(updated.Load()), int(removed.Load())
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d roster changes failed, first: %w", n, plan.Len(), firstErr)
	}
	return nil
}
