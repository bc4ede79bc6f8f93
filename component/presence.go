package component

import (
	"gosrc.io/xmpp"
	"gosrc.io/xmpp/stanza"
	"mellium.im/xmpp/jid"
)

// PresenceListener is told about the presence the server forwards to the
// component under the XEP-0356 presence privilege (managed_entity): Prosody
// sends every online session's presence right after the component connects
// and then every available and unavailable presence, dropped connections
// included; ejabberd sends only the presences clients send themselves. Its
// methods run on the connection's receive goroutine (Presence) or its
// supervisor (Reset) and must not block.
type PresenceListener interface {
	// Presence reports an available (available true) or unavailable
	// presence from the session from, a JID with a localpart.
	Presence(from jid.JID, available bool)
	// Reset is called before every new connection: what the listener knew
	// about online sessions may be stale, and the server may announce
	// them again.
	Reset()
}

// presenceHolder lets SetPresenceListener be called while Run runs.
type presenceHolder struct{ l PresenceListener }

// SetPresenceListener installs l; nil removes it. Call it before Run so
// that the presences the server sends at connect reach it.
func (c *Conn) SetPresenceListener(l PresenceListener) {
	c.presence.Store(&presenceHolder{l: l})
}

func (c *Conn) presenceListener() PresenceListener {
	if h := c.presence.Load(); h != nil {
		return h.l
	}
	return nil
}

// resetPresence tells the listener that a new connection starts.
func (c *Conn) resetPresence() {
	if l := c.presenceListener(); l != nil {
		l.Reset()
	}
}

// handlePresence passes available and unavailable presences of users to
// the listener. It runs on the receive goroutine.
func (c *Conn) handlePresence(_ xmpp.Sender, p stanza.Packet) {
	pres, ok := p.(stanza.Presence)
	if !ok {
		return
	}
	var available bool
	switch pres.Type {
	case "", "available":
		available = true
	case stanza.PresenceTypeUnavailable:
	default: // subscription stanzas, probes, errors
		return
	}
	l := c.presenceListener()
	if l == nil {
		return
	}
	from, err := jid.Parse(pres.From)
	if err != nil || from.Localpart() == "" {
		return
	}
	l.Presence(from, available)
}

// Connected returns nil while the component is connected (handshake done),
// else ErrDisconnected. It is the readiness of a sync engine that does not
// use XEP-0356 for rosters (ejabberd API mode), where the link still
// carries the login presence.
func (c *Conn) Connected() error {
	if c.session() == nil {
		return ErrDisconnected
	}
	return nil
}
