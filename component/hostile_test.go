package component

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
)

// What any user of the server can make it send the component: none of it
// may drop the link, forge a grant or reach the library's decoder.
var hostileStanzas = []string{
	rsmResult,
	`<iq type='error' id='x' from='mallory@example.test/r'><error type='cancel' code='abc'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
	`<iq type='result' id='y' from='mallory@example.test/r'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items max_items='x'/></pubsub></iq>`,
	`<iq type='get' id='z' from='mallory@example.test/r' to='roster.example.test'><query xmlns='http://jabber.org/protocol/disco#info'><set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set></query></iq>`,
	`<iq type='set' id='w' from='mallory@example.test/r' to='roster.example.test'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'><count>x</count></set></query></iq>`,
	`<message from='mallory@example.test/r' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege></message>`,
	`<presence from='mallory@example.test/r'><priority>300</priority><x xmlns='urn:a'><priority>x</priority></x></presence>`,
}

func TestUserStanzasKeepTheLink(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetRoster("alice@example.test", map[string]componenttest.Item{"bob@example.test": {Name: "Bob", Subscription: "both"}})
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	for range 3 {
		for _, s := range hostileStanzas {
			srv.SendToAll(s)
		}
	}
	// Stanzas reach the library in order: once this one is handled, all
	// the others were.
	srv.SendToAll(`<message from='marker.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/></privilege></message>`)
	componenttest.WaitFor(t, "the marker", func() bool { _, ok := c.Privileges()["marker.test"]; return ok })
	items, err := c.Roster(context.Background(), "alice@example.test")
	if err != nil || len(items) != 1 || items[0].JID != "bob@example.test" {
		t.Fatalf("Roster after hostile stanzas = %v, %v", items, err)
	}
	if err := c.Ready("example.test"); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	if n := srv.Counts().Accepted; n != 1 {
		t.Fatalf("%d connections: the link was dropped", n)
	}
	if got := c.Privileges(); len(got) != 2 || got["example.test"].Roster != "both" {
		t.Fatalf("privileges = %v: a user's message was taken as a grant", got)
	}
}

// A reply to a pending request is taken only from the JID the request went
// to: a user who learnt the id cannot answer for another user's roster.
func TestForgedReplyIsIgnored(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetRoster("alice@example.test", map[string]componenttest.Item{"bob@example.test": {Name: "Bob", Subscription: "both"}})
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		srv.SendToAll(`<iq type='result' id='` + iq.ID + `' from='mallory@example.test/r'><query xmlns='jabber:iq:roster'><item jid='mallory@example.test' subscription='both'/></query></iq>`)
		srv.SendToAll(`<iq type='result' id='` + iq.ID + `' from='example.test.evil'/>`)
		return srv.AnswerRoster(iq), 200 * time.Millisecond
	})
	items, err := c.Roster(context.Background(), "alice@example.test")
	if err != nil || len(items) != 1 || items[0].JID != "bob@example.test" {
		t.Fatalf("Roster = %v, %v; want alice's real roster", items, err)
	}
}

func TestRequestsAreAnswered(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	srv.SendToAll(`<iq type='get' id='ping1' from='u@example.test/r' to='roster.example.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	srv.SendToAll(`<iq type='get' id='disco1' from='u@example.test/r' to='roster.example.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	srv.SendToAll(`<iq type='get' id='other1' from='u@example.test/r' to='roster.example.test'><query xmlns='jabber:iq:version'/></iq>`)
	srv.SendToAll(`<iq type='set' id='set1' from='u@example.test/r' to='roster.example.test'><query xmlns='jabber:iq:roster'/></iq>`)
	componenttest.WaitFor(t, "4 answers", func() bool { return len(srv.Answers()) == 4 })
	got := map[string]string{}
	for _, a := range srv.Answers() {
		desc := a.Type
		if a.Query != nil {
			desc += " " + a.Query.XMLName.Space
		}
		if a.Error != nil && len(a.Error.Conditions) > 0 {
			desc += " " + a.Error.Conditions[0].XMLName.Local
		}
		if a.From != "roster.example.test" || a.To != "u@example.test/r" {
			t.Errorf("answer %s from %q to %q", a.ID, a.From, a.To)
		}
		got[a.ID] = desc
	}
	want := map[string]string{
		"ping1":  "result",
		"disco1": "result http://jabber.org/protocol/disco#info",
		"other1": "error service-unavailable",
		"set1":   "error service-unavailable",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("answer to %s = %q, want %q", id, got[id], w)
		}
	}
}

// A flood of requests is answered at a bounded rate; the link stays.
func TestRequestFloodIsBounded(t *testing.T) {
	srv := componenttest.NewServer(t)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	for i := range 1000 {
		srv.SendToAll(fmt.Sprintf(`<iq type='get' id='f%d' from='u@example.test/r' to='roster.example.test'><ping xmlns='urn:xmpp:ping'/></iq>`, i))
	}
	if _, err := c.Roster(context.Background(), "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	componenttest.WaitFor(t, "the answers", func() bool { return len(srv.Answers()) >= requestBurst })
	time.Sleep(100 * time.Millisecond) // any answer still on its way
	if n := len(srv.Answers()); n > requestBurst+requestRate*5 {
		t.Fatalf("%d of 1000 requests answered, want about %d", n, requestBurst)
	}
}

// grantRecorder records the domains the observer is told about.
type grantRecorder struct {
	mu      sync.Mutex
	domains []string
}

func (g *grantRecorder) IQDone(string, string, time.Duration) {}
func (g *grantRecorder) LinkChanged(bool)                     {}
func (g *grantRecorder) Reconnecting()                        {}
func (g *grantRecorder) Granted(domain string, _ bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.domains = append(g.domains, domain)
}

// Privilege messages from other server domains (remote servers can send
// them) are kept for diagnostics only, for a bounded number of domains,
// and never reach the metrics.
func TestPrivilegesFromOtherDomainsAreBounded(t *testing.T) {
	srv := componenttest.NewServer(t)
	obs := &grantRecorder{}
	cfg := testConfig(srv.Addr())
	cfg.UserDomains = []string{componenttest.UserDomain}
	cfg.Observer = obs
	c, _ := startConn(t, cfg)
	waitReady(t, c)
	for i := range 500 {
		srv.SendToAll(fmt.Sprintf(`<message from='d%d.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege></message>`, i))
	}
	// The library handles messages in order: after the last one, the
	// bound holds and no more domains come.
	srv.SendToAll(`<message from='example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/></privilege></message>`)
	componenttest.WaitFor(t, "the last message", func() bool { return c.Privileges()["example.test"].Roster == "get" })
	if n := len(c.Privileges()); n != maxGrantDomains {
		t.Fatalf("%d domains kept, want %d", n, maxGrantDomains)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !slices.Equal(obs.domains, []string{"example.test", "example.test"}) {
		t.Fatalf("observer told about %v", obs.domains)
	}
}

func TestIQIDsAreUnpredictable(t *testing.T) {
	srv := componenttest.NewServer(t)
	var mu sync.Mutex
	var ids []string
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		mu.Lock()
		ids = append(ids, iq.ID)
		mu.Unlock()
		return srv.AnswerRoster(iq), 0
	})
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	for range 3 {
		if err := c.Put(context.Background(), "alice@example.test", roster.Item{JID: "b@example.test", Subscription: "both"}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		if len(id) < 20 {
			t.Fatalf("id %q is short", id)
		}
		if i > 0 && commonPrefix(id, ids[i-1]) > 4 {
			t.Fatalf("ids %q and %q share a prefix: guessable", ids[i-1], id)
		}
	}
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// A privileged SET answered with internal-server-error, as ejabberd 23.01
// to 23.04 answer every one, is explained once in the log.
func TestBrokenWritesAreExplainedOnce(t *testing.T) {
	srv := componenttest.NewServer(t)
	var logs strings.Builder
	var mu sync.Mutex
	c := NewConn(testConfig(srv.Addr()), slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
	run := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { run <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-run })
	waitReady(t, c)
	srv.SetReply(func(iq componenttest.IQ) (string, time.Duration) {
		return `<iq type='error' id='` + iq.ID + `' from='` + iq.To + `'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Module failed to handle the query</text></error></iq>`, 0
	})
	for range 3 {
		if err := c.Put(context.Background(), "alice@example.test", roster.Item{JID: "b@example.test"}); err == nil {
			t.Fatal("Put succeeded")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "ejabberd 23.01-23.04"); n != 1 {
		t.Fatalf("%d explanations in the log:\n%s", n, logs.String())
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
