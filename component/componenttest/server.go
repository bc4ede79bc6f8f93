// Package componenttest provides an in-process XEP-0114 server for tests:
// it checks the handshake, sends a privilege message, and answers roster
// IQs from in-memory rosters, with hooks to script failures.
package componenttest

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Names the fake server expects and uses.
const (
	// Domain is the component JID the server accepts.
	Domain = "roster.example.test"
	// Secret is the component's shared secret.
	Secret = "s3cret"
	// UserDomain is the domain whose privileges are granted.
	UserDomain = "example.test"
)

// Server is an in-process XEP-0114 server. It checks the handshake, sends a
// privilege message, and answers roster IQs from in-memory rosters; every
// IQ must carry from=Domain and a SET exactly one item, else the test fails.
// It answers disco#info queries itself (neither counted nor passed to
// SetReply's function), and with SetHelper the server helper's requests
// (NSHelper) too.
type Server struct {
	t  testing.TB
	ln net.Listener

	mu sync.Mutex
	// privilege is the raw message sent after the handshake ("" for none).
	privilege string
	// atConnect are raw stanzas sent after the privilege message on every
	// connection, as Prosody announces the online sessions.
	atConnect []string
	// rosters maps a user's bare JID to its items by JID.
	rosters map[string]map[string]Item
	// handshakeError, when set, is the stream error condition sent instead
	// of accepting a correct handshake.
	handshakeError string
	// ignoreSubscription stores every item with subscription none, as
	// ejabberd does.
	ignoreSubscription bool
	// helper makes the server advertise and serve NSHelper.
	helper bool
	// dropDisco leaves disco#info queries unanswered.
	dropDisco bool
	// versioning answers roster GETs with versions (XEP-0237), as ejabberd
	// with mod_roster versioning; versionedGets counts the GETs answered
	// "unchanged".
	versioning    bool
	versionedGets int
	// reply, when set, decides the answer to an IQ instead of the rosters:
	// it returns the raw reply ("" for none) and a delay.
	reply func(iq IQ) (string, time.Duration)
	// inFlight and maxInFlight count SETs received but not yet answered.
	inFlight, maxInFlight int
	sets, gets, batches   int
	conns                 []net.Conn
	writers               map[net.Conn]func(string)
	accepted              int
	answers               []IQ
	wg                    sync.WaitGroup
}

// Item is a roster item as the server stores it.
type Item struct {
	Name, Subscription string
	Groups             []string
}

// IQ is an IQ as the server received it.
type IQ struct {
	XMLName xml.Name
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Query   *struct {
		XMLName xml.Name
		Ver     *string `xml:"ver,attr"`
		Items   []struct {
			JID          string   `xml:"jid,attr"`
			Name         string   `xml:"name,attr"`
			Subscription string   `xml:"subscription,attr"`
			Groups       []string `xml:"group"`
		} `xml:"item"`
	} `xml:"query"`
	Ping *struct{} `xml:"urn:xmpp:ping ping"`
	// Apply is a request of the server helper.
	Apply *struct {
		JID   string `xml:"jid,attr"`
		Items []struct {
			JID          string   `xml:"jid,attr"`
			Name         string   `xml:"name,attr"`
			Subscription string   `xml:"subscription,attr"`
			Groups       []string `xml:"group"`
		} `xml:"item"`
	} `xml:"urn:xmpp:roster-sidecar:0 apply"`
	// Error holds the conditions of an error the component sent.
	Error *struct {
		Conditions []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"error"`
}

// Answers returns the results and errors the component sent so far, in
// answer to requests (SendToAll) addressed to it.
func (s *Server) Answers() []IQ {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.answers)
}

// PrivilegeBoth grants roster both, message outgoing and presence
// managed_entity for UserDomain, as ejabberd 24.12 words it.
const PrivilegeBoth = `<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/><perm access='message' type='outgoing'/><perm access='presence' type='managed_entity'/><perm access='iq'/></privilege></message>`

func NewServer(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, ln: ln, privilege: PrivilegeBoth, rosters: map[string]map[string]Item{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

// Addr is the host:port to connect to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) close() {
	s.ln.Close()
	s.DropAll()
	s.wg.Wait()
}

// SetPrivilege sets the raw message sent after each handshake; "" sends none.
func (s *Server) SetPrivilege(raw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.privilege = raw
}

// SetReply makes f decide every answer: it returns the raw reply ("" for
// none) and how long to wait before sending it. nil restores the default
// answers from the in-memory rosters.
func (s *Server) SetReply(f func(iq IQ) (string, time.Duration)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

// RefuseHandshakes makes the server answer every handshake with a stream
// error of the given condition (e.g. "conflict", as Prosody does while it
// holds another connection for the component); "" accepts again.
func (s *Server) RefuseHandshakes(condition string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshakeError = condition
}

// NSHelper is the namespace of the server helper (component.NSHelper).
const NSHelper = "urn:xmpp:roster-sidecar:0"

// SetHelper makes the server advertise the server helper in its disco#info
// and apply its requests to the rosters, as deploy/prosody's
// mod_roster_sidecar does; it applies to connections made afterwards too.
func (s *Server) SetHelper(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.helper = on
}

// DropDisco makes the server leave disco#info queries unanswered, as
// ejabberd may for a component's IQs to a domain.
func (s *Server) DropDisco(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropDisco = on
}

// IgnoreSubscription makes the server store every item with subscription
// "none", whatever a SET asks for, as ejabberd does.
func (s *Server) IgnoreSubscription() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignoreSubscription = true
}

// Presence returns a presence stanza from the session from (a full JID) to
// the component, as a server forwards it under the presence privilege;
// typ is "" (available) or "unavailable".
func Presence(from, typ string) string {
	if typ == "" {
		return fmt.Sprintf(`<presence from='%s' to='%s'/>`, xmlEscape(from), Domain)
	}
	return fmt.Sprintf(`<presence from='%s' to='%s' type='%s'/>`, xmlEscape(from), Domain, xmlEscape(typ))
}

// SendPresence sends every connected component the presence of session
// from (a full JID); typ is "" (available) or "unavailable".
func (s *Server) SendPresence(from, typ string) {
	s.SendToAll(Presence(from, typ))
}

// AnnounceAtConnect sets raw stanzas (e.g. Presence results) sent after the
// privilege message on every new connection, as Prosody sends the presence
// of every online session to a component that has the presence privilege.
func (s *Server) AnnounceAtConnect(raw ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.atConnect = append([]string(nil), raw...)
}

// SendToAll writes raw XML to every connected component, e.g. a stream
// error or a presence.
func (s *Server) SendToAll(raw string) {
	s.mu.Lock()
	writers := make([]func(string), 0, len(s.writers))
	for _, w := range s.writers {
		writers = append(writers, w)
	}
	s.mu.Unlock()
	for _, w := range writers {
		w(raw)
	}
}

// DropAll closes every client connection, as a crashing server would.
func (s *Server) DropAll() {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

func (s *Server) accept() {
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

func (s *Server) serve(c net.Conn) {
	var wmu sync.Mutex
	write := func(str string) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = io.WriteString(c, str)
	}
	s.mu.Lock()
	if s.writers == nil {
		s.writers = map[net.Conn]func(string){}
	}
	s.writers[c] = write
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.writers, c)
		s.mu.Unlock()
	}()
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
	sum := sha1.Sum([]byte("fake-stream-1" + Secret))
	if hs.Value != hex.EncodeToString(sum[:]) {
		write(`<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		return
	}
	s.mu.Lock()
	priv, refuse, atConnect := s.privilege, s.handshakeError, s.atConnect
	s.mu.Unlock()
	if refuse != "" {
		write(`<stream:error><` + refuse + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		return
	}
	write(`<handshake/>`)
	if priv != "" {
		write(priv)
	}
	for _, raw := range atConnect {
		write(raw)
	}
	var replies sync.WaitGroup
	defer replies.Wait()
	for {
		start, err := nextStart(dec)
		if errors.Is(err, errStreamEnd) {
			replies.Wait()
			write(`</stream:stream>`)
			return
		}
		if err != nil {
			return
		}
		if start.Name.Local != "iq" {
			_ = dec.Skip()
			continue
		}
		var iq IQ
		if err := dec.DecodeElement(&iq, &start); err != nil {
			return
		}
		if iq.Type == "result" || iq.Type == "error" { // the component answers a request
			s.mu.Lock()
			s.answers = append(s.answers, iq)
			s.mu.Unlock()
			continue
		}
		if iq.From != Domain {
			s.t.Errorf("IQ %s without from=%s: from=%q", iq.ID, Domain, iq.From)
		}
		if iq.Type == "get" && iq.Query != nil && iq.Query.XMLName.Space == nsDiscoInfo {
			if answer := s.discoInfo(iq); answer != "" {
				write(answer)
			}
			continue
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

// errStreamEnd is returned by nextStart at the client's </stream:stream>.
var errStreamEnd = errors.New("stream closed by the client")

func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return tok, nil
		case xml.EndElement:
			if tok.Name.Local == "stream" {
				return xml.StartElement{}, errStreamEnd
			}
		}
	}
}

// answer applies an IQ to the rosters and builds the reply.
func (s *Server) answer(iq IQ) (string, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if iq.Type == "set" {
		s.sets++
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
		if iq.Apply != nil {
			s.batches++
		}
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
	return s.answerRoster(iq), 0
}

// AnswerRoster is the default answer to iq, from the in-memory rosters; a
// SetReply function may call it to add delays.
func (s *Server) AnswerRoster(iq IQ) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answerRoster(iq)
}

// answerRoster answers iq from the rosters. s.mu is held.
func (s *Server) answerRoster(iq IQ) string {
	result := fmt.Sprintf(`<iq type='result' id='%s' from='%s' to='%s'/>`, iq.ID, iq.To, iq.From)
	switch {
	case iq.Ping != nil:
		return result
	case iq.Apply != nil && s.helper && iq.Type == "set":
		return s.applyBatch(iq)
	case iq.Query == nil || iq.Query.XMLName.Space != "jabber:iq:roster":
		return fmt.Sprintf(`<iq type='error' id='%s' from='%s' to='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, iq.ID, iq.To, iq.From)
	case iq.Type == "get":
		return s.rosterResult(iq)
	}
	roster := s.rosters[iq.To]
	if roster == nil {
		roster = map[string]Item{}
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
		sub := it.Subscription
		if s.ignoreSubscription {
			sub = "none"
		}
		roster[it.JID] = Item{Name: it.Name, Subscription: sub, Groups: it.Groups}
	}
	return result
}

const nsDiscoInfo = "http://jabber.org/protocol/disco#info"

// discoInfo answers a disco#info query, with the helper's feature when
// SetHelper is on; "" for none (DropDisco).
func (s *Server) discoInfo(iq IQ) string {
	s.mu.Lock()
	helper, drop := s.helper, s.dropDisco
	s.mu.Unlock()
	if drop {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<iq type='result' id='%s' from='%s' to='%s'><query xmlns='%s'><identity category='server' type='im'/><feature var='%s'/>`,
		iq.ID, iq.To, iq.From, nsDiscoInfo, nsDiscoInfo)
	if helper {
		fmt.Fprintf(&b, `<feature var='%s'/>`, NSHelper)
	}
	b.WriteString(`</query></iq>`)
	return b.String()
}

// applyBatch applies a request of the server helper to the rosters, as
// mod_roster_sidecar does: a removal of a missing item fails with
// item-not-found, the rest is applied. s.mu is held.
func (s *Server) applyBatch(iq IQ) string {
	roster := s.rosters[iq.Apply.JID]
	if roster == nil {
		roster = map[string]Item{}
		s.rosters[iq.Apply.JID] = roster
	}
	var failed strings.Builder
	for _, it := range iq.Apply.Items {
		if it.Subscription == "remove" {
			if _, ok := roster[it.JID]; !ok {
				fmt.Fprintf(&failed, `<failed jid='%s' condition='item-not-found'/>`, xmlEscape(it.JID))
			}
			delete(roster, it.JID)
			continue
		}
		sub := it.Subscription
		if s.ignoreSubscription {
			sub = "none"
		}
		roster[it.JID] = Item{Name: it.Name, Subscription: sub, Groups: it.Groups}
	}
	return fmt.Sprintf(`<iq type='result' id='%s' from='%s' to='%s'><applied xmlns='%s'>%s</applied></iq>`, iq.ID, iq.To, iq.From, NSHelper, failed.String())
}

func (s *Server) rosterResult(iq IQ) string {
	var b strings.Builder
	if s.versioning && iq.Query.Ver != nil {
		// As ejabberd: the version is a hash of the roster, the whole
		// roster is sent with it, or nothing when ver is that version.
		ver := s.rosterVersion(iq.To)
		if *iq.Query.Ver == ver {
			s.versionedGets++
			return fmt.Sprintf(`<iq type='result' id='%s' from='%s' to='%s'/>`, iq.ID, iq.To, iq.From)
		}
		fmt.Fprintf(&b, `<iq type='result' id='%s' from='%s' to='%s'><query xmlns='jabber:iq:roster' ver='%s'>`, iq.ID, iq.To, iq.From, ver)
	} else {
		fmt.Fprintf(&b, `<iq type='result' id='%s' from='%s' to='%s'><query xmlns='jabber:iq:roster'>`, iq.ID, iq.To, iq.From)
	}
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

// Versioning makes the server honour roster versioning (XEP-0237) as
// ejabberd does with mod_roster versioning: a GET with a ver attribute is
// answered with the roster and its version, a hash of its items, or with
// an empty result when ver is that version.
func (s *Server) Versioning() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versioning = true
}

// VersionedGets counts the roster GETs answered "unchanged" (Versioning).
func (s *Server) VersionedGets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versionedGets
}

// rosterVersion is the version of user's roster: a hash of its items.
// s.mu is held.
func (s *Server) rosterVersion(user string) string {
	lines := make([]string, 0, len(s.rosters[user]))
	for j, it := range s.rosters[user] {
		g := slices.Clone(it.Groups)
		sort.Strings(g)
		lines = append(lines, j+"|"+it.Name+"|"+it.Subscription+"|"+strings.Join(g, "\x00"))
	}
	sort.Strings(lines)
	sum := sha1.Sum([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Roster returns a user's roster (by bare JID) as sorted
// "jid|name|subscription|group1,group2" lines.
func (s *Server) Roster(user string) []string {
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

// SetRoster replaces a user's roster.
func (s *Server) SetRoster(user string, items map[string]Item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rosters[user] = items
}

// Counts are what the server has seen so far.
type Counts struct {
	// Gets and Sets count IQs of each type (disco#info queries aside);
	// Batches counts the helper's requests among the Sets.
	Gets, Sets, Batches int
	// MaxInFlight is the most SETs received and not yet answered at once.
	MaxInFlight int
	// Accepted counts TCP connections.
	Accepted int
}

// Counts returns what the server has seen so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Counts{Gets: s.gets, Sets: s.sets, Batches: s.batches, MaxInFlight: s.maxInFlight, Accepted: s.accepted}
}

// WaitFor polls cond until it holds, failing the test after 5 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
