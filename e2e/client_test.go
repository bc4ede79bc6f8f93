//go:build e2e

package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/roster"
	"mellium.im/xmpp/stanza"

	"roster-sidecar/e2e/harness"
)

// Client is a real XMPP client (c2s over plain TCP on loopback) logged in
// as one user. It keeps a view of the user's roster: the roster fetched at
// login with every roster push applied since, each push answered with a
// result as RFC 6121 requires.
type Client struct {
	// JID is the user's bare JID.
	JID    jid.JID
	server *harness.Server
	t      testing.TB

	session *xmpp.Session
	served  chan error

	mu        sync.Mutex
	view      map[string]roster.Item // by normalised bare JID
	pushes    []roster.Item
	pushAt    []time.Time // when each push arrived
	presences []PresenceEvent
	// iqReplies counts the IQ results and errors that answered no
	// SendIQ (see Send), by sender and type.
	iqReplies map[iqKey]int
	closed    bool
}

// iqKey is the sender and type of an IQ reply.
type iqKey struct{ from, typ string }

// PresenceEvent is a presence stanza the client received.
type PresenceEvent struct {
	// From is the sender as written (usually a full JID).
	From string
	// Type is the presence type; "" is available.
	Type string
	// At is when it arrived.
	At time.Time
}

// String describes the event for test logs.
func (p PresenceEvent) String() string {
	typ := p.Type
	if typ == "" {
		typ = "available"
	}
	return fmt.Sprintf("%s from %s", typ, p.From)
}

// Login connects as user (a localpart on srv's domain, or a bare JID on
// another of srv.Domains) with userPassword, sends initial presence, fetches
// the roster and starts collecting roster pushes. The connection is closed
// at the end of the test.
func Login(t testing.TB, srv *harness.Server, user string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()

	local, domain, ok := strings.Cut(user, "@")
	if !ok {
		domain = srv.Domain
	}
	j, err := jid.New(local, domain, "")
	if err != nil {
		t.Fatalf("JID for %q: %v", user, err)
	}
	c := &Client{JID: j, server: srv, t: t, view: map[string]roster.Item{}, iqReplies: map[iqKey]int{}, served: make(chan error, 1)}

	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", srv.C2SAddr)
	if err != nil {
		t.Fatalf("%s: dialling %s: %v", user, srv.C2SAddr, err)
	}
	cfg := xmpp.StreamConfig{
		Features: []xmpp.StreamFeature{
			// SASL needs a secure stream in mellium; the session is
			// declared Secure below since it only ever runs on loopback.
			// Both servers offer SCRAM-SHA-1 without TLS; PLAIN is the
			// fallback (Prosody needs allow_unencrypted_plain_auth).
			xmpp.SASL("", harness.UserPassword, sasl.ScramSha1, sasl.Plain),
			xmpp.BindResource(),
		},
	}
	if harness.Debug() {
		cfg.TeeIn = &clientLog{c: c, prefix: "RECV"}
		cfg.TeeOut = &clientLog{c: c, prefix: "SENT"}
	}
	negotiator := xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig { return cfg })
	// xmpp.Secure: a plain TCP connection to a loopback server, trusted as
	// if it were TLS so that mellium agrees to authenticate over it.
	c.session, err = xmpp.NewSession(ctx, j.Domain(), j, conn, xmpp.Secure, negotiator)
	if err != nil {
		_ = conn.Close()
		t.Fatalf("%s: logging in to %s at %s: %v", user, srv.Name, srv.C2SAddr, err)
	}
	t.Cleanup(c.Close)

	m := mux.New(stanza.NSClient, roster.Handle(roster.Handler{Push: c.push}))
	// Every presence is recorded once, from its start element, before mux
	// (which calls presence handlers once per child element) sees it; so
	// is every IQ reply that no SendIQ waits for.
	h := xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		switch start.Name.Local {
		case "presence":
			c.recordPresence(start)
		case "iq":
			c.recordIQ(start)
		}
		return m.HandleXMPP(r, start)
	})
	go func() { c.served <- c.session.Serve(h) }()

	if err := c.session.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatalf("%s: sending initial presence: %v", user, err)
	}
	items, err := c.fetch(ctx, true)
	if err != nil {
		t.Fatalf("%s: fetching the roster: %v", user, err)
	}
	t.Logf("%s logged in to %s in %v, roster has %d items", j, srv.Name, time.Since(start).Round(time.Millisecond), len(items))
	return c
}

// Close ends the session. It is registered as a test cleanup by Login.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	_ = c.session.Close()
	_ = c.session.Conn().Close()
	select {
	case <-c.served:
	case <-time.After(5 * time.Second):
	}
}

// push applies a roster push to the view; returning nil makes mux answer
// it with an empty result.
func (c *Client) push(_ string, item roster.Item) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushes = append(c.pushes, item)
	c.pushAt = append(c.pushAt, time.Now())
	key := item.JID.Bare().String()
	if item.Subscription == "remove" {
		delete(c.view, key)
	} else {
		c.view[key] = item
	}
	return nil
}

func (c *Client) recordPresence(start *xml.StartElement) {
	ev := PresenceEvent{At: time.Now()}
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "from":
			ev.From = a.Value
		case "type":
			ev.Type = a.Value
		}
	}
	if harness.Debug() {
		c.t.Logf("%s: presence %s", c.JID, ev)
	}
	c.mu.Lock()
	c.presences = append(c.presences, ev)
	c.mu.Unlock()
}

func (c *Client) recordIQ(start *xml.StartElement) {
	var k iqKey
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "from":
			k.from = a.Value
		case "type":
			k.typ = a.Value
		}
	}
	if k.typ != string(stanza.ResultIQ) && k.typ != string(stanza.ErrorIQ) {
		return
	}
	c.mu.Lock()
	c.iqReplies[k]++
	c.mu.Unlock()
}

// IQReplies returns how many IQ results and errors from from arrived that
// no SendIQ waited for: the answers to IQs sent with Send.
func (c *Client) IQReplies(from string) (results, errors int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.iqReplies[iqKey{from, string(stanza.ResultIQ)}], c.iqReplies[iqKey{from, string(stanza.ErrorIQ)}]
}

// Send sends one stanza written as XML, as it is: raw is parsed into
// tokens (the stanza itself may be in no namespace: the session puts it in
// jabber:client, and adds an id if it has none).
func (c *Client) Send(ctx context.Context, raw string) error {
	return c.session.Send(ctx, xml.NewDecoder(strings.NewReader(raw)))
}

// Ask sends the IQ get or set written as XML in raw and returns the reply,
// re-encoded as XML; an error when none came before ctx ended.
func (c *Client) Ask(ctx context.Context, raw string) (string, error) {
	resp, err := c.session.SendIQ(ctx, xml.NewDecoder(strings.NewReader(raw)))
	if err != nil {
		return "", err
	}
	defer resp.Close()
	var b strings.Builder
	enc := xml.NewEncoder(&b)
	for {
		// A token may come with io.EOF.
		tok, err := resp.Token()
		if start, ok := tok.(xml.StartElement); ok {
			// The encoder writes the namespace of each name itself.
			start.Attr = slices.DeleteFunc(slices.Clone(start.Attr), func(a xml.Attr) bool {
				return a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns"
			})
			tok = start
		}
		if tok != nil {
			if err := enc.EncodeToken(tok); err != nil {
				return b.String(), err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return b.String(), err
		}
	}
	if err := enc.Flush(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Presences returns the presence stanzas received after the first n.
func (c *Client) Presences(n int) []PresenceEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n >= len(c.presences) {
		return nil
	}
	return slices.Clone(c.presences[n:])
}

// PresenceCount returns how many presence stanzas the client received.
func (c *Client) PresenceCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.presences)
}

// PresencesFrom returns the presences received after the first n whose
// sender's bare JID is from and whose type is typ ("" for available).
func (c *Client) PresencesFrom(n int, from jid.JID, typ string) []PresenceEvent {
	var out []PresenceEvent
	for _, p := range c.Presences(n) {
		if NormalizeJID(p.From) == from.Bare().String() && p.Type == typ {
			out = append(out, p)
		}
	}
	return out
}

// WaitForPresence waits until, after the first n presences, one of type
// typ ("" for available) arrives from a resource of from, and returns it.
func (c *Client) WaitForPresence(t testing.TB, n int, from jid.JID, typ string, timeout time.Duration) PresenceEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := c.PresencesFrom(n, from, typ); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			want := typ
			if want == "" {
				want = "available"
			}
			t.Fatalf("%s on %s: no %s presence from %s within %v; presences received: %v",
				c.JID, c.server.Name, want, from, timeout, c.Presences(n))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// SendPresence sends a presence of type typ ("" for available) to to (the
// zero JID: a broadcast).
func (c *Client) SendPresence(t testing.TB, to jid.JID, typ stanza.PresenceType) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.session.Send(ctx, stanza.Presence{To: to, Type: typ}.Wrap(nil)); err != nil {
		t.Fatalf("%s: sending %q presence to %s: %v", c.JID, typ, to, err)
	}
}

// SetRosterItem asks the server to add or change (or, with subscription
// "remove", delete) an item of the client's own roster, as a user would.
// It returns "" when the server accepted it, else the error condition.
func (c *Client) SetRosterItem(t testing.TB, item roster.Item) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iq := roster.IQ{IQ: stanza.IQ{Type: stanza.SetIQ}}
	iq.Query.Item = []roster.Item{item}
	resp, err := c.session.SendIQ(ctx, iq.TokenReader())
	if err != nil {
		t.Fatalf("%s: roster set of %s: %v", c.JID, item.JID, err)
	}
	defer resp.Close()
	var reply struct {
		Type  string `xml:"type,attr"`
		Error *struct {
			Conditions []struct {
				XMLName xml.Name
			} `xml:",any"`
		} `xml:"error"`
	}
	if err := xml.NewTokenDecoder(resp).Decode(&reply); err != nil {
		t.Fatalf("%s: reading the roster set reply: %v", c.JID, err)
	}
	if reply.Type != string(stanza.ErrorIQ) {
		return ""
	}
	cond := "undefined-condition"
	if reply.Error != nil {
		for _, e := range reply.Error.Conditions {
			if e.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && e.XMLName.Local != "text" {
				cond = e.XMLName.Local
			}
		}
	}
	return cond
}

// fetch requests the roster. With replace, the result becomes the view;
// it is installed before the iterator is closed, that is before mux can
// handle any push that followed the result on the stream.
func (c *Client) fetch(ctx context.Context, replace bool) ([]roster.Item, error) {
	iter := roster.Fetch(ctx, c.session)
	defer iter.Close()
	var items []roster.Item
	for iter.Next() {
		items = append(items, iter.Item())
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	if replace {
		c.mu.Lock()
		c.view = make(map[string]roster.Item, len(items))
		for _, it := range items {
			c.view[it.JID.Bare().String()] = it
		}
		c.mu.Unlock()
	}
	return items, nil
}

// FetchRoster requests the user's roster from the server now.
func (c *Client) FetchRoster(t testing.TB) []roster.Item {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	items, err := c.fetch(ctx, false)
	if err != nil {
		t.Fatalf("%s: fetching the roster: %v", c.JID, err)
	}
	return items
}

// View returns the client's current view of its roster.
func (c *Client) View() []roster.Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]roster.Item, 0, len(c.view))
	for _, it := range c.view {
		out = append(out, it)
	}
	return out
}

// Pushes returns how many roster pushes the client received.
func (c *Client) Pushes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pushes)
}

// PushesSince returns the pushes received after the first n.
func (c *Client) PushesSince(n int) []roster.Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n >= len(c.pushes) {
		return nil
	}
	return slices.Clone(c.pushes[n:])
}

// PushedAt returns when the first roster push after the first n that adds
// or changes the item of contact (a removal does not count) arrived, and
// false when none did.
func (c *Client) PushedAt(n int, contact jid.JID) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := n; i < len(c.pushes); i++ {
		if it := c.pushes[i]; it.Subscription != "remove" && it.JID.Bare().Equal(contact.Bare()) {
			return c.pushAt[i], true
		}
	}
	return time.Time{}, false
}

// WaitForRoster waits until the client's view (fetched roster plus applied
// pushes) equals want, then checks that a fresh fetch from the server
// equals want too. Items compare by normalised JID, name, group set and,
// only where the server honours it, subscription.
func (c *Client) WaitForRoster(t testing.TB, want []harness.Contact, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		diff := DiffRoster(want, c.View(), c.server.HonoursSubscription)
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: after %v the client's roster view differs from the backend's roster:\n%s\npushes received: %s",
				c.JID, c.server.Name, timeout, diff, formatItems(c.PushesSince(0)))
		}
		time.Sleep(25 * time.Millisecond)
	}
	if diff := DiffRoster(want, c.FetchRoster(t), c.server.HonoursSubscription); diff != "" {
		t.Fatalf("%s on %s: the pushes matched, but the roster fetched from the server differs:\n%s", c.JID, c.server.Name, diff)
	}
}

// AssertRosterStays checks that no roster push arrives for d after the
// first n pushes, and that the server's roster still equals want.
func (c *Client) AssertRosterStays(t testing.TB, n int, want []harness.Contact, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if extra := c.PushesSince(n); len(extra) > 0 {
		t.Errorf("%s on %s: unexpected roster pushes: %s", c.JID, c.server.Name, formatItems(extra))
	}
	if diff := DiffRoster(want, c.FetchRoster(t), c.server.HonoursSubscription); diff != "" {
		t.Errorf("%s on %s: the roster changed:\n%s", c.JID, c.server.Name, diff)
	}
}

// normItem is a roster item in comparable form.
type normItem struct {
	JID, Name, Groups, Subscription string
}

func (n normItem) String() string {
	s := fmt.Sprintf("%s name=%q groups=[%s]", n.JID, n.Name, n.Groups)
	if n.Subscription != "" {
		s += " subscription=" + n.Subscription
	}
	return s
}

func groupKey(groups []string) string {
	g := slices.Clone(groups)
	sort.Strings(g)
	return strings.Join(slices.Compact(g), ",")
}

// NormalizeJID returns the PRECIS-normalised bare form of s, or s itself
// when it does not parse.
func NormalizeJID(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return s
	}
	return j.Bare().String()
}

// DiffRoster compares expected contacts with roster items; it returns ""
// when they are equal and a line per difference otherwise.
func DiffRoster(want []harness.Contact, got []roster.Item, withSubscription bool) string {
	w := map[string]normItem{}
	for _, c := range want {
		n := normItem{JID: NormalizeJID(c.JID), Name: c.Name, Groups: groupKey(c.Groups)}
		if withSubscription {
			n.Subscription = c.Subscription
			if n.Subscription == "" {
				n.Subscription = "both"
			}
		}
		w[n.JID] = n
	}
	g := map[string]normItem{}
	for _, it := range got {
		n := normItem{JID: it.JID.Bare().String(), Name: it.Name, Groups: groupKey(it.Group)}
		if withSubscription {
			n.Subscription = it.Subscription
			if n.Subscription == "" {
				n.Subscription = "none"
			}
		}
		g[n.JID] = n
	}
	var lines []string
	for k, wi := range w {
		gi, ok := g[k]
		switch {
		case !ok:
			lines = append(lines, "  missing:    "+wi.String())
		case gi != wi:
			lines = append(lines, "  want:       "+wi.String()+"\n  got:        "+gi.String())
		}
	}
	for k, gi := range g {
		if _, ok := w[k]; !ok {
			lines = append(lines, "  unexpected: "+gi.String())
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func formatItems(items []roster.Item) string {
	if len(items) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "\n  %s name=%q groups=%q subscription=%s", it.JID, it.Name, it.Group, it.Subscription)
	}
	return b.String()
}

// clientLog copies the client's XML stream to the test log while the
// client is open (ROSTER_SIDECAR_E2E_DEBUG).
type clientLog struct {
	c      *Client
	prefix string
}

func (l *clientLog) Write(p []byte) (int, error) {
	l.c.mu.Lock()
	closed := l.c.closed
	l.c.mu.Unlock()
	if !closed {
		l.c.t.Logf("%s %s %s", l.c.JID, l.prefix, p)
	}
	return len(p), nil
}
