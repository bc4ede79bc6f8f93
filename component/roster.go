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
