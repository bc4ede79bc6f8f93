package component

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gosrc.io/xmpp/stanza"
	"mellium.im/xmpp/jid"

	"roster-sidecar/rosterhttp"
)

// Fetcher gets a user's desired roster from the backend.
type Fetcher interface {
	Fetch(ctx context.Context, owner jid.JID) (rosterhttp.Roster, error)
}

// RosterServer is the part of Conn a Syncer uses.
type RosterServer interface {
	Ready(domain string) error
	GetRoster(ctx context.Context, user string) ([]stanza.RosterItem, error)
	SetRosterItem(ctx context.Context, user string, item stanza.RosterItem) error
	SubscriptionHonoured(domain string) (honoured, known bool)
	LearnSubscription(domain string, honoured bool)
}

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

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	// UserDomain is the domain of the users whose rosters are managed.
	UserDomain string
	// Window is the number of roster SETs in flight per user.
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
}

// Syncer brings users' rosters in line with the backend. Syncs of one user
// never overlap: a request that arrives while that user's sync runs waits
// for exactly one more sync after it, shared by every request that arrived
// meanwhile, so the last backend state always wins.
type Syncer struct {
	cfg    SyncerConfig
	server RosterServer
	fetch  Fetcher
	log    *slog.Logger

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running chan struct{} // one token per sync running

	mu    sync.Mutex
	users map[string]*userQueue
	// synced holds when each user's last successful sync started, for
	// RememberSyncs; entries older than that are pruned as it grows.
	synced    map[string]time.Time
	pruneSize int
}

// userQueue is the sync running for one user and the one queued after it.
type userQueue struct {
	running, next *syncCall
}

type syncCall struct {
	done chan struct{}
	res  SyncResult
}

// NewSyncer returns a Syncer; Close stops it.
func NewSyncer(cfg SyncerConfig, server RosterServer, fetch Fetcher, log *slog.Logger) *Syncer {
	ctx, cancel := context.WithCancel(context.Background())
	return &Syncer{cfg: cfg, server: server, fetch: fetch, log: log, ctx: ctx, cancel: cancel,
		running: make(chan struct{}, max(1, cfg.Concurrency)), users: map[string]*userQueue{},
		synced: map[string]time.Time{}, pruneSize: minPruneSize}
}

// Ready returns nil when rosters of the user domain can be synced.
func (s *Syncer) Ready() error { return s.server.Ready(s.cfg.UserDomain) }

// Sync brings the roster of user (a normalised localpart) in line with the
// backend and reports what changed. When ctx ends first, the sync goes on
// to completion in the background and Sync returns ctx's error.
func (s *Syncer) Sync(ctx context.Context, user string) SyncResult {
	return s.wait(ctx, user, s.enqueue(user, false))
}

// SyncJoin is Sync for a refresh that any sync of user will do, e.g. at
// login: it joins the user's queued sync, or else the running one, and
// starts a sync only when none is queued or running.
func (s *Syncer) SyncJoin(ctx context.Context, user string) SyncResult {
	return s.wait(ctx, user, s.enqueue(user, true))
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

func (s *Syncer) wait(ctx context.Context, user string, call *syncCall) SyncResult {
	select {
	case <-call.done:
		return call.res
	case <-ctx.Done():
		return SyncResult{User: user, Err: fmt.Errorf("sync of %s: %w", user, ctx.Err())}
	}
}

// Close stops accepting work, cancels running syncs and waits for them.
func (s *Syncer) Close() {
	s.cancel()
	s.wg.Wait()
}

// enqueue returns the sync of user a request waits for: a new one when none
// is running, else the one queued after the running one. With join, a
// running sync is joined when none is queued.
func (s *Syncer) enqueue(user string, join bool) *syncCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.users[user]
	if q == nil {
		q = &userQueue{running: &syncCall{done: make(chan struct{})}}
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
	return q.next
}

// drain runs the user's syncs one after another until none is queued.
func (s *Syncer) drain(user string, call *syncCall) {
	defer s.wg.Done()
	for call != nil {
		call.res = s.syncOnce(user)
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

func (s *Syncer) syncOnce(user string) SyncResult {
	res := SyncResult{User: user}
	select {
	case s.running <- struct{}{}:
		defer func() { <-s.running }()
	case <-s.ctx.Done():
		res.Err = fmt.Errorf("sync of %s: syncer stopped", user)
		return res
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.SyncTimeout)
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

func (s *Syncer) sync(ctx context.Context, res *SyncResult) error {
	owner, desired, current, err := s.read(ctx, res.User)
	res.Skipped = desired.Skipped
	if err != nil {
		return err
	}
	compare, known := s.compareSubscription()
	plan := Diff(desired.Items, current, compare)
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
func (s *Syncer) read(ctx context.Context, user string) (owner jid.JID, desired rosterhttp.Roster, current []stanza.RosterItem, err error) {
	if err := s.server.Ready(s.cfg.UserDomain); err != nil {
		return owner, desired, nil, err
	}
	owner, err = jid.New(user, s.cfg.UserDomain, "")
	if err != nil {
		return owner, desired, nil, fmt.Errorf("user %q: %w", user, err)
	}
	if desired, err = s.fetch.Fetch(ctx, owner); err != nil {
		return owner, desired, nil, err
	}
	current, err = s.server.GetRoster(ctx, owner.String())
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
	honoured, known := s.server.SubscriptionHonoured(s.cfg.UserDomain)
	return honoured || !known, known
}

// learnSubscription reads back one item the plan wrote with a subscription
// other than none, and records whether the server kept it. It costs one GET
// per connection.
func (s *Syncer) learnSubscription(ctx context.Context, owner string, plan Plan) {
	var probe *stanza.RosterItem
	for _, it := range append(plan.Add, plan.Update...) {
		if it.Subscription != rosterhttp.SubscriptionNone {
			probe = &it
			break
		}
	}
	if probe == nil {
		return
	}
	items, err := s.server.GetRoster(ctx, owner)
	if err != nil {
		return
	}
	for _, it := range items {
		if normaliseJID(it.Jid) == probe.Jid {
			s.server.LearnSubscription(s.cfg.UserDomain, subscriptionOf(it) == probe.Subscription)
			return
		}
	}
}

// apply sends the plan's SETs, at most Window in flight, and counts what
// succeeded. Every change is tried even when some fail: the next sync
// converges from whatever state this one leaves.
func (s *Syncer) apply(ctx context.Context, owner string, plan Plan, res *SyncResult) error {
	var added, updated, removed, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	// Removals first, then updates, then additions; Window workers take
	// the next change as soon as one of theirs is answered.
	type change struct {
		item stanza.RosterItem
		ok   *atomic.Int64
	}
	changes := make([]change, 0, plan.Len())
	for _, part := range []struct {
		items []stanza.RosterItem
		ok    *atomic.Int64
	}{{plan.Remove, &removed}, {plan.Update, &updated}, {plan.Add, &added}} {
		for _, it := range part.items {
			changes = append(changes, change{it, part.ok})
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(1, s.cfg.Window), len(changes)) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(changes)) {
					return
				}
				c := changes[i]
				if err := s.server.SetRosterItem(ctx, owner, c.item); err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				c.ok.Add(1)
			}
		})
	}
	wg.Wait()
	res.Added, res.Updated, res.Removed = int(added.Load()), int(updated.Load()), int(removed.Load())
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d roster changes failed, first: %w", n, plan.Len(), firstErr)
	}
	return nil
}
