package rostersync

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"mellium.im/xmpp/jid"
)

// Outcomes of a login, for LoginObserver.LoginRefresh.
const (
	// LoginQueued: the user waits in the queue for a refresh.
	LoginQueued = "queued"
	// LoginRecent: no refresh, the user was synced less than MinInterval
	// ago.
	LoginRecent = "recent"
	// LoginDropped: the queue was full; the user is queued again when it
	// has room, if still online, else refreshed at the next login.
	LoginDropped = "dropped"
	// LoginOK and LoginError: the refresh ran and succeeded or failed.
	LoginOK    = "ok"
	LoginError = "error"
)

// LoginOutcomes lists every outcome LoginObserver.LoginRefresh reports.
var LoginOutcomes = []string{LoginQueued, LoginRecent, LoginDropped, LoginOK, LoginError}

// LoginObserver counts what becomes of logins, e.g. for metrics. Its
// methods are called from the connection's receive goroutine and the
// refresher's goroutines and must not block.
type LoginObserver interface {
	// LoginRefresh counts one event: one of the Login* outcomes.
	LoginRefresh(outcome string)
	// OnlineUsers reports how many users the refresher knows to be online,
	// after each change.
	OnlineUsers(n int)
}

// LoginConfig configures a LoginRefresher.
//
// The refresher takes the presences of users of every domain its Syncer
// serves; presences from other domains are ignored.
type LoginConfig struct {
	// MinInterval: a user whose last successful sync started less than
	// this ago is not refreshed at login. The Syncer must remember syncs
	// at least this long (SyncerConfig.RememberSyncs).
	MinInterval time.Duration
	// Rate is how many login refreshes start per second at most; 0 or less
	// means no limit.
	Rate float64
	// QueueSize bounds the users waiting for a login refresh.
	QueueSize int
	// Concurrency bounds the login refreshes running at once, so that
	// a burst of logins leaves Syncer capacity for the backend's refresh
	// requests.
	Concurrency int
	// Observer, when not nil, counts the outcomes.
	Observer LoginObserver
}

// sessionTTL is how long a session is remembered without any presence from
// it. ejabberd does not tell the component when a session ends unless the
// client says so (a dropped connection sends nothing), so remembered
// sessions must expire; on Prosody, whose unavailable presences always
// arrive, it only matters for sessions silent for a day.
const sessionTTL = 24 * time.Hour

// maxSessionsPerUser bounds the sessions remembered for one user.
const maxSessionsPerUser = 32

// LoginRefresher refreshes a user's roster when a new session of the user
// comes online, as seen in the presence the server forwards to the
// component. Presences are handled without blocking: users are put in a
// bounded queue that Run drains at a bounded rate through the Syncer,
// joining any sync of the user already running.
//
// A session is new when the sidecar has not seen it online since the
// component (re)connected: Prosody announces every online session at
// connect, so after a reconnect every online user is refreshed once (rate
// limited), which also catches up refreshes refused while the link was
// down. Status changes of a known session do not refresh. A user synced
// less than MinInterval ago is skipped.
//
// Any new session counts, not only a user's first: ejabberd does not tell
// the component when a session ends unless the client sends unavailable,
// so "no other session online" cannot be known there, and a stale session
// would suppress login refreshes; MinInterval already keeps a user's
// several devices from refreshing more than once per interval.
//
// A queued user leaves the queue when its last session goes offline before
// its turn. While the link is down (or not yet ready after a reconnect)
// queued users wait. When the queue is full a login is dropped and counted;
// the user is queued again once the queue is empty if still online, else
// refreshed at its next login.
type LoginRefresher struct {
	cfg    LoginConfig
	syncer *Syncer
	log    *slog.Logger
	wake   chan struct{}

	mu sync.Mutex
	// sessions maps an online user's bare JID to its sessions (resources)
	// and when each was last heard of. Users are named by bare JID
	// throughout: the Syncer takes them so.
	sessions map[string]map[string]time.Time
	// queue holds the users waiting, oldest first; it may also hold stale
	// entries (users who went offline before their turn, or duplicates):
	// only users in queued are refreshed.
	queue  []string
	queued map[string]struct{}
	stale  int // entries of queue not in queued
	// missed holds online users dropped because the queue was full; they
	// are queued again when it is empty.
	missed      map[string]struct{}
	lastDropLog time.Time
	dropsLogged int
}

// NewLoginRefresher returns a refresher for the users of the domains syncer
// serves; give it the presences (Presence, Reset) and run it (Run).
func NewLoginRefresher(cfg LoginConfig, syncer *Syncer, log *slog.Logger) *LoginRefresher {
	cfg.QueueSize = max(1, cfg.QueueSize)
	cfg.Concurrency = max(1, cfg.Concurrency)
	return &LoginRefresher{
		cfg: cfg, syncer: syncer, log: log, wake: make(chan struct{}, 1),
		sessions: map[string]map[string]time.Time{}, queued: map[string]struct{}{}, missed: map[string]struct{}{},
	}
}

// Presence takes an available (available true) or unavailable presence
// from the session from, a JID with a localpart. It never blocks.
func (l *LoginRefresher) Presence(from jid.JID, available bool) {
	if from.Localpart() == "" || !slices.Contains(l.syncer.domains, normaliseDomain(from.Domainpart())) {
		return
	}
	user, resource := from.Localpart()+"@"+normaliseDomain(from.Domainpart()), from.Resourcepart()
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.reportOnline()
	sessions := l.sessions[user]
	if !available {
		delete(sessions, resource)
		if len(sessions) == 0 {
			// Offline before its turn: refreshed at the next login.
			delete(l.sessions, user)
			delete(l.missed, user)
			l.unqueue(user)
		}
		return
	}
	if _, known := sessions[resource]; known {
		sessions[resource] = time.Now() // a status change, not a login
		return
	}
	if sessions == nil {
		sessions = map[string]time.Time{}
		l.sessions[user] = sessions
	}
	if len(sessions) >= maxSessionsPerUser {
		oldest, at := "", time.Time{}
		for r, t := range sessions {
			if oldest == "" || t.Before(at) {
				oldest, at = r, t
			}
		}
		delete(sessions, oldest)
	}
	sessions[resource] = time.Now()
	l.login(user)
}

// Reset forgets the sessions: a new connection starts, and the server may
// announce them again.
func (l *LoginRefresher) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.sessions)
	clear(l.missed)
	l.reportOnline()
}

// reportOnline tells the observer how many users are online. l.mu is held.
func (l *LoginRefresher) reportOnline() {
	if l.cfg.Observer != nil {
		l.cfg.Observer.OnlineUsers(len(l.sessions))
	}
}

// login queues user for a refresh unless it is recent or queued. l.mu is
// held.
func (l *LoginRefresher) login(user string) {
	if _, ok := l.queued[user]; ok {
		return
	}
	if l.syncer.SyncedWithin(user, l.cfg.MinInterval) {
		l.count(LoginRecent)
		return
	}
	if len(l.queued) >= l.cfg.QueueSize {
		l.missed[user] = struct{}{}
		l.count(LoginDropped)
		l.logDrop()
		return
	}
	l.push(user)
}

// unqueue drops user from the queue. l.mu is held.
func (l *LoginRefresher) unqueue(user string) {
	if _, ok := l.queued[user]; !ok {
		return
	}
	delete(l.queued, user)
	l.stale++
	if l.stale > 64 && l.stale > len(l.queue)/2 {
		kept, seen := l.queue[:0], map[string]struct{}{}
		for _, u := range l.queue {
			if _, ok := l.queued[u]; !ok {
				continue
			}
			if _, dup := seen[u]; dup {
				continue
			}
			seen[u] = struct{}{}
			kept = append(kept, u)
		}
		clear(l.queue[len(kept):])
		l.queue, l.stale = kept, 0
	}
}

// push appends user to the queue and wakes Run. l.mu is held.
func (l *LoginRefresher) push(user string) {
	l.queue = append(l.queue, user)
	l.queued[user] = struct{}{}
	l.count(LoginQueued)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// logDrop warns about a full queue, at most once a minute. l.mu is held.
func (l *LoginRefresher) logDrop() {
	l.dropsLogged++
	if time.Since(l.lastDropLog) < time.Minute {
		return
	}
	l.log.Warn("login refresh queue full: users will be refreshed when it has room (if still online) or at their next login",
		"dropped", l.dropsLogged, "queue_size", l.cfg.QueueSize, "rate_per_second", l.cfg.Rate)
	l.lastDropLog, l.dropsLogged = time.Now(), 0
}

// pop takes the oldest queued user; when the queue is empty, the users
// dropped meanwhile (still online) are queued first.
func (l *LoginRefresher) pop() (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queued) == 0 {
		l.queue, l.stale = nil, 0
		for user := range l.missed {
			if len(l.queued) >= l.cfg.QueueSize {
				break
			}
			delete(l.missed, user)
			l.push(user)
		}
	}
	for len(l.queue) > 0 {
		user := l.queue[0]
		l.queue[0] = ""
		l.queue = l.queue[1:]
		if _, ok := l.queued[user]; !ok {
			l.stale--
			continue
		}
		delete(l.queued, user)
		return user, true
	}
	l.queue, l.stale = nil, 0 // let the backing array go
	return "", false
}

// sweep forgets sessions not heard of for sessionTTL.
func (l *LoginRefresher) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for user, sessions := range l.sessions {
		for r, at := range sessions {
			if time.Since(at) > sessionTTL {
				delete(sessions, r)
			}
		}
		if len(sessions) == 0 {
			delete(l.sessions, user)
			delete(l.missed, user)
		}
	}
	l.reportOnline()
}

// Run refreshes queued users, at most Rate per second and Concurrency at
// once, until ctx ends; it then waits for the refreshes it started (the
// Syncer finishes or cancels them) and returns nil.
func (l *LoginRefresher) Run(ctx context.Context) error {
	var running errgroup.Group
	running.SetLimit(l.cfg.Concurrency)
	defer running.Wait()
	limit := rate.NewLimiter(rate.Inf, 1)
	if l.cfg.Rate > 0 {
		limit = rate.NewLimiter(rate.Limit(l.cfg.Rate), 1)
	}
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	for {
		if !l.hasWork() {
			select {
			case <-ctx.Done():
				return nil
			case <-l.wake:
			case <-sweep.C:
				l.sweep()
			}
			continue
		}
		// A user stays queued until its refresh starts, so that it can
		// still leave the queue by going offline.
		if limit.Wait(ctx) != nil {
			return nil
		}
		// The link may be down, or not ready yet: Prosody's burst of
		// presences arrives right after the handshake. Queued users wait.
		if !l.waitReady(ctx) {
			return nil
		}
		user, ok := l.pop()
		if !ok {
			continue
		}
		if l.syncer.SyncedWithin(user, l.cfg.MinInterval) { // e.g. a backend refresh meanwhile
			l.count(LoginRecent)
			continue
		}
		running.Go(func() error { // waits for a free slot
			if !l.online(user) {
				return nil // went offline while waiting: refreshed at its next login
			}
			res := l.syncer.SyncJoin(ctx, user)
			if res.Err != nil {
				if ctx.Err() == nil {
					l.count(LoginError)
					l.log.Info("login refresh failed", "user", user, "error", res.Err)
				}
				return nil
			}
			l.count(LoginOK)
			l.log.Debug("login refresh", "user", user, "added", res.Added, "updated", res.Updated, "removed", res.Removed)
			return nil
		})
	}
}

// waitReady waits until the Syncer is ready; false when ctx ended first.
func (l *LoginRefresher) waitReady(ctx context.Context) bool {
	for {
		changed := l.syncer.Changed()
		if l.syncer.Ready() == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		}
	}
}

// online reports whether a session of user is known to be online.
func (l *LoginRefresher) online(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions[user]) > 0
}

// hasWork reports whether users are queued or waiting for room.
func (l *LoginRefresher) hasWork() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queued) > 0 || len(l.missed) > 0
}

func (l *LoginRefresher) count(outcome string) {
	if l.cfg.Observer != nil {
		l.cfg.Observer.LoginRefresh(outcome)
	}
}
