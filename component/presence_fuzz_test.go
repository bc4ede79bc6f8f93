package component

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"gosrc.io/xmpp/stanza"
	"mellium.im/xmpp/jid"

	"roster-sidecar/component/internal/relay"
)

// recordingListener records what handlePresence passes on.
type recordingListener struct{ got []string }

func (r *recordingListener) Presence(from jid.JID, available bool) {
	if available {
		r.got = append(r.got, "available "+from.String())
	} else {
		r.got = append(r.got, "unavailable "+from.String())
	}
}
func (r *recordingListener) Reset() {}

const (
	streamHead = `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='x'>`
	streamTail = `</stream:stream>`
)

// filtered runs a server stream with body between the stream tags through
// the relay's filter and returns the stanzas the library decodes from the
// result, and the first decode error.
func filtered(body string) ([]stanza.Packet, error) {
	var out bytes.Buffer
	_ = relay.Filter(&out, strings.NewReader(streamHead+body+streamTail), nil)
	return decoded(&out)
}

// FuzzFilteredStanzasDecode: whatever well-formed stanzas users make the
// server send the component (presence, messages and IQs to its JID), what
// the relay passes on decodes in the library: a decode error would end the
// receive loop, and Prosody resends a session's last presence at every
// reconnect.
func FuzzFilteredStanzasDecode(f *testing.F) {
	for _, s := range []string{
		`<presence from='u@example.test/r'><priority>128</priority></presence>`,
		`<presence from='u@example.test/r'><x xmlns='urn:a'><priority>abc</priority></x><priority xmlns=''>-129</priority></presence>`,
		`<presence from='u@example.test/r'><x xmlns='http://jabber.org/protocol/muc'><history since='garbage' maxchars='x'/></x></presence>`,
		`<message from='u@example.test/r' to='roster.example.test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items max_items='x'/></event><body>hi</body></message>`,
		`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege><x xmlns='urn:a'><priority>999</priority></x></message>`,
		rsmResult,
		`<iq type='result' id='1' from='u@example.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items max_items='x'/></pubsub></iq>`,
		`<iq type='get' id='2' from='u@example.test/r'><pubsub xmlns='http://jabber.org/protocol/pubsub'><set xmlns='http://jabber.org/protocol/rsm'><count>abc</count></set></pubsub></iq>`,
		`<iq type='result' id='3' from='u@example.test'><query xmlns='jabber:iq:roster'><item jid='a@example.test' name='A' subscription='both'><group>G</group></item></query></iq>`,
		`<iq type='error' id='4'><error code='abc' type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
		`<iq type='get' id='5' from='example.test'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<p:presence xmlns:p='jabber:component:accept' from='u@example.test/r'><p:priority>300</p:priority></p:presence>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if !wellFormedBody(body) {
			return
		}
		if _, err := filtered(body); err != nil {
			t.Fatalf("a stanza passed on by the filter does not decode: %v\n%s", err, body)
		}
	})
}

// wellFormedBody reports whether body is a sequence of well-formed
// elements (and whitespace), as a server would send.
func wellFormedBody(body string) bool {
	d := xml.NewDecoder(strings.NewReader(streamHead + body + streamTail))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

func TestFilterKeepsWhatTheComponentUses(t *testing.T) {
	pkts, err := filtered(`<handshake/>` +
		`<message from='example.test' to='roster.example.test'><body>x</body><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege></message>` +
		"\n<iq type='result' id='r1' from='alice@example.test'><query xmlns='jabber:iq:roster'><item jid='b@example.test' name='B &amp; co' subscription='both'><group>G</group></item></query></iq>" +
		`<iq type='get' id='p1' from='example.test'><ping xmlns='urn:xmpp:ping'/></iq>` +
		`<presence from='u@example.test/r' type='unavailable'><priority>300</priority><status>bye</status></presence>` +
		`<presence from='v@example.test/r'/>`)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 4 {
		t.Fatalf("%d packets, want the handshake, the message and two presences (IQs go to the component): %#v", len(pkts), pkts)
	}
	msg := pkts[1].(stanza.Message)
	if d, g, ok := parsePrivilege(&msg); !ok || d != "example.test" || g.Roster != "both" {
		t.Errorf("privilege message lost: %+v", msg)
	}
	c := NewConn(Config{Domain: "roster.example.test"}, discard)
	l := &recordingListener{}
	c.SetPresenceListener(l)
	c.handlePresence(nil, pkts[2])
	c.handlePresence(nil, pkts[3])
	if strings.Join(l.got, ";") != "unavailable u@example.test/r;available v@example.test/r" {
		t.Errorf("presences = %v", l.got)
	}
}
