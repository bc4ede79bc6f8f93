package component

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/roster"
)

// Roster reads owner's roster with a privileged GET (XEP-0356); owner is
// the user's bare JID. It implements rostersync.Store.
func (c *Conn) Roster(ctx context.Context, owner string) ([]roster.Item, error) {
	sess := c.session()
	if sess == nil {
		return nil, fmt.Errorf("read roster of %s: %w", owner, ErrDisconnected)
	}
	raw, err := c.roundTrip(ctx, sess, "get", owner, func(id string) error {
		return sess.relay.Send(appendGet(nil, id, c.cfg.Domain, owner, rosterQuery))
	})
	if err != nil {
		return nil, fmt.Errorf("read roster of %s: %w", owner, err)
	}
	return decodeRoster(raw), nil
}

// RosterSince reads owner's roster like Roster, asking for roster
// versioning (XEP-0237) with ver, the version of an earlier read ("" for
// none: the server then sends the whole roster and, if it supports
// versioning, its version). When the server answers that the roster has
// not changed since ver (a result without <query/>, to a non-empty ver),
// unchanged is true and items is nil. Otherwise items is the whole roster
// and version the one the server gives it ("" when it gives none: Prosody's
// mod_privilege ignores ver). It implements rostersync.VersionedStore.
func (c *Conn) RosterSince(ctx context.Context, owner, ver string) (items []roster.Item, version string, unchanged bool, err error) {
	sess := c.session()
	if sess == nil {
		return nil, "", false, fmt.Errorf("read roster of %s: %w", owner, ErrDisconnected)
	}
	raw, err := c.roundTrip(ctx, sess, "get", owner, func(id string) error {
		return sess.relay.Send(appendGet(nil, id, c.cfg.Domain, owner, versionedQuery(ver)))
	})
	if err != nil {
		return nil, "", false, fmt.Errorf("read roster of %s: %w", owner, err)
	}
	if raw == nil && ver != "" {
		return nil, "", true, nil
	}
	items, version = decodeVersioned(raw)
	return items, version, false, nil
}

// versionedQuery is the payload of a roster GET with the ver attribute.
func versionedQuery(ver string) string {
	b := appendAttr([]byte(`<query xmlns="jabber:iq:roster"`), "ver", ver, false)
	return string(append(b, "></query>"...))
}

// rosterResult is what decodeRoster reads of a roster GET result: strings
// only, so decoding cannot fail on content.
type rosterResult struct {
	Query *struct {
		Ver   string `xml:"ver,attr"`
		Items []struct {
			JID          string   `xml:"jid,attr"`
			Name         string   `xml:"name,attr"`
			Subscription string   `xml:"subscription,attr"`
			Ask          string   `xml:"ask,attr"`
			Groups       []string `xml:"jabber:iq:roster group"`
		} `xml:"jabber:iq:roster item"`
	} `xml:"jabber:iq:roster query"`
}

// decodeRoster returns the items of a roster GET result; a result without
// <query/> (raw nil) is an empty roster.
func decodeRoster(raw []byte) []roster.Item {
	items, _ := decodeVersioned(raw)
	return items
}

// decodeVersioned is decodeRoster that also returns the roster's version,
// the ver attribute of <query/> ("" when absent).
func decodeVersioned(raw []byte) ([]roster.Item, string) {
	if raw == nil {
		return nil, ""
	}
	var r rosterResult
	_ = xml.Unmarshal(raw, &r) // the relay has read it whole: it is well-formed
	if r.Query == nil {
		return []roster.Item{}, ""
	}
	items := make([]roster.Item, len(r.Query.Items))
	for i, it := range r.Query.Items {
		items[i] = roster.Item{JID: it.JID, Name: it.Name, Groups: it.Groups, Subscription: it.Subscription, Ask: it.Ask}
	}
	return items, r.Query.Ver
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
	_, err := c.roundTrip(ctx, sess, "set", owner, func(id string) error {
		bp := setBuffers.Get().(*[]byte)
		b := appendRosterSet((*bp)[:0], id, c.cfg.Domain, owner, item)
		err := sess.relay.Send(b) // one write, past the library
		*bp = b
		setBuffers.Put(bp)
		return err
	})
	var stErr *StanzaError
	if errors.As(err, &stErr) && stErr.Condition == "internal-server-error" {
		c.brokenWrites.Do(func() { c.log.Error(msgBrokenWrites, "error", err) })
	}
	return err
}

// msgBrokenWrites explains a privileged roster SET answered with
// internal-server-error: what ejabberd 23.01 to 23.04 answer to every one.
const msgBrokenWrites = "the XMPP server answered a privileged roster write with internal-server-error. " +
	"ejabberd 23.01-23.04 (Debian bookworm's own package) fail every one this way, a bug fixed in 23.10: " +
	"install ejabberd 23.10 or later (bookworm-backports has 24.12), or use API mode (ejabberd_api.url)"

// setBuffers holds the buffers SetRosterItem encodes into.
var setBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendRosterSet appends to b a roster SET of one item, exactly as
// xml.Marshal encodes the equivalent *stanza.IQ of gosrc.io/xmpp: the same
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

// appendGet appends to b an IQ get whose payload is the element payload.
func appendGet(b []byte, id, from, to, payload string) []byte {
	b = append(b, "<iq"...)
	b = appendAttr(b, "type", "get", true)
	b = appendAttr(b, "id", id, true)
	b = appendAttr(b, "from", from, true)
	b = appendAttr(b, "to", to, true)
	b = append(b, '>')
	b = append(b, payload...)
	return append(b, "</iq>"...)
}

// Payloads of the IQ gets the component sends.
const (
	rosterQuery = `<query xmlns="jabber:iq:roster"></query>`
	pingElement = `<ping xmlns="urn:xmpp:ping"></ping>`
)

// Namespaces of the IQ requests the component serves.
const (
	nsPing      = "urn:xmpp:ping"
	nsDiscoInfo = "http://jabber.org/protocol/disco#info"
)

// appendAnswer appends to b the answer to an IQ request of type typ and
// id from the JID to, whose first child is named child, sent from from: a
// result for a ping or a disco#info get, service-unavailable otherwise.
func appendAnswer(b []byte, typ, id, from, to string, child xml.Name) []byte {
	b = append(b, "<iq"...)
	answer := "error"
	if typ == "get" && (child == xml.Name{Space: nsPing, Local: "ping"} || child == xml.Name{Space: nsDiscoInfo, Local: "query"}) {
		answer = "result"
	}
	b = appendAttr(b, "type", answer, true)
	b = appendAttr(b, "id", id, false)
	b = appendAttr(b, "from", from, true)
	b = appendAttr(b, "to", to, true)
	switch {
	case answer == "error":
		return append(b, `><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"></service-unavailable></error></iq>`...)
	case child.Space == nsDiscoInfo:
		return append(b, `><query xmlns="http://jabber.org/protocol/disco#info">`+
			`<identity category="component" type="generic" name="roster-sidecar"></identity>`+
			`<feature var="http://jabber.org/protocol/disco#info"></feature><feature var="urn:xmpp:ping"></feature>`+
			`</query></iq>`...)
	}
	return append(b, "/>"...)
}
