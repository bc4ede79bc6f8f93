package component

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"

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
func (c *Conn) SetRosterItem(ctx context.Context, user string, item stanza.RosterItem) error {
	iq := rosterIQ(stanza.IQTypeSet, user)
	item.XMLName = xml.Name{Space: stanza.NSRoster, Local: "item"}
	iq.Payload.(*stanza.RosterItems).Items = []stanza.RosterItem{item}
	if _, err := c.SendIQ(ctx, iq); err != nil {
		return fmt.Errorf("set %s in roster of %s: %w", item.Jid, user, err)
	}
	return nil
}

func rosterIQ(typ stanza.StanzaType, user string) *stanza.IQ {
	return &stanza.IQ{
		XMLName: xml.Name{Local: "iq"},
		Attrs:   stanza.Attrs{Type: typ, To: user},
		Payload: &stanza.RosterItems{XMLName: xml.Name{Space: stanza.NSRoster, Local: "query"}},
	}
}

// HonoursSubscription reports whether the server of domain stores the
// subscription sent in a privileged roster SET. ejabberd ignores it (every
// item is stored as "none"), so comparing subscriptions there would rewrite
// every item at every refresh. The answer is asked once per connection with
// a software version query (XEP-0092); an unknown server is assumed to
// honour it.
func (c *Conn) HonoursSubscription(ctx context.Context, domain string) bool {
	sess := c.session()
	if sess == nil {
		return true
	}
	domain = strings.ToLower(domain)
	sess.mu.Lock()
	name, known := sess.software[domain]
	sess.mu.Unlock()
	if !known {
		iq := &stanza.IQ{XMLName: xml.Name{Local: "iq"}, Attrs: stanza.Attrs{Type: stanza.IQTypeGet, To: domain}, Payload: &stanza.Version{XMLName: xml.Name{Space: "jabber:iq:version", Local: "query"}}}
		reply, err := c.sendIQ(ctx, sess, iq)
		if err != nil && ctx.Err() != nil {
			return true // not learnt: ask again next time
		}
		if v, ok := replyVersion(reply); ok {
			name = v.Name
		}
		sess.mu.Lock()
		sess.software[domain] = name
		sess.mu.Unlock()
		c.log.Info("XMPP server software", "domain", domain, "name", name, "compare_subscription", !isEjabberd(name))
	}
	return !isEjabberd(name)
}

func replyVersion(reply *stanza.IQ) (*stanza.Version, bool) {
	if reply == nil || reply.Type != stanza.IQTypeResult {
		return nil, false
	}
	v, ok := reply.Payload.(*stanza.Version)
	return v, ok
}

func isEjabberd(name string) bool { return strings.EqualFold(strings.TrimSpace(name), "ejabberd") }
