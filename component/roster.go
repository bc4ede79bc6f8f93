package component

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"gosrc.io/xmpp/stanza"
)

// GetRoster reads a user's roster with a privileged GET (XEP-0356).
func (c *Conn) GetRoster(ctx context.Context, user string) ([]stanza.RosterItem, error) {
	iq := rosterIQ(stanza.IQTypeGet, user)
	reply, err := c.SendIQ(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("read roster of %s: %w", user, err)
	}
	items, ok := reply.Payload.(*stanza.RosterItems)
	if !ok {
		return nil, nil // a result without <query/> is an empty roster
	}
	return items.Items, nil
}

// SetRosterItem adds, changes or (with subscription "remove") removes one
// item of a user's roster with a privileged SET. Servers apply one item per
// SET, so there is never more than one.
//
// The SET is encoded by appendRosterSet, byte for byte as xml.Marshal
// would encode it, without its reflection and its 4 KiB buffer per call:
// the largest cost of the sidecar when it populates rosters.
func (c *Conn) SetRosterItem(ctx context.Context, user string, item stanza.RosterItem) error {
	sess := c.session()
	if sess == nil {
		return fmt.Errorf("set %s in roster of %s: %w", item.Jid, user, ErrDisconnected)
	}
	_, err := c.roundTrip(ctx, sess, string(stanza.IQTypeSet), func(id string) error {
		bp := setBuffers.Get().(*[]byte)
		b := appendRosterSet((*bp)[:0], id, c.cfg.Domain, user, item)
		err := sess.relay.send(b) // one write, past the library
		*bp = b
		setBuffers.Put(bp)
		return err
	})
	if err != nil {
		return fmt.Errorf("set %s in roster of %s: %w", item.Jid, user, err)
	}
	return nil
}

// setBuffers holds the buffers SetRosterItem encodes into.
var setBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendRosterSet appends to b a roster SET of one item, exactly as
// xml.Marshal encodes the equivalent *stanza.IQ (see rosterIQ): the same
// elements, attribute order, omitted empty attributes and escaping.
func appendRosterSet(b []byte, id, from, to string, item stanza.RosterItem) []byte {
	b = append(b, "<iq"...)
	b = appendAttr(b, "type", string(stanza.IQTypeSet), true)
	b = appendAttr(b, "id", id, true)
	b = appendAttr(b, "from", from, true)
	b = appendAttr(b, "to", to, true)
	b = append(b, `><query xmlns="jabber:iq:roster"><item xmlns="jabber:iq:roster"`...)
	b = appendAttr(b, "jid", item.Jid, false)
	b = appendAttr(b, "ask", item.Ask, true)
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

// SubscriptionHonoured reports whether the server of domain was seen to
// store the subscription sent in a privileged roster SET; known is false
// until LearnSubscription was called. ejabberd ignores it (every item is
// stored as "none"): comparing subscriptions there would rewrite every item
// at every refresh.
func (c *Conn) SubscriptionHonoured(domain string) (honoured, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	honoured, known = c.subscription[strings.ToLower(domain)]
	return honoured, known
}

// LearnSubscription records what a read-back showed: whether the server of
// domain stores the subscription of a privileged SET.
func (c *Conn) LearnSubscription(domain string, honoured bool) {
	domain = strings.ToLower(domain)
	c.mu.Lock()
	_, known := c.subscription[domain]
	c.subscription[domain] = honoured
	c.mu.Unlock()
	if !known {
		c.log.Info("learnt how the server stores roster subscriptions", "domain", domain, "subscription_honoured", honoured)
	}
}
