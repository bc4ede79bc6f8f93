package component

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is an in-process XEP-0114 server: it checks the handshake,
// sends a privilege message, and answers roster IQs from in-memory rosters.
// Tests script failures through its fields.
type fakeServer struct {
	t      *testing.T
	ln     net.Listener
	secret string
	domain string // the component JID it expects

	mu sync.Mutex
	// privilege is the raw message sent after the handshake ("" for none).
	privilege string
	// rosters maps a user's bare JID to its items by JID.
	rosters map[string]map[string]fakeItem
	// reply, when set, decides the answer to an IQ instead of the rosters:
	// it returns the raw reply ("" for none) and a delay.
	reply func(iq fakeIQ) (string, time.Duration)
	// inFlight and maxInFlight count SETs received but not yet answered.
	inFlight, maxInFlight int
	sets, gets            int
	conns                 []net.Conn
	accepted              int
	wg                    sync.WaitGroup
}

type fakeItem struct {
	Name, Subscription string
	Groups             []string
}

// fakeIQ is an IQ as the fake server received it.
type fakeIQ struct {
	XMLName xml.Name
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Query   *struct {
		XMLName xml.Name
		Items   []struct {
			JID          string   `xml:"jid,attr"`
			Name         string   `xml:"name,attr"`
			Subscription string   `xml:"subscription,attr"`
			Groups       []string `xml:"group"`
		} `xml:"item"`
	} `xml:"query"`
	Ping *struct{} `xml:"urn:xmpp:ping ping"`
}

const privilegeBoth = `<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/><perm access='message' type='outgoing'/><perm access='presence' type='managed_entity'/><perm access='iq'/></privilege></message>`

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, secret: "s3cret", domain: "roster.example.test", privilege: privilegeBoth, rosters: map[string]map[string]fakeItem{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) close() {
	s.ln.Close()
	s.dropAll()
	s.wg.Wait()
}

// dropAll closes every client connection, as a crashing server would.
func (s *fakeServer) dropAll() {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.accepted++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *fakeServer) serve(c net.Conn) {
	var wmu sync.Mutex
	write := func(str string) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = io.WriteString(c, str)
	}
	dec := xml.NewDecoder(c)
	if _, err := nextStart(dec); err != nil { // <stream:stream>
		return
	}
	write(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='roster.example.test' id='fake-stream-1'>`)
	var hs struct {
		XMLName xml.Name
		Value   string `xml:",chardata"`
	}
	start, err := nextStart(dec)
	if err != nil || dec.DecodeElement(&hs, &start) != nil {
		return
	}
	sum := sha1.Sum([]byte("fake-stream-1" + s.secret))
	if hs.Value != hex.EncodeToString(sum[:]) {
		write(`<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		return
	}
	write(`<handshake/>`)
	s.mu.Lock()
	priv := s.privilege
	s.mu.Unlock()
	if priv != "" {
		write(priv)
	}
	var replies sync.WaitGroup
	defer replies.Wait()
	for {
		start, err := nextStart(dec)
		if err != nil {
			return
		}
		if start.Name.Local != "iq" {
			_ = dec.Skip()
			continue
		}
		var iq fakeIQ
		if err := dec.DecodeElement(&iq, &start); err != nil {
			return
		}
		if iq.From != s.domain {
			s.t.Errorf("IQ %s without from=%s: from=%q", iq.ID, s.domain, iq.From)
		}
		reply, delay := s.answer(iq)
		replies.Add(1)
		go func() {
			defer replies.Done()
			time.Sleep(delay)
			s.mu.Lock()
			if iq.Type == "set" {
				s.inFlight--
			}
			s.mu.Unlock()
			if reply != "" {
				write(reply)
			}
		}()
	}
}

func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se, nil
		}
	}
}

// answer applies an IQ to the rosters and builds the reply.
func (s *fakeServer) answer(iq fakeIQ) (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if iq.Type == "set" {
		s.sets++
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
	} else {
		s.gets++
	}
	if s.reply != nil {
		reply := s.reply
		s.mu.Unlock()
		r, d := reply(iq)
		s.mu.Lock()
		return r, d
	}
	return s.answerRoster(iq)
}

// answerRoster is the default answer: rosters kept in memory. s.mu is held.
func (s *fakeServer) answerRoster(iq fakeIQ) (string, time.Duration) {
	result := fmt.Sprintf(`<iq type='result' id='%s' from='%s' to='%s'/>`, iq.ID, iq.To, iq.From)
	switch {
	case iq.Ping != nil:
		return result, 0
	case iq.Query == nil || iq.Query.XMLName.Space != "jabber:iq:roster":
		return fmt.Sprintf(`<iq type='error' id='%s' from='%s' to='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, iq.ID, iq.To, iq.From), 0
	case iq.Type == "get":
		return s.rosterResult(iq), 0
	}
	roster := s.rosters[iq.To]
	if roster == nil {
		roster = map[string]fakeItem{}
		s.rosters[iq.To] = roster
	}
	if len(iq.Query.Items) != 1 {
		s.t.Errorf("SET with %d items", len(iq.Query.Items))
	}
	for _, it := range iq.Query.Items {
		if it.Subscription == "remove" {
			delete(roster, it.JID)
			continue
		}
		roster[it.JID] = fakeItem{Name: it.Name, Subscription: it.Subscription, Groups: it.Groups}
	}
	return result, 0
}

func (s *fakeServer) rosterResult(iq fakeIQ) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<iq type='result' id='%s' from='%s' to='%s'><query xmlns='jabber:iq:roster'>`, iq.ID, iq.To, iq.From)
	for j, it := range s.rosters[iq.To] {
		fmt.Fprintf(&b, `<item jid='%s' name='%s' subscription='%s'>`, xmlEscape(j), xmlEscape(it.Name), it.Subscription)
		for _, g := range it.Groups {
			fmt.Fprintf(&b, `<group>%s</group>`, xmlEscape(g))
		}
		b.WriteString(`</item>`)
	}
	b.WriteString(`</query></iq>`)
	return b.String()
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// roster returns a copy of a user's roster as "jid|name|sub|g1,g2" lines.
func (s *fakeServer) roster(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for j, it := range s.rosters[user] {
		g := append([]string(nil), it.Groups...)
		sort.Strings(g)
		out = append(out, j+"|"+it.Name+"|"+it.Subscription+"|"+strings.Join(g, ","))
	}
	sort.Strings(out)
	return out
}

func (s *fakeServer) setRoster(user string, items map[string]fakeItem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rosters[user] = items
}

func (s *fakeServer) counts() (gets, sets, maxInFlight, accepted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets, s.sets, s.maxInFlight, s.accepted
}
