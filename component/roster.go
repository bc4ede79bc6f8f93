package component

import (
	"context"
	"encoding/xml"
	"fmt"
	"sync"
	"unicode/utf8"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/roster"
)

// Roster reads owner's roster with a privileged GET (XEP-0356); owner is
// the user's bare JID. It implements rostersync.Store.
func (c *Conn) Roster(ctx context.Context, owner string) ([]roster.Item, error) {
	iq := rosterIQ(stanza.IQTypeGet, owner)
	reply, err := c.SendIQ(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("read roster of %s: %w", owner, err)
	}
	result, ok := reply.Payload.(*stanza.RosterItems)
	if !ok {
		return nil, nil // a result without <query/> is an empty roster
	}
	items := make([]roster.Item, len(result.Items))
	for i, it := range result.Items {
		items[i] = roster.Item{JID: it.Jid, Name: it.Name, Groups: it.Groups, Subscription: it.Subscription, Ask: it.Ask}
	}
	return items, nil
}

// Put adds or replaces one item of owner's roster with a privileged SET.
// It implements rostersync.Store.
func (c *Conn) Put(ctx context.Context, owner string, item roster.Item) error {
	if err := c.setItem(ctx, owner, item); err != nil {
		return fmt.Errorf("set %s in roster of %s: %w", item.JID, owner, err)
	}
	return nil
}

// Remove removes contact from owner's roster with a privileged SET of
// subscription "remove". It implements rostersync.Store.
func (c *Conn) Remove(ctx context.Context, owner, contact string) error {
	if err := c.setItem(ctx, owner, roster.Item{JID: contact, Subscription: subscriptionRemove}); err != nil {
		return fmt.Errorf("remove %s from roster of %s: %w", contact, owner, err)
	}
	return nil
}

// subscriptionRemove is the subscription of a roster SET that removes the
// item (RFC 6121 2.5).
const subscriptionRemove = "remove"

// setItem sends a roster SET of one item: servers apply one item per SET.
//
// The SET is encoded by appendRosterSet, byte for byte as xml.Marshal
// would encode it, without its reflection and its 4 KiB buffer per call:
// the largest cost of the sidecar when it populates rosters.
func (c *Conn) setItem(ctx context.Context, owner string, item roster.Item) error {
	sess := c.session()
	if sess == nil {
		return ErrDisconnected
	}
	_, err := c.roundTrip(ctx, sess, string(stanza.IQTypeSet), func(id string) error {
		bp := setBuffers.Get().(*[]byte)
		b := appendRosterSet((*bp)[:0], id, c.cfg.Domain, owner, item)
		err := sess.relay.Send(b) // one write, past the library
		*bp = b
		setBuffers.Put(bp)
		return err
	})
	return err
}

// setBuffers holds the buffers SetRosterItem encodes into.
var setBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendRosterSet appends to b a roster SET of one item, exactly as
// xml.Marshal encodes the equivalent *stanza.IQ (see rosterIQ): the same
// elements, attribute order, omitted empty attributes and escaping. The
// item's Ask is never written (servers refuse it in a SET).
func appendRosterSet(b []byte, id, from, to string, item roster.Item) []byte {
	b = append(b, "<iq"...)
	b = appendAttr(b, "type", string(stanza.IQTypeSet), true)
	b = appendAttr(b, "id", id, true)
	b = appendAttr(b, "from", from, true)
	b = appendAttr(b, "to", to, true)
	b = append(b, `><query xmlns="jabber:iq:roster"><item xmlns="jabber:iq:roster"`...)
	b = appendAttr(b, "jid", item.JID, false)
	b = appendAttr(b, "name", item.Name, true)
	b = appendAttr(b, "subscription", item.Subscription, true)
	b = append(b, '>')
	for _, g := range item.Groups {
		b = append(b, "<group>"...)
		b = appendEscaped(b, g)
		b = append(b, "</group>"...)
	}
	return append(b, "</item></query></iq>"...)
}

// appendAttr appends ` name="value"`, or nothing when omitEmpty and value
// is empty.
func appendAttr(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, `="`...)
	b = appendEscaped(b, value)
	return append(b, '"')
}

// appendEscaped appends s escaped as encoding/xml escapes attribute values
// and character data (the printer's EscapeString): the five markup
// characters, tab, newline and carriage return as references, and bytes
// that are not valid UTF-8 or runes outside XML's character range as
// U+FFFD.
func appendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		r, width := utf8.DecodeRuneInString(s[i:])
		i += width
		var esc string
		switch r {
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !xmlChar(r) || (r == utf8.RuneError && width == 1) {
				esc = "\uFFFD"
				break
			}
			continue
		}
		b = append(b, s[last:i-width]...)
		b = append(b, esc...)
		last = i
	}
	return append(b, s[last:]...)
}

// xmlChar reports whether r is in XML 1.0's character range (as
// encoding/xml's isInCharacterRange).
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

func rosterIQ(typ stanza.StanzaType, user string) *stanza.IQ {
	return &stanza.IQ{
		XMLName: xml.Name{Local: "iq"},
		Attrs:   stanza.Attrs{Type: typ, To: user},
		Payload: &stanza.RosterItems{XMLName: xml.Name{Space: stanza.NSRoster, Local: "query"}},
	}
}
