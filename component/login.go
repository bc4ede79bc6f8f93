package component

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// LoginObserver counts what becomes of logins, e.g. for metrics. Its method
// is called from the connection's receive goroutine and the refresher's
// goroutines and must not block.
type LoginObserver interface {
	// LoginRefresh counts one event: one of the Login* outcomes.
	LoginRefresh(outcome string)
}

// LoginConfig configures a LoginRefresher.
type LoginConfig struct {
	// UserDomain is the domain of the users whose rosters are managed;
	// presences from other domains are ignored.
	UserDomain string
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
// component (PresenceListener). Presences are handled without blocking:
// users are put in a bounded queue that Run drains at a bounded rate
// through the Syncer, joining any sync of the user already running.
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

	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{}
	done    chan struct{}
	started atomic.Bool

	mu sync.Mutex
	// sessions maps an online user's localpart to its sessions (resources)
	// and when each was last heard of.
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

	counts [5]atomic.Int64 // by outcome, see LoginStats
}

// LoginStats counts what became of logins since the refresher started.
type LoginStats struct {
	Queued, Recent, Dropped, OK, Error int64
}

var loginOutcomes = [...]string{LoginQueued, LoginRecent, LoginDropped, LoginOK, LoginError}

// NewLoginRefresher returns a refresher for the users of cfg.UserDomain;
// install it with Conn.SetPresenceListener, start Run, and Close it.
func NewLoginRefresher(cfg LoginConfig, syncer *Syncer, log *slog.Logger) *LoginRefresher {
	ctx, cancel := context.WithCancel(context.Background())
	cfg.QueueSize = max(1, cfg.QueueSize)
	cfg.Concurrency = max(1, cfg.Concurrency)
	return &LoginRefresher{
		cfg: cfg, syncer: syncer, log: log, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
		sessions: map[string]map[string]time.Time{}, queued: map[string]struct{}{}, missed: map[string]struct{}{},
	}
}

// Presence implements PresenceListener: it never blocks.
func (l *LoginRefresher) Presence(from jid.JID, available bool) {
	if !strings.EqualFold(from.Domainpart(), l.cfg.UserDomain) || from.Localpart() == "" {
		return
	}
	user, resource := from.Localpart(), from.Resourcepart()
	l.mu.Lock()
	defer l.mu.Unlock()
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

// Reset implements PresenceListener: a new connection forgets the sessions.
func (l *LoginRefresher) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.sessions)
	clear(l.missed)
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
}

// Run refreshes queued users, at most Rate per second and Concurrency at
// once, until Close. Refreshes running when Close is called are abandoned
// (the Syncer finishes or cancels them).
func (l *LoginRefresher) Run() {
	if l.started.Swap(true) {
		return // already running
	}
	defer close(l.done)
	var running sync.WaitGroup
	defer running.Wait()
	sem := make(chan struct{}, l.cfg.Concurrency)
	var interval time.Duration
	if l.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.cfg.Rate)
	}
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	next := time.Now()
	for {
		if !l.hasWork() {
			select {
			case <-l.ctx.Done():
				return
			case <-l.wake:
			case <-sweep.C:
				l.sweep()
			}
			continue
		}
		// A user stays queued until its refresh starts, so that it can
		// still leave the queue by going offline.
		if wait := time.Until(next); wait > 0 && !l.sleep(wait) {
			return
		}
		// The link may be down, or not ready yet: Prosody's burst of
		// presences arrives right after the handshake. Queued users wait.
		for l.syncer.Ready() != nil {
			if !l.sleep(notReadyPoll) {
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		user, ok := l.pop()
		if !ok {
			<-sem
			continue
		}
		if l.syncer.SyncedWithin(user, l.cfg.MinInterval) { // e.g. a backend refresh meanwhile
			<-sem
			l.count(LoginRecent)
			continue
		}
		next = time.Now().Add(interval)
		running.Add(1)
		go func() {
			defer func() { <-sem; running.Done() }()
			res := l.syncer.SyncJoin(l.ctx, user)
			if res.Err != nil {
				if l.ctx.Err() == nil {
					l.count(LoginError)
					l.log.Info("login refresh failed", "user", user, "error", res.Err)
				}
				return
			}
			l.count(LoginOK)
			l.log.Debug("login refresh", "user", user, "added", res.Added, "updated", res.Updated, "removed", res.Removed)
		}()
	}
}

// hasWork reports whether users are queued or waiting for room.
func (l *LoginRefresher) hasWork() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queued) > 0 || len(l.missed) > 0
}

// notReadyPoll is how often Run checks whether a link that is down is back.
const notReadyPoll = 100 * time.Millisecond

// sleep waits d; it returns false when Close was called meanwhile.
func (l *LoginRefresher) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Close stops Run and waits for it; the refresher cannot be run again.
func (l *LoginRefresher) Close() {
	l.cancel()
	if l.started.Load() {
		<-l.done
	}
}

// Stats returns what became of logins so far.
func (l *LoginRefresher) Stats() LoginStats {
	return LoginStats{
		Queued: l.counts[0].Load(), Recent: l.counts[1].Load(), Dropped: l.counts[2].Load(),
		OK: l.counts[3].Load(), Error: l.counts[4].Load(),
	}
}

// Online returns how many users the refresher knows to be online.
func (l *LoginRefresher) Online() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}

func (l *LoginRefresher) count(outcome string) {
	for i, o := range loginOutcomes {
		if o == outcome {
			l.counts[i].Add(1)
		}
	}
	if l.cfg.Observer != nil {
		l.cfg.Observer.LoginRefresh(outcome)
	}
}
