package component

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"gosrc.io/xmpp/stanza"

	"roster-sidecar/component/internal/relay"
)

// The RSM case of issue 11: an IQ result that any user can send the
// component, whose roster query the library could not decode.
const rsmResult = `<iq type='result' id='anything' from='mallory@example.test/x' to='roster.example.test'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'><count>x</count></set></query></iq>`

// handlerRecorder is a relay.Handler that hands replies to a Conn's
// tracker and records the answers the Conn would send.
type handlerRecorder struct {
	c       *Conn
	answers [][]byte
}

func (h *handlerRecorder) Reply(id, from string, raw []byte, bare bool) {
	if bare {
		raw = nil
	}
	h.c.iqs.deliver(id, from, raw)
}

func (h *handlerRecorder) Request(typ, id, from, to string, child xml.Name) {
	h.answers = append(h.answers, h.c.answer(typ, id, from, to, child))
}

// FuzzStanzaHandling feeds arbitrary server stanzas through the relay's
// filter, the library's parser and the component's handlers, with a
// roster GET of alice pending: no panic, no decode error in the library,
// one well-formed answer per IQ request, the pending GET answered only by
// a reply from alice, and privileges recorded only from privilege messages
// of bare domain JIDs, for few domains.
func FuzzStanzaHandling(f *testing.F) {
	seeds := []string{
		rsmResult,
		`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/><perm access='iq'/></privilege></message>`,
		`<message from='example.test'><privilege xmlns='urn:xmpp:privilege:1'><perm type='get' access='roster'/></privilege></message>`,
		`<message from='mallory@example.test/r'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege></message>`,
		`<iq type='result' id='PENDING' from='alice@example.test'><query xmlns='jabber:iq:roster'><item jid='b@example.test' subscription='both' name='B'><group>G</group></item></query></iq>`,
		`<iq type='result' id='PENDING' from='mallory@example.test/r'><query xmlns='jabber:iq:roster'><item jid='evil@example.test'/></query></iq>`,
		`<iq type='error' id='PENDING' from='alice@example.test'><error type='cancel' code='abc'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
		`<iq type='get' id='p' from='u@example.test/r' to='roster.example.test'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<iq type='get' id='d' from='u@example.test/r' to='roster.example.test'><query xmlns='http://jabber.org/protocol/disco#info'><set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set></query></iq>`,
		`<iq type='set' id='s' from='u@example.test/r'><query xmlns='jabber:iq:roster'/></iq>`,
		`<presence from='a@example.test/r'><priority>300</priority></presence>`,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if !wellFormedBody(body) {
			return
		}
		c := NewConn(Config{Domain: "roster.example.test", UserDomains: []string{"example.test"}}, discard)
		sess := &session{lost: make(chan error, 1), grants: map[string]Grants{}}
		c.current = sess
		id, ch := c.iqs.register("alice@example.test")
		body = strings.ReplaceAll(body, "PENDING", id)
		h := &handlerRecorder{c: c}
		var out bytes.Buffer
		_ = relay.Filter(&out, strings.NewReader(streamHead+body+streamTail), h)
		select {
		case r := <-ch:
			var head struct {
				From string `xml:"from,attr"`
			}
			if r.raw != nil && (xml.Unmarshal(r.raw, &head) != nil || !repliesFor(head.From, "alice@example.test")) {
				t.Fatalf("the pending GET took a reply neither from alice nor from her server: %s", r.raw)
			}
			_ = decodeRoster(r.raw)
			_ = stanzaError(r.raw)
		default:
		}
		pkts, err := decoded(&out)
		if err != nil {
			t.Fatalf("a stanza passed on to the library does not decode: %v\n%s", err, out.String())
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case stanza.Message:
				c.handleMessage(nil, p)
			case stanza.Presence:
				c.handlePresence(nil, p)
			case *stanza.IQ:
				t.Fatalf("an IQ reached the library: %+v", p)
			}
		}
		for d := range sess.grants {
			if !isDomainJID(d) {
				t.Fatalf("grants recorded for %q, not a domain", d)
			}
		}
		if len(sess.grants) > maxGrantDomains {
			t.Fatalf("%d domains granted", len(sess.grants))
		}
		for _, a := range h.answers {
			var iq struct {
				Type string `xml:"type,attr"`
				From string `xml:"from,attr"`
			}
			if err := xml.Unmarshal(a, &iq); err != nil || (iq.Type != "result" && iq.Type != "error") || iq.From == "" {
				t.Fatalf("bad answer %s: %v", a, err)
			}
		}
	})
}

// decoded returns the stanzas the library decodes from a filtered stream,
// and the first decode error.
func decoded(r io.Reader) ([]stanza.Packet, error) {
	d := xml.NewDecoder(r)
	for { // the stream header
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			break
		}
	}
	var pkts []stanza.Packet
	for {
		p, err := stanza.NextPacket(d)
		if err != nil {
			if strings.Contains(err.Error(), "connection closed") || errors.Is(err, io.EOF) {
				return pkts, nil
			}
			return pkts, err
		}
		if _, end := p.(stanza.StreamClosePacket); end {
			return pkts, nil
		}
		pkts = append(pkts, p)
	}
}

// FuzzAnswer: whatever a request carries, the answer is one well-formed
// IQ result or error with the request's id, from the component.
func FuzzAnswer(f *testing.F) {
	f.Add("get", "id1", "u@example.test/r", "roster.example.test", nsPing, "ping")
	f.Add("get", `i"d<&>'`, "", "roster.example.test", nsDiscoInfo, "query")
	f.Add("set", "\x00\xff", "a@b", "c", "urn:x", "y")
	f.Fuzz(func(t *testing.T, typ, id, from, to, space, local string) {
		a := appendAnswer(nil, typ, id, to, from, xml.Name{Space: space, Local: local})
		var iq struct {
			XMLName xml.Name
			Type    string `xml:"type,attr"`
			ID      string `xml:"id,attr"`
		}
		d := xml.NewDecoder(bytes.NewReader(a))
		if err := d.Decode(&iq); err != nil {
			t.Fatalf("answer %s: %v", a, err)
		}
		if _, err := d.Token(); !errors.Is(err, io.EOF) {
			t.Fatalf("more than one element in %s", a)
		}
		if iq.XMLName.Local != "iq" || (iq.Type != "result" && iq.Type != "error") {
			t.Fatalf("answer %s", a)
		}
		if strings.ToValidUTF8(id, "\uFFFD") == id && !strings.ContainsFunc(id, func(r rune) bool { return !xmlChar(r) }) && iq.ID != id {
			t.Fatalf("id %q answered as %q", id, iq.ID)
		}
	})
}
