package component

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ErrDisconnected is returned for IQs that were pending or sent while the
// component was not connected to the server.
var ErrDisconnected = errors.New("not connected to the XMPP server")

// ErrIQTimeout is returned when the server did not answer an IQ in time.
var ErrIQTimeout = errors.New("no answer from the XMPP server")

// StanzaError is an IQ error reply from the server.
type StanzaError struct {
	// Type is the error type (cancel, modify, auth, wait).
	Type string
	// Condition is the defined condition, e.g. item-not-found.
	Condition string
	// Text is the optional human-readable text.
	Text string
}

func (e *StanzaError) Error() string {
	s := "XMPP error " + e.Type + "/" + e.Condition
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// iqTracker matches IQ replies to the requests waiting for them. A waiter is
// registered before its request is written, so no reply can be missed, and
// replies are delivered without blocking the receive goroutine. A reply
// reaches a waiter only when its id is pending and it comes from the JID
// the request went to; ids are random, so nobody can answer a request he
// did not see.
type iqTracker struct {
	mu      sync.Mutex
	waiters map[string]waiter
}

// waiter is one pending request.
type waiter struct {
	to string // the JID the request went to
	ch chan iqReply
}

// iqReply is what a waiter receives: the reply's raw bytes (nil for a
// result without payload), or why there is none.
type iqReply struct {
	raw []byte
	err error
}

func newIQTracker() *iqTracker {
	return &iqTracker{waiters: make(map[string]waiter)}
}

// register allocates an unpredictable id for a request to the JID to, and
// the channel its reply arrives on.
func (t *iqTracker) register(to string) (string, chan iqReply) {
	id := rand.Text()
	ch := make(chan iqReply, 1)
	t.mu.Lock()
	t.waiters[id] = waiter{to: to, ch: ch}
	t.mu.Unlock()
	return id, ch
}

// forget drops a waiter that no longer wants its reply.
func (t *iqTracker) forget(id string) {
	t.mu.Lock()
	delete(t.waiters, id)
	t.mu.Unlock()
}

// deliver hands a result or error IQ from from to the waiter of id; raw is
// the stanza (nil for a result without payload) and is copied. It reports
// false when nobody waits for that id from that JID (a late, unknown or
// forged reply). It never blocks.
func (t *iqTracker) deliver(id, from string, raw []byte) bool {
	t.mu.Lock()
	w, ok := t.waiters[id]
	if ok && !repliesFor(from, w.to) {
		ok = false
	}
	if ok {
		delete(t.waiters, id)
	}
	t.mu.Unlock()
	if ok {
		w.ch <- iqReply{raw: clone(raw)}
	}
	return ok
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// repliesFor reports whether a reply from from may answer a request to to:
// it comes from to itself (RFC 6120 8.1.2.1) or from to's server, which
// answers for its users and for full JIDs it cannot deliver to. Users
// cannot send as another user nor as a server.
func repliesFor(from, to string) bool {
	if strings.EqualFold(from, to) {
		return true
	}
	domain := to
	if i := strings.IndexByte(domain, '@'); i >= 0 {
		domain = domain[i+1:]
	}
	if i := strings.IndexByte(domain, '/'); i >= 0 {
		domain = domain[:i]
	}
	return from != "" && strings.EqualFold(from, domain)
}

// failAll fails every pending IQ at once, e.g. on disconnect.
func (t *iqTracker) failAll(err error) {
	t.mu.Lock()
	waiters := t.waiters
	t.waiters = make(map[string]waiter)
	t.mu.Unlock()
	for _, w := range waiters {
		w.ch <- iqReply{err: err}
	}
}

// wait blocks until the reply for id arrives, the timeout passes or ctx
// ends. It returns the reply's raw bytes (nil for a result without
// payload); an error reply is returned as *StanzaError.
func (t *iqTracker) wait(ctx context.Context, id string, ch chan iqReply, timeout time.Duration) ([]byte, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.raw != nil {
			if err := stanzaError(r.raw); err != nil {
				return nil, err
			}
		}
		return r.raw, nil
	case <-timer.C:
		t.forget(id)
		return nil, fmt.Errorf("%w after %s", ErrIQTimeout, timeout)
	case <-ctx.Done():
		t.forget(id)
		return nil, ctx.Err()
	}
}

// iqHead is what stanzaError reads of an IQ: strings only, so decoding
// cannot fail on content.
type iqHead struct {
	Type  string `xml:"type,attr"`
	Error *struct {
		Type       string `xml:"type,attr"`
		Conditions []struct {
			XMLName xml.Name
		} `xml:",any"`
		Text string `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text"`
	} `xml:"error"`
}

// stanzaError returns the *StanzaError of an IQ of type error, else nil.
func stanzaError(raw []byte) error {
	var head iqHead
	if xml.Unmarshal(raw, &head) != nil || head.Type != "error" {
		return nil
	}
	e := &StanzaError{Type: "cancel", Condition: "undefined-condition"}
	if head.Error == nil {
		return e
	}
	e.Type, e.Text = head.Error.Type, head.Error.Text
	for _, c := range head.Error.Conditions {
		if c.XMLName.Space == nsStanzas && c.XMLName.Local != "text" {
			e.Condition = c.XMLName.Local
			break
		}
	}
	return e
}

const nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
