package rostersync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"mellium.im/xmpp/jid"

	"roster-sidecar/internal/lru"
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
	// UserDomain is the default domain of the users whose rosters are
	// managed: a user named by its localpart alone is one of its users.
	UserDomain string
	// UserDomains are the other domains whose users' rosters are managed
	// (UserDomain may be listed too); their users are named by bare JID,
	// localpart@domain (see Syncer).
	UserDomains []string
	// Window is the number of roster writes in flight per user.
	Window int
	// SyncTimeout bounds the phases of one user's sync by progress: the
	// backend fetch and the server read together must end within it, and
	// the writes fail only when none has succeeded for SyncTimeout (a
	// stall, ErrWritesStalled), however long they take while they go on.
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
	// RememberUsers bounds the users whose last sync is remembered, the
	// least recently synced forgotten first, so that a later sync can
	// fetch conditionally through a ConditionalFetcher (send the
	// validators of the backend's last answer) and end at its 304 when the
	// server roster is known in line (see ReconcileInterval). Zero
	// remembers none: every sync fetches and reads in full.
	RememberUsers int
	// ReconcileInterval is how long after the server roster was last seen
	// in line with the backend (read in full, or found unchanged by a
	// versioned read) a sync whose backend answers 304 may skip reading it
	// when no versioned read can say it is unchanged (Prosody; ejabberd
	// until a full read finds it in line after a sync that wrote). A
	// change made on the server behind the sidecar's back is reverted by
	// the first sync that starts ReconcileInterval after the last full
	// read, or by the next one where a versioned read sees it. Zero always
	// reads.
	ReconcileInterval time.Duration
}

// Syncer brings users' rosters in line with the backend. Syncs of one user
// never overlap: a request that arrives while that user's sync runs waits
// for exactly one more sync after it, shared by every request that arrived
// meanwhile, so the last backend state always wins.
//
// Users are named by their normalised localpart when they are of the
// default domain (SyncerConfig.UserDomain), and by their bare JID,
// localpart@domain, on any domain served ("john" and "john@" + the default
// domain are one user). The Syncer keys everything it keeps of a user by
// bare JID, and names the user in Results as the default domain's
// localpart or the bare JID of another domain. A user of a domain not
// served fails at once, with an error that wraps
// rosterhttp.ErrDomainNotServed.
type Syncer struct {
	cfg   SyncerConfig
	link  Link
	store Store
	fetch Fetcher
	log   *slog.Logger

	// domains are the domains served, normalised, the default first.
	domains []string

	ctx     context.Context // ends when Run stops
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running chan struct{} // one token per sync running

	mu sync.Mutex
	// users holds the sync queues by bare JID.
	users map[string]*userQueue
	// synced holds when each user's last successful sync started, for
	// RememberSyncs, by bare JID; entries older than that are pruned as it
	// grows.
	synced    map[string]time.Time
	pruneSize int
	// subscriptionKept records whether the server was seen to store the
	// subscription of a write (the server software does not change while
	// the sidecar runs); unset until learnt.
	subscriptionKept *bool
	// learning is held by the sync that learns subscriptionKept by writing
	// an item that differs only in subscription (at most one such write
	// per process when it succeeds).
	learning chan struct{}

	// states remembers users' last syncs for conditional fetches (nil when
	// RememberUsers is zero); epoch counts forgetAll calls.
	states *lru.Cache[stateKey, syncState]
	epoch  atomic.Uint64

	// probeWarned is set once a failed presence probe was logged as a
	// warning (probePresence).
	probeWarned atomic.Bool
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
	domains := []string{normaliseDomain(cfg.UserDomain)}
	for _, d := range cfg.UserDomains {
		if d := normaliseDomain(d); !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	return &Syncer{cfg: cfg, link: link, store: store, fetch: fetch, log: log, ctx: ctx, cancel: cancel, domains: domains,
		running: make(chan struct{}, max(1, cfg.Concurrency)), users: map[string]*userQueue{},
		synced: map[string]time.Time{}, pruneSize: minPruneSize,
		learning: make(chan struct{}, 1), states: newStates(cfg.RememberUsers)}
}

// Run returns when ctx ends, after cancelling the syncs still running and
// waiting for them; syncs requested later fail with ErrStopped.
func (s *Syncer) Run(ctx context.Context) error {
	if s.states != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watchLink(s.ctx)
		}()
	}
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Changed returns a channel closed at the next change of readiness.
func (s *Syncer) Changed() <-chan struct{} { return s.link.Changed() }

// Sync brings the roster of user (a normalised localpart of the default
// domain, or a bare JID) in line with the backend and reports what
// changed. When ctx ends first, the sync goes on to completion in the
// background and Sync returns ctx's error.
func (s *Syncer) Sync(ctx context.Context, user string) Result {
	u, err := s.parseUser(user)
	if err != nil {
		return Result{User: user, Err: err}
	}
	return s.wait(ctx, u, s.enqueue(u, false, nil))
}

// SyncJoin is Sync for a refresh that any sync of user will do, e.g. at
// login: it joins the user's queued sync, or else the running one, and
// starts a sync only when none is queued or running.
func (s *Syncer) SyncJoin(ctx context.Context, user string) Result {
	u, err := s.parseUser(user)
	if err != nil {
		return Result{User: user, Err: err}
	}
	return s.wait(ctx, u, s.enqueue(u, true, nil))
}

// SyncedWithin reports whether a sync of user that started less than d ago
// succeeded (as far as RememberSyncs looks back).
func (s *Syncer) SyncedWithin(user string, d time.Duration) bool {
	u, err := s.parseUser(user)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.synced[u.key()]
	return ok && time.Since(at) < d
}

// minPruneSize is the size of the synced map below which it is not pruned.
const minPruneSize = 1024

// recordSync notes that a sync of user (a bare JID) that started at start
// succeeded.
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

func (s *Syncer) wait(ctx context.Context, u user, call *syncCall) Result {
	select {
	case <-call.done:
		return call.res
	case <-ctx.Done():
		name := s.name(u)
		return Result{User: name, Domain: u.domain, Err: fmt.Errorf("sync of %s: %w", name, ctx.Err())}
	}
}

// enqueue returns the sync of user a request waits for: a new one when none
// is running, else the one queued after the running one. With join, a
// running sync is joined when none is queued. pushed is the roster a push
// asks for, nil for a fetch; a request that is not a join decides what the
// queued sync applies, as the latest one to arrive.
func (s *Syncer) enqueue(u user, join bool, pushed *rosterhttp.Roster) *syncCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.users[u.key()]
	if q == nil && len(s.users) >= s.maxPending() {
		name := s.name(u)
		busy := &syncCall{done: make(chan struct{}), res: Result{User: name, Domain: u.domain, Err: fmt.Errorf("sync of %s: %w", name, ErrBusy)}}
		close(busy.done)
		return busy
	}
	if q == nil {
		q = &userQueue{running: &syncCall{done: make(chan struct{}), pushed: pushed}}
		s.users[u.key()] = q
		s.wg.Add(1)
		go s.drain(u, q.running)
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
func (s *Syncer) drain(u user, call *syncCall) {
	defer s.wg.Done()
	for call != nil {
		call.res = s.syncOnce(u, call.pushed)
		close(call.done)
		s.mu.Lock()
		q := s.users[u.key()]
		call, q.running, q.next = q.next, q.next, nil
		if call == nil {
			delete(s.users, u.key())
		}
		s.mu.Unlock()
	}
}

func (s *Syncer) syncOnce(u user, pushed *rosterhttp.Roster) Result {
	res := Result{User: s.name(u), Domain: u.domain}
	select {
	case s.running <- struct{}{}:
		defer func() { <-s.running }()
	case <-s.ctx.Done():
		res.Err = fmt.Errorf("sync of %s: %w", res.User, ErrStopped)
		return res
	}
	ctx := withPushed(s.ctx, pushed)
	start := time.Now()
	if s.cfg.Observer != nil {
		s.cfg.Observer.SyncStarted()
	}
	res.Err = s.sync(ctx, u, &res)
	d := time.Since(start)
	if res.Err == nil {
		s.recordSync(u.key(), start)
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.SyncEnded(res, d)
	}
	s.log.Debug("user sync", "user", u.key(), "added", res.Added, "updated", res.Updated, "removed", res.Removed,
		"skipped", len(res.Skipped), "not_modified", res.NotModified, "read", res.Read, "error", res.Err,
		"duration", d.Round(time.Microsecond))
	return res
}

// sync brings the user's roster in line (see readSync for what a 304 of
// the backend saves). The fetch and the read must end within SyncTimeout;
// the writes go on while they make progress (watchdog): a large roster
// takes as long as the server needs, a stalled server fails the sync.
func (s *Syncer) sync(ctx context.Context, u user, res *Result) (err error) {
	readCtx, cancelRead := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	in, err := s.readSync(readCtx, u, res)
	cancelRead()
	defer func() {
		res.Err = err
		s.settle(in, res)
	}()
	res.Skipped = in.desired.Skipped
	if err != nil || in.done {
		return err
	}
	owner := in.owner.String()
	compare, known := s.compareSubscription()
	plan := holdSkipped(Diff(in.desired.Items, in.current, compare), in.desired.Skipped)
	var subOnly []roster.Item
	if !known {
		plan, subOnly = splitSubscriptionOnly(plan, in.current)
	}
	wctx, wd := startWatchdog(ctx, s.cfg.SyncTimeout)
	written, err := s.apply(wctx, wd, owner, plan, res)
	if err == nil && !known {
		var more []roster.Item
		more, err = s.settleSubscription(wctx, wd, owner, plan, subOnly, res)
		written = append(written, more...)
	}
	wd.stop()
	// Only the items written successfully, once every write is done.
	probeCtx, cancelProbe := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancelProbe()
	s.probePresence(probeCtx, owner, in.current, written, res)
	return err
}

// read fetches the user's desired roster from the backend and the current
// one from the server. desired is set when the fetch succeeded, even if the
// read failed.
func (s *Syncer) read(ctx context.Context, u user) (owner jid.JID, desired rosterhttp.Roster, current []roster.Item, err error) {
	if owner, err = s.owner(u); err != nil {
		return owner, desired, nil, err
	}
	if desired, err = s.fetchDesired(ctx, owner); err != nil {
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

// splitSubscriptionOnly takes out of the plan's updates, made while
// CompareAuto has not learnt whether the server keeps subscriptions, the
// items that differ from the server's only in their subscription and ask
// for one other than none. Whether to write them depends on what is
// learnt: on a server that does not keep subscriptions (ejabberd) such a
// write changes nothing but pushes the item to the user's clients, so they
// are not written blindly (settleSubscription). An item that asks for
// none is left in the plan: every server stores that.
func splitSubscriptionOnly(plan Plan, current []roster.Item) (Plan, []roster.Item) {
	if len(plan.Update) == 0 {
		return plan, nil
	}
	have := make(map[string]roster.Item, len(current))
	for _, it := range current {
		have[contactKey(it.JID)] = it
	}
	var updates, subOnly []roster.Item
	for _, it := range plan.Update {
		if it.Subscription != roster.SubscriptionNone && differences(have[contactKey(it.JID)], it, false) == nil {
			subOnly = append(subOnly, it)
		} else {
			updates = append(updates, it)
		}
	}
	plan.Update = updates
	return plan, subOnly
}

// settleSubscription runs after the plan was applied while CompareAuto has
// not learnt whether the server keeps subscriptions. It learns that from a
// write the plan made anyway (an addition or update asking for a
// subscription other than none), reading it back; else, when there are
// items that differ only in subscription (subOnly), by writing one of them
// and reading it back, one sync at a time (the others wait for it, and
// learn from it). Then it writes the rest of subOnly if the server keeps
// subscriptions (Prosody: they are applied in this sync) and drops them if
// it does not (ejabberd: at most that one write per process). It fails
// when subOnly cannot be settled (the read-back failed). It returns the
// items it wrote successfully.
func (s *Syncer) settleSubscription(ctx context.Context, wd *watchdog, owner string, plan Plan, subOnly []roster.Item, res *Result) ([]roster.Item, error) {
	for _, it := range append(plan.Add, plan.Update...) {
		if it.Subscription != roster.SubscriptionNone {
			s.learnSubscription(ctx, owner, it)
			break
		}
	}
	if len(subOnly) == 0 {
		return nil, nil
	}
	var written []roster.Item
	kept, known := s.subscriptionKnown()
	if !known {
		select {
		case s.learning <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting to learn how the server stores subscriptions: %w", ctx.Err())
		}
		if kept, known = s.subscriptionKnown(); !known {
			probe := subOnly[0]
			subOnly = subOnly[1:]
			w, err := s.applyMore(ctx, wd, owner, Plan{Update: []roster.Item{probe}}, res)
			written = w
			if err == nil {
				kept, known = s.learnSubscription(ctx, owner, probe)
			}
			<-s.learning
			if err != nil {
				return written, err
			}
			if !known {
				return written, fmt.Errorf("cannot tell whether the server keeps roster subscriptions: reading back %s failed", probe.JID)
			}
		} else {
			<-s.learning
		}
	}
	if !kept || len(subOnly) == 0 {
		return written, nil
	}
	w, err := s.applyMore(ctx, wd, owner, Plan{Update: subOnly}, res)
	return append(written, w...), err
}

// applyMore applies plan like apply, adding its counts to res.
func (s *Syncer) applyMore(ctx context.Context, wd *watchdog, owner string, plan Plan, res *Result) ([]roster.Item, error) {
	more := Result{User: res.User}
	written, err := s.apply(ctx, wd, owner, plan, &more)
	res.Added += more.Added
	res.Updated += more.Updated
	res.Removed += more.Removed
	return written, err
}

// subscriptionKnown returns whether the server keeps subscriptions, if
// learnt.
func (s *Syncer) subscriptionKnown() (kept, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscriptionKept == nil {
		return false, false
	}
	return *s.subscriptionKept, true
}

// learnSubscription reads back probe, an item just written with a
// subscription other than none, and records whether the server kept its
// subscription. It returns what is known then: known is false when the
// read failed or did not find the item.
func (s *Syncer) learnSubscription(ctx context.Context, owner string, probe roster.Item) (kept, known bool) {
	items, err := s.store.Roster(ctx, owner)
	if err != nil {
		return s.subscriptionKnown()
	}
	for _, it := range items {
		if contactKey(it.JID) == contactKey(probe.JID) {
			kept := it.SubscriptionOrNone() == probe.Subscription
			s.mu.Lock()
			first := s.subscriptionKept == nil
			s.subscriptionKept = &kept
			s.mu.Unlock()
			switch {
			case first && kept:
				s.log.Info("learnt how the server stores roster subscriptions", "domain", owner[strings.LastIndexByte(owner, '@')+1:], "subscription_honoured", kept)
			case first:
				s.log.Warn("the XMPP server stores every roster write with subscription none (ejabberd in XEP-0356 mode): "+
					"contacts will never see each other's presence; API mode (ejabberd_api.url) writes subscriptions and sends presence",
					"domain", owner[strings.LastIndexByte(owner, '@')+1:], "subscription_honoured", kept)
			}
			return kept, true
		}
	}
	return s.subscriptionKnown()
}

// apply makes the plan's writes, at most Window in flight (or in one
// request through a BatchStore), counts what succeeded and tells wd of
// each success. Every change is tried even when some fail, so that the
// next sync converges from whatever state this one leaves, until ctx ends:
// then no further write is started. It returns the additions and updates
// written successfully.
func (s *Syncer) apply(ctx context.Context, wd *watchdog, owner string, plan Plan, res *Result) (written []roster.Item, err error) {
	// One request for the whole plan where the store can (batch.go).
	if bs, ok := s.store.(BatchStore); ok && plan.Len() > 0 && bs.CanBatch(ctx, owner) {
		if handled, w, err := s.applyBatch(ctx, bs, owner, plan, res); handled {
			if res.Added+res.Updated+res.Removed > 0 {
				wd.progress()
			}
			return w, err
		}
	}
	var added, updated, removed, failed, started atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var mu sync.Mutex
	// Removals first, then updates, then additions; Window writes in
	// flight, the next one starting as soon as one is answered, none once
	// ctx has ended.
	var g errgroup.Group
	g.SetLimit(max(1, s.cfg.Window))
	// written collects it (when not nil) once its write succeeded.
	write := func(w func() error, ok *atomic.Int64, it *roster.Item) {
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			started.Add(1)
			if err := w(); err != nil {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
				return nil
			}
			ok.Add(1)
			wd.progress()
			if it != nil {
				mu.Lock()
				written = append(written, *it)
				mu.Unlock()
			}
			return nil
		})
	}
	for _, it := range plan.Remove {
		if ctx.Err() != nil {
			break
		}
		write(func() error { return s.store.Remove(ctx, owner, it.JID) }, &removed, nil)
	}
	for _, it := range plan.Update {
		if ctx.Err() != nil {
			break
		}
		write(func() error { return s.store.Put(ctx, owner, it) }, &updated, &it)
	}
	for _, it := range plan.Add {
		if ctx.Err() != nil {
			break
		}
		write(func() error { return s.store.Put(ctx, owner, it) }, &added, &it)
	}
	_ = g.Wait()
	res.Added, res.Updated, res.Removed = int(added.Load()), int(updated.Load()), int(removed.Load())
	notSent := plan.Len() - int(started.Load())
	if notSent > 0 {
		return written, fmt.Errorf("%d of %d roster changes not made (%d not sent): %w",
			notSent+int(failed.Load()), plan.Len(), notSent, context.Cause(ctx))
	}
	if n := failed.Load(); n > 0 {
		if ctx.Err() != nil {
			firstErr = fmt.Errorf("%w (%w)", context.Cause(ctx), firstErr)
		}
		return written, fmt.Errorf("%d of %d roster changes failed, first: %w", n, plan.Len(), firstErr)
	}
	return written, nil
}
