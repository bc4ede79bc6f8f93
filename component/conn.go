package component

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

const nsPing = "urn:xmpp:ping"

// errNoPingAnswer marks a link dropped because a ping went unanswered.
var errNoPingAnswer = errors.New("ping")

// pingPayload is the XEP-0199 <ping/> element.
type pingPayload struct {
	XMLName xml.Name `xml:"urn:xmpp:ping ping"`
}

func (pingPayload) Namespace() string         { return nsPing }
func (pingPayload) GetSet() *stanza.ResultSet { return nil }

func init() {
	stanza.TypeRegistry.MapExtension(stanza.PKTIQ, xml.Name{Space: nsPing, Local: "ping"}, pingPayload{})
}

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

	// presence holds the PresenceListener (see presence.go).
	presence atomic.Pointer[presenceHolder]

	mu      sync.Mutex
	current *session
	// lastErr is why the last connection attempt failed or was lost; nil
	// while connected.
	lastErr error
	// changed is closed, and replaced, when the link's state changes.
	changed chan struct{}
}

// session is one connection: a fresh *xmpp.Component each time, since the
// library's components cannot be reused safely across reconnects.
type session struct {
	comp        *xmpp.Component
	relay       *relay.Relay // between comp and the server
	established atomic.Bool  // handshake done: stanzas may be sent
	lost        chan error   // first loss reason; buffered, written once
	lostOnce    sync.Once

	mu     sync.Mutex
	grants map[string]Grants
}

func (s *session) fail(err error) {
	s.lostOnce.Do(func() { s.lost <- err })
}

// NewConn returns an unconnected Conn; call Run to connect.
func NewConn(cfg Config, log *slog.Logger) *Conn {
	c := &Conn{cfg: cfg, log: log, router: xmpp.NewRouter(), iqs: newIQTracker(), changed: make(chan struct{})}
	c.router.HandleFunc("iq", func(_ xmpp.Sender, p stanza.Packet) { c.handleIQ(sessionSender{c}, p) })
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
	sess := &session{lost: make(chan error, 1), grants: map[string]Grants{}}
	// The library talks to the server through a relay that passes on only
	// what it can always decode (package relay).
	rl, err := relay.Start(c.cfg.Address, c.cfg.ConnectTimeout, c.deliverResult)
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
	pinger.Add(1)
	go func() {
		defer pinger.Done()
		c.pingLoop(pingCtx, sess)
	}()
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
		iq := &stanza.IQ{XMLName: xml.Name{Local: "iq"}, Attrs: stanza.Attrs{Type: stanza.IQTypeGet, To: c.cfg.PingTo}, Payload: &pingPayload{}}
		_, err := c.sendIQ(ctx, sess, iq)
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

// SendIQ sends a get or set IQ from the component JID and waits for its
// reply, at most IQTimeout. An error reply is returned as *StanzaError.
func (c *Conn) SendIQ(ctx context.Context, iq *stanza.IQ) (*stanza.IQ, error) {
	sess := c.session()
	if sess == nil {
		return nil, ErrDisconnected
	}
	return c.sendIQ(ctx, sess, iq)
}

func (c *Conn) sendIQ(ctx context.Context, sess *session, iq *stanza.IQ) (*stanza.IQ, error) {
	return c.roundTrip(ctx, sess, iqKind(iq), func(id string) error {
		iq.Id = id
		iq.From = c.cfg.Domain
		return sess.send(iq)
	})
}

// send writes a stanza to the server, encoded as the library's Send
// encodes it, past the library (see filter.go).
func (s *session) send(p stanza.Packet) error {
	b, err := xml.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode stanza: %w", err)
	}
	return s.relay.Send(b)
}

// deliverResult hands an IQ result without payload, read by the relay, to
// its waiter; it reports false when nobody waits for id.
func (c *Conn) deliverResult(id, from, to string) bool {
	return c.iqs.deliver(&stanza.IQ{
		XMLName: xml.Name{Space: stanza.NSComponent, Local: "iq"},
		Attrs:   stanza.Attrs{Type: stanza.IQTypeResult, Id: id, From: from, To: to},
	})
}

// sessionSender is the xmpp.Sender handed to the component's handlers: it
// writes on the current session past the library, like every other write.
type sessionSender struct{ c *Conn }

// Send encodes p and writes it on the current session.
func (s sessionSender) Send(p stanza.Packet) error {
	sess := s.c.session()
	if sess == nil {
		return ErrDisconnected
	}
	return sess.send(p)
}

// SendRaw writes raw on the current session.
func (s sessionSender) SendRaw(raw string) error {
	sess := s.c.session()
	if sess == nil {
		return ErrDisconnected
	}
	return sess.relay.Send([]byte(raw))
}

// SendIQ is refused: handlers run on the receive path and must not wait.
func (sessionSender) SendIQ(context.Context, *stanza.IQ) (chan stanza.IQ, error) {
	return nil, errors.New("handlers do not wait for IQ replies")
}

// roundTrip registers a waiter for a new IQ id, has send write the IQ with
// that id (from the component JID) on sess, and waits for the reply. kind
// names the IQ for the observer ("get", "set", "ping").
func (c *Conn) roundTrip(ctx context.Context, sess *session, kind string, send func(id string) error) (reply *stanza.IQ, err error) {
	if obs := c.cfg.Observer; obs != nil {
		start := time.Now()
		defer func() { obs.IQDone(kind, iqOutcome(err), time.Since(start)) }()
	}
	id, ch := c.iqs.register()
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

func (c *Conn) handleIQ(s xmpp.Sender, p stanza.Packet) {
	iq, ok := p.(*stanza.IQ)
	if !ok {
		return
	}
	switch iq.Type {
	case stanza.IQTypeResult, stanza.IQTypeError:
		if !c.iqs.deliver(iq) {
			c.log.Debug("IQ reply nobody waits for", "id", iq.Id, "from", iq.From, "type", iq.Type)
		}
	case stanza.IQTypeGet, stanza.IQTypeSet:
		c.answerIQ(s, iq)
	}
}

// answerIQ answers pings and refuses every other request, as RFC 6120
// requires. It runs on the receive goroutine and only writes.
func (c *Conn) answerIQ(s xmpp.Sender, iq *stanza.IQ) {
	reply := &stanza.IQ{XMLName: xml.Name{Local: "iq"}, Attrs: stanza.Attrs{Id: iq.Id, From: iq.To, To: iq.From}}
	if _, isPing := iq.Payload.(*pingPayload); isPing && iq.Type == stanza.IQTypeGet {
		reply.Type = stanza.IQTypeResult
	} else {
		reply.Type = stanza.IQTypeError
		reply.Error = &stanza.Err{XMLName: xml.Name{Local: "error"}, Code: 503, Type: stanza.ErrorTypeCancel, Reason: "service-unavailable"}
	}
	if reply.From == "" {
		reply.From = c.cfg.Domain
	}
	if err := s.Send(reply); err != nil {
		c.log.Debug("answering IQ", "error", err)
	}
}

func (c *Conn) handleMessage(_ xmpp.Sender, p stanza.Packet) {
	msg, ok := p.(stanza.Message)
	if !ok {
		return
	}
	domain, g, ok := parsePrivilege(&msg)
	if !ok {
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
	sess.grants[domain] = g
	sess.mu.Unlock()
	c.notify()
	if c.cfg.Observer != nil {
		c.cfg.Observer.Granted(domain, g.CanRead() && g.CanWrite())
	}
	c.log.Info("privileges granted", "domain", domain, "grants", g.String())
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
