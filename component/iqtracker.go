package component

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gosrc.io/xmpp/stanza"
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
// replies are delivered without blocking the receive goroutine.
type iqTracker struct {
	prefix string
	next   atomic.Uint64

	mu      sync.Mutex
	waiters map[string]chan iqReply
}

type iqReply struct {
	iq  *stanza.IQ
	err error
}

func newIQTracker() *iqTracker {
	return &iqTracker{
		prefix:  "rs" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-",
		waiters: make(map[string]chan iqReply),
	}
}

// register allocates an id and its reply channel.
func (t *iqTracker) register() (string, chan iqReply) {
	id := t.prefix + strconv.FormatUint(t.next.Add(1), 36)
	ch := make(chan iqReply, 1)
	t.mu.Lock()
	t.waiters[id] = ch
	t.mu.Unlock()
	return id, ch
}

// forget drops a waiter that no longer wants its reply.
func (t *iqTracker) forget(id string) {
	t.mu.Lock()
	delete(t.waiters, id)
	t.mu.Unlock()
}

// deliver hands a result or error IQ to its waiter. It reports false when
// nobody waits for that id (a late or unknown reply). It never blocks.
func (t *iqTracker) deliver(iq *stanza.IQ) bool {
	t.mu.Lock()
	ch, ok := t.waiters[iq.Id]
	delete(t.waiters, iq.Id)
	t.mu.Unlock()
	if ok {
		ch <- iqReply{iq: iq}
	}
	return ok
}

// failAll fails every pending IQ at once, e.g. on disconnect.
func (t *iqTracker) failAll(err error) {
	t.mu.Lock()
	waiters := t.waiters
	t.waiters = make(map[string]chan iqReply)
	t.mu.Unlock()
	for _, ch := range waiters {
		ch <- iqReply{err: err}
	}
}

// pending reports how many IQs await a reply.
func (t *iqTracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiters)
}

// wait blocks until the reply for id arrives, the timeout passes or ctx ends.
// A stanza error reply is returned as *StanzaError.
func (t *iqTracker) wait(ctx context.Context, id string, ch chan iqReply, timeout time.Duration) (*stanza.IQ, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.iq.Type == stanza.IQTypeError {
			return r.iq, stanzaError(r.iq)
		}
		return r.iq, nil
	case <-timer.C:
		t.forget(id)
		return nil, fmt.Errorf("%w after %s", ErrIQTimeout, timeout)
	case <-ctx.Done():
		t.forget(id)
		return nil, ctx.Err()
	}
}

func stanzaError(iq *stanza.IQ) error {
	if iq.Error == nil {
		return &StanzaError{Type: "cancel", Condition: "undefined-condition"}
	}
	return &StanzaError{Type: string(iq.Error.Type), Condition: iq.Error.Reason, Text: iq.Error.Text}
}
