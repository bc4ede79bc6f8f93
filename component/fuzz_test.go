package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"testing"

	"gosrc.io/xmpp/stanza"
)

// recordingSender is the xmpp.Sender handed to handlers in the fuzz test.
type recordingSender struct{ sent []stanza.Packet }

func (r *recordingSender) Send(p stanza.Packet) error { r.sent = append(r.sent, p); return nil }
func (r *recordingSender) SendIQ(context.Context, *stanza.IQ) (chan stanza.IQ, error) {
	panic("handlers must not wait for IQ replies")
}
func (r *recordingSender) SendRaw(string) error { return nil }

// FuzzStanzaHandling feeds arbitrary server stanzas through the library's
// parser and the component's handlers: no panic, at most one answer per
// IQ request, always from the component and marshalable, and privileges
// recorded only from privilege messages.
func FuzzStanzaHandling(f *testing.F) {
	seeds := []string{
		`<message xmlns='jabber:component:accept' from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/><perm access='iq'/></privilege></message>`,
		`<message xmlns='jabber:component:accept' from='example.test'><privilege xmlns='urn:xmpp:privilege:1'><perm type='get' access='roster'/></privilege></message>`,
		`<message xmlns='jabber:component:accept' from='example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'><x/></perm></privilege></message>`,
		`<iq xmlns='jabber:component:accept' type='result' id='x' from='a@example.test' to='roster.example.test'><query xmlns='jabber:iq:roster'><item jid='b@example.test' subscription='both' name='B'><group>G</group></item></query></iq>`,
		`<iq xmlns='jabber:component:accept' type='error' id='y'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
		`<iq xmlns='jabber:component:accept' type='get' id='p' from='example.test' to='roster.example.test'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<iq xmlns='jabber:component:accept' type='set' id='s' from='example.test'><query xmlns='jabber:iq:roster'/></iq>`,
		`<presence xmlns='jabber:component:accept' from='a@example.test/r'/>`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewConn(Config{Domain: "roster.example.test"}, discard)
		sess := &session{lost: make(chan error, 1), grants: map[string]Grants{}}
		c.current = sess
		pkt, err := stanza.NextPacket(xml.NewDecoder(bytes.NewReader(data)))
		if err != nil {
			return
		}
		out := &recordingSender{}
		switch p := pkt.(type) {
		case *stanza.IQ:
			c.handleIQ(out, p)
			request := p.Type == stanza.IQTypeGet || p.Type == stanza.IQTypeSet
			if (request && len(out.sent) != 1) || (!request && len(out.sent) != 0) {
				t.Fatalf("IQ type %q got %d answers", p.Type, len(out.sent))
			}
		case stanza.Message:
			c.handleMessage(out, p)
			var v1 privilegeV1
			var v2 privilegeV2
			if !p.Get(&v1) && !p.Get(&v2) && len(sess.grants) != 0 {
				t.Fatalf("grants recorded from a message without privilege: %v", sess.grants)
			}
		}
		for _, reply := range out.sent {
			iq := reply.(*stanza.IQ)
			if iq.From == "" {
				t.Fatalf("answer without from: %+v", iq)
			}
			if _, err := xml.Marshal(iq); err != nil {
				t.Fatalf("answer does not marshal: %v", err)
			}
		}
	})
}
