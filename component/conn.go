package component

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"gosrc.io/xmpp"
	"gosrc.io/xmpp/stanza"

	"roster-sidecar/component/internal/relay"
)

// ErrAuth means the server refused the shared secret. It is the only
// connection error that is not retried.
var ErrAuth = errors.New("the XMPP server refused the component secret (not-authorized): check xmpp.secret and xmpp.domain")

// StreamError is a stream error the server sent (RFC 6120 4.9), e.g.
// conflict when another connection holds the component's JID, or
// host-unknown when the server does not know it.
type StreamError = relay.StreamError

// errNoPingAnswer marks a link dropped because a ping went unanswered.
var errNoPingAnswer = errors.New("ping")

// libraryTimeout, in seconds, bounds what the library waits for: its dial,
// which reaches only the loopback relay (the relay dials the server within
// Config.ConnectTimeout), and the server's acknowledgement of a stream
// close, after which the connection is closed anyway. After a failed
// handshake nothing acknowledges, and closing the stream takes all of it.
const libraryTimeout = 1

// Config configures the component connection.
type Config struct {
	// Address is the host:port of the server's component listener.
	Address string
	// Domain is the component's JID, e.g. roster.example.test.
	Domain string
	// Secret is the shared secret of the component listener.
	Secret string
	// ConnectTimeout bounds the TCP dial to the server.
	ConnectTimeout time.Duration
	// IQTimeout bounds the wait for every IQ reply.
	IQTimeout time.Duration
	// PingInterval is the period of the XEP-0199 ping that detects dead
	// links; a ping that gets no answer within IQTimeout drops the link.
	PingInterval time.Duration
	// PingTo is the JID pinged. It must be a full JID (e.g.
	// example.com/roster-sidecar): ejabberd's mod_privilege silently drops
	// a component's IQs to bare JIDs other than roster queries, while an IQ
	// to a full JID gets an answer (an error counts as alive).
	PingTo string
	// UserDomains are the domains whose users' rosters are managed: their
	// privileges are logged and observed. Privilege messages from other
	// server domains are kept for diagnostics (Privileges) only.
	UserDomains []string
	// DetectHelper makes every connection look for the server helper
	// (NSHelper) on each user domain, right after the handshake; without
	// it CanBatch is always false.
	DetectHelper bool
	// MinBackoff and MaxBackoff bound the delay between reconnect attempts.
	MinBackoff, MaxBackoff time.Duration
	// Observer, when not nil, receives the link's events (for metrics).
	Observer ConnObserver
}

// Conn is the component's link to the XMPP server. Run keeps it connected;
// SendIQ and the roster methods use whichever connection is current.
type Conn struct {
	cfg    Config
	log    *slog.Logger
	router *xmpp.Router
	iqs    *iqTracker

	// requests limits the answers to IQ requests (see Request).
	requests *rate.Limiter
	// presence holds the PresenceListener (see presence.go).
	presence atomic.Pointer[presenceHolder]

	mu      sync.Mutex
	current *session
	// lastErr is why the last connection attempt failed or was lost; nil
	// while connected.
	lastErr error
	// changed is closed, and replaced, when the link's state changes.
	changed chan struct{}
	// brokenWrites logs msgBrokenWrites once.
	brokenWrites sync.Once
	// helperLogged is what was last logged about the server helper, by
	// domain (see logHelper).
	helperLogged map[string]bool
}

// session is one connection: a fresh *xmpp.Component each time, since the
// library's components cannot be reused safely across reconnects.
type session struct {
	comp        *xmpp.Component
	relay       *relay.Relay // between comp and the server
	established atomic.Bool  // handshake done: stanzas may be sent
	lost        chan error   // first loss reason; buffered, written once
	lostOnce    sync.Once

	// helper is what the connection learnt about the server helper.
	helper *helperState

	mu     sync.Mutex
	grants map[string]Grants
}

func (s *session) fail(err error) {
	s.lostOnce.Do(func() { s.lost <- err })
}

// NewConn returns an unconnected Conn; call Run to connect.
func NewConn(cfg Config, log *slog.Logger) *Conn {
	c := &Conn{cfg: cfg, log: log, router: xmpp.NewRouter(), iqs: newIQTracker(), changed: make(chan struct{}),
		requests: rate.NewLimiter(requestRate, requestBurst), helperLogged: map[string]bool{}}
	c.router.HandleFunc("message", c.handleMessage)
	c.router.HandleFunc("presence", c.handlePresence)
	c.router.NewRoute().HandlerFunc(func(xmpp.Sender, stanza.Packet) {}) // others: ignored
	return c
}

// Run connects and keeps the component connected until ctx ends, with
// exponential backoff and jitter between attempts. It returns nil when ctx
// ends and ErrAuth when the server refuses the secret.
func (c *Conn) Run(ctx context.Context) error {
	var closers sync.WaitGroup
	defer closers.Wait()
	backoff := c.cfg.MinBackoff
	for {
		start := time.Now()
		err := c.serve(ctx, &closers)
		if ctx.Err() != nil {
			return nil
		}
		c.setLastError(err)
		if errors.Is(err, ErrAuth) {
			return err
		}
		if time.Since(start) > 2*c.cfg.MaxBackoff {
			backoff = c.cfg.MinBackoff
		}
		delay := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("XMPP connection lost, reconnecting", "address", c.cfg.Address, "error", err, "retry_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		if c.cfg.Observer != nil {
			c.cfg.Observer.Reconnecting()
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// serve runs one connection until it is lost or ctx ends.
func (c *Conn) serve(ctx context.Context, closers *sync.WaitGroup) error {
	sess := &session{lost: make(chan error, 1), grants: map[string]Grants{}, helper: newHelperState()}
	// The library talks to the server through a relay that passes on only
	// what it can always decode (package relay).
	rl, err := relay.Start(c.cfg.Address, c.cfg.ConnectTimeout, iqHandler{c})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", c.cfg.Address, err)
	}
	sess.relay = rl
	comp, err := xmpp.NewComponent(xmpp.ComponentOptions{
		TransportConfiguration: xmpp.TransportConfiguration{
			Address:        rl.Addr(),
			ConnectTimeout: libraryTimeout,
		},
		Domain: c.cfg.Domain,
		Secret: c.cfg.Secret,
	}, c.router, func(err error) { sess.fail(err) })
	if err != nil {
		rl.Close()
		rl.Wait()
		return fmt.Errorf("create component: %w", err)
	}
	sess.comp = comp
	// The server announces online sessions again on the new connection
	// (Prosody): what the listener knew may be stale.
	c.resetPresence()
	// Current before Connect: the privilege message may arrive before
	// Connect returns, and must find its session.
	c.mu.Lock()
	c.current = sess
	c.mu.Unlock()
	if err := comp.Connect(); err != nil {
		c.drop(sess, closers, false)
		// The library reports every stream error at the handshake alike;
		// the relay saw which it was.
		if se := rl.StreamError(); se != nil {
			if se.Condition == "not-authorized" {
				return fmt.Errorf("%w: %w", ErrAuth, se)
			}
			return fmt.Errorf("connect to %s: %w", c.cfg.Address, se)
		}
		return fmt.Errorf("connect to %s: %w", c.cfg.Address, err)
	}
	sess.established.Store(true)
	c.setLastError(nil)
	if c.cfg.Observer != nil {
		c.cfg.Observer.LinkChanged(true)
	}
	c.log.Info("connected to XMPP server", "address", c.cfg.Address, "component", c.cfg.Domain)

	pingCtx, stopPing := context.WithCancel(ctx)
	var pinger sync.WaitGroup
	pinger.Go(func() { c.pingLoop(pingCtx, sess) })
	if c.cfg.DetectHelper {
		pinger.Go(func() { c.detectHelper(pingCtx, sess) })
	} else {
		close(sess.helper.done)
	}
	defer func() {
		stopPing()
		pinger.Wait()
	}()

	select {
	case <-ctx.Done():
		c.drop(sess, closers, true)
		return ctx.Err()
	case err := <-sess.lost:
		// After a read or write error the TCP connection is already dead:
		// close it in the background, since the library waits up to
		// ConnectTimeout for a stream close that will not come. After a
		// missed ping it may still be open, and must be closed first.
		c.drop(sess, closers, errors.Is(err, errNoPingAnswer))
		if se := rl.StreamError(); se != nil {
			return se
		}
		return err
	}
}

// drop retires a session: it stops being current, its pending IQs fail at
// once, its privileges are forgotten, and its stream is closed. With wait
// the close completes before drop returns, so that a reconnect never meets
// the old connection (Prosody answers that with <conflict/>).
func (c *Conn) drop(sess *session, closers *sync.WaitGroup, wait bool) {
	c.mu.Lock()
	if c.current == sess {
		c.current = nil
		c.notifyLocked()
	}
	c.mu.Unlock()
	c.iqs.failAll(ErrDisconnected)
	if c.cfg.Observer != nil && sess.established.Load() {
		c.cfg.Observer.LinkChanged(false)
	}
	if wait {
		if err := sess.comp.Disconnect(); err != nil {
			c.log.Debug("closing XMPP stream", "error", err)
		}
		sess.relay.Close()
		sess.relay.Wait()
		return
	}
	closers.Add(1)
	go func() {
		defer closers.Done()
		_ = sess.comp.Disconnect()
		sess.relay.Close()
		sess.relay.Wait()
	}()
}

// pingLoop pings the server every PingInterval; a ping without answer
// marks the session lost.
func (c *Conn) pingLoop(ctx context.Context, sess *session) {
	if c.cfg.PingInterval <= 0 {
		return
	}
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := c.roundTrip(ctx, sess, "ping", c.cfg.PingTo, func(id string) error {
			return sess.relay.Send(appendGet(nil, id, c.cfg.Domain, c.cfg.PingTo, pingElement))
		})
		var stErr *StanzaError
		if err != nil && !errors.As(err, &stErr) && ctx.Err() == nil {
			sess.fail(fmt.Errorf("%w: %w", errNoPingAnswer, err))
			return
		}
	}
}

// session returns the current session once its handshake is done.
func (c *Conn) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == nil || !c.current.established.Load() {
		return nil
	}
	return c.current
}

// roundTrip registers a waiter for a new IQ id, has send write the IQ to
// the JID to with that id (from the component JID) on sess, and waits for
// the reply: its raw bytes, nil for a result without payload. kind names
// the IQ for the observer ("get", "set", "ping"). Nothing is sent once
// ctx has ended: nobody waits for the answer.
func (c *Conn) roundTrip(ctx context.Context, sess *session, kind, to string, send func(id string) error) (reply []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if obs := c.cfg.Observer; obs != nil {
		start := time.Now()
		defer func() { obs.IQDone(kind, iqOutcome(err), time.Since(start)) }()
	}
	id, ch := c.iqs.register(to)
	// Registered before this check: if the session is dropped later, the
	// drop's failAll reaches this waiter.
	if c.session() != sess {
		c.iqs.forget(id)
		return nil, ErrDisconnected
	}
	if err := send(id); err != nil {
		c.iqs.forget(id)
		sess.fail(err)
		return nil, fmt.Errorf("send iq: %w", err)
	}
	return c.iqs.wait(ctx, id, ch, c.cfg.IQTimeout)
}

// Requests addressed to the component are answered at most requestRate per
// second (bursts of requestBurst); beyond, they are dropped unanswered, so
// that a user's flood costs little and never delays roster writes.
const (
	requestRate  = 50
	requestBurst = 100
)

// iqHandler takes the IQs the relay reads.
type iqHandler struct{ c *Conn }

// Reply hands a result or error to its waiter; replies nobody waits for
// (late, unknown or forged) are dropped undecoded.
func (h iqHandler) Reply(id, from string, raw []byte, bare bool) {
	if bare {
		raw = nil
	}
	h.c.iqs.deliver(id, from, raw)
}

// Request answers an IQ get or set addressed to the component: a result
// for what it serves (XEP-0199 ping, XEP-0030 disco#info), else
// service-unavailable (RFC 6120 8.2.3). It only writes.
func (h iqHandler) Request(typ, id, from, to string, child xml.Name) {
	sess := h.c.session()
	if sess == nil || !h.c.requests.Allow() {
		return
	}
	if err := sess.relay.Send(h.c.answer(typ, id, from, to, child)); err != nil {
		h.c.log.Debug("answering an IQ", "error", err)
	}
}

// answer is the answer to a request from from to to (the component's JID
// when empty).
func (c *Conn) answer(typ, id, from, to string, child xml.Name) []byte {
	if to == "" {
		to = c.cfg.Domain
	}
	return appendAnswer(nil, typ, id, to, from, child)
}

func (c *Conn) handleMessage(_ xmpp.Sender, p stanza.Packet) {
	msg, ok := p.(stanza.Message)
	if !ok {
		return
	}
	domain, g, ok := parsePrivilege(&msg)
	// Only a server sends from a bare domain JID: users cannot.
	if !ok || !isDomainJID(domain) {
		return
	}
	c.mu.Lock()
	sess := c.current
	c.mu.Unlock()
	if sess == nil {
		return
	}
	domain = strings.ToLower(domain)
	sess.mu.Lock()
	_, known := sess.grants[domain]
	if !known && len(sess.grants) >= maxGrantDomains {
		sess.mu.Unlock()
		return // a server has few domains; remote servers may send more
	}
	sess.grants[domain] = g
	sess.mu.Unlock()
	c.notify()
	if !c.serves(domain) {
		return // kept for diagnostics only: no metric, no log line
	}
	if c.cfg.Observer != nil {
		c.cfg.Observer.Granted(domain, g.CanRead() && g.CanWrite())
	}
	c.log.Info("privileges granted", "domain", domain, "grants", g.String())
}

// maxGrantDomains bounds the domains whose privileges a session keeps.
const maxGrantDomains = 32

// isDomainJID reports whether s is a JID with neither localpart nor
// resource: a server's.
func isDomainJID(s string) bool {
	return s != "" && !strings.ContainsAny(s, "@/")
}

// serves reports whether domain is one of the user domains served.
func (c *Conn) serves(domain string) bool {
	return slices.ContainsFunc(c.cfg.UserDomains, func(d string) bool { return strings.EqualFold(d, domain) })
}

// Ready returns nil when the component is connected and may read and write
// the rosters of domain, else an error that says why not.
func (c *Conn) Ready(domain string) error {
	sess := c.session()
	if sess == nil {
		return ErrDisconnected
	}
	sess.mu.Lock()
	g, seen := sess.grants[strings.ToLower(domain)]
	sess.mu.Unlock()
	if !g.CanRead() || !g.CanWrite() {
		return errNoRosterPrivilege(domain, g, seen)
	}
	return nil
}

// Changed returns a channel that is closed at the next change of the
// link's state: connected, disconnected, privileges granted, a failed
// attempt. Waiters read the state again after it is closed.
func (c *Conn) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Conn) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notifyLocked()
}

// notifyLocked wakes the waiters of Changed; c.mu is held.
func (c *Conn) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}
