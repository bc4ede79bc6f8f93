package component

import (
	"context"
	"errors"
	"maps"
	"time"
)

// ConnObserver receives the events of a Conn, e.g. to feed metrics. Its
// methods are called from the connection's goroutines and must not block.
type ConnObserver interface {
	// IQDone reports one IQ round trip: kind is "get", "set", "ping",
	// "disco" (looking for the server helper) or "batch" (a request of the
	// server helper); outcome is "result", "error" (a stanza error reply),
	// "timeout", "disconnected" (the link was lost or the IQ could not be
	// written) or "cancelled" (the caller gave up).
	IQDone(kind, outcome string, d time.Duration)
	// LinkChanged is called with true when a connection's handshake
	// succeeded and with false when that connection is gone, taking its
	// privileges with it.
	LinkChanged(up bool)
	// Reconnecting is called before every connection attempt after the
	// first.
	Reconnecting()
	// Granted is called when the server announces the privileges of the
	// component for a domain (lower case) on the current connection;
	// rosterReadWrite tells whether they include roster get and set.
	Granted(domain string, rosterReadWrite bool)
}

// iqOutcome classifies the error of an IQ round trip for
// ConnObserver.IQDone.
func iqOutcome(err error) string {
	var stErr *StanzaError
	switch {
	case err == nil:
		return "result"
	case errors.As(err, &stErr):
		return "error"
	case errors.Is(err, ErrIQTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	default:
		return "disconnected"
	}
}

func (c *Conn) setLastError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	c.notifyLocked()
}

// LastError returns why the last connection attempt failed or the last
// connection was lost (ErrAuth for a refused secret); nil while connected
// and before the first attempt ended.
func (c *Conn) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Privileges returns a copy of the privileges granted on the current
// connection, by domain (lower case); empty when not connected or when the
// server sent none.
func (c *Conn) Privileges() map[string]Grants {
	sess := c.session()
	if sess == nil {
		return map[string]Grants{}
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return maps.Clone(sess.grants)
}
