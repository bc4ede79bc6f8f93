// Command rosterclient logs in to an XMPP server as a user, fetches the
// roster the way any client does, and prints it. Without -watch it only
// reads the roster: it sends no presence, so nobody sees it online and the
// server does not count it as a new session that comes online.
//
// With -watch it then comes online (initial presence, after the roster
// fetch as RFC 6121 recommends) and prints every roster push and every
// presence it receives until interrupted (Ctrl-C or SIGTERM), e.g.
//
//	push: bob@example.test        name="Bob"     groups=[Friends] subscription=both
//	presence: bob@example.test/phone available
//	presence: bob@example.test/phone away ("back soon")
//	presence: bob@example.test/phone unavailable
//
// It speaks plain TCP and is meant for loopback demos only.
package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/roster"
	"mellium.im/xmpp/stanza"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:15222", "client (c2s) address of the XMPP server")
	user := flag.String("jid", "alice@example.test", "the user's JID")
	pass := flag.String("password", "demo", "the user's password")
	watch := flag.Bool("watch", false, "come online and print roster pushes and presence until Ctrl-C")
	flag.Parse()
	if err := run(*addr, *user, *pass, *watch); err != nil {
		fmt.Fprintln(os.Stderr, "rosterclient:", err)
		os.Exit(1)
	}
}

// printer prints lines, holding those that arrive before start back until
// then (so that the roster comes first).
type printer struct {
	mu      sync.Mutex
	started bool
	held    []string
}

func (p *printer) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.held = append(p.held, s)
		return
	}
	fmt.Println(s)
}

func (p *printer) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = true
	for _, s := range p.held {
		fmt.Println(s)
	}
	p.held = nil
}

// presence is what rosterclient shows of a presence stanza.
type presence struct {
	From   string `xml:"from,attr"`
	Type   string `xml:"type,attr"`
	Show   string `xml:"show"`
	Status string `xml:"status"`
}

func (p presence) String() string {
	what := p.Type
	switch {
	case what == "" && p.Show != "":
		what = p.Show
	case what == "":
		what = "available"
	}
	if p.Status != "" {
		what += fmt.Sprintf(" (%q)", p.Status)
	}
	return fmt.Sprintf("presence: %s %s", p.From, what)
}

func run(addr, user, pass string, watch bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	j, err := jid.Parse(user)
	if err != nil {
		return fmt.Errorf("jid: %w", err)
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dialCtx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	cfg := xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.SASL("", pass, sasl.ScramSha1, sasl.Plain), xmpp.BindResource()}}
	// Secure: plain TCP to a loopback server, trusted so that SASL proceeds.
	session, err := xmpp.NewSession(dialCtx, j.Domain(), j, conn, xmpp.Secure,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig { return cfg }))
	if err != nil {
		return fmt.Errorf("log in as %s: %w", j, err)
	}
	defer session.Close()

	out := &printer{}
	pushes := roster.Handler{Push: func(_ string, it roster.Item) error {
		out.println("push: " + formatItem(it))
		return nil
	}}
	m := mux.New(stanza.NSClient, roster.Handle(pushes))
	self := session.LocalAddr().String()
	// Presence is printed whole here, before mux (which would call a
	// presence handler once per child element).
	h := xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "presence" {
			return m.HandleXMPP(r, start)
		}
		var p presence
		if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&p); err != nil {
			return err
		}
		if p.From != self { // not the echo of its own presence
			out.println(p.String())
		}
		return nil
	})
	served := make(chan error, 1)
	go func() { served <- session.Serve(h) }()

	iter := roster.Fetch(dialCtx, session)
	var items []roster.Item
	for iter.Next() {
		items = append(items, iter.Item())
	}
	err = errors.Join(iter.Err(), iter.Close())
	if err != nil {
		return fmt.Errorf("fetch roster: %w", err)
	}
	sort.Slice(items, func(a, b int) bool { return items[a].JID.String() < items[b].JID.String() })
	fmt.Printf("roster of %s as its client sees it (%d items):\n", j, len(items))
	for _, it := range items {
		fmt.Println("  " + formatItem(it))
	}
	if !watch {
		return nil
	}
	fmt.Printf("online as %s; watching for roster pushes and presence\n", self)
	out.start()
	if err := session.Send(dialCtx, stanza.Presence{}.Wrap(nil)); err != nil {
		return fmt.Errorf("send presence: %w", err)
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	return nil
}

func formatItem(it roster.Item) string {
	sub := it.Subscription
	if sub == "" {
		sub = "none"
	}
	return fmt.Sprintf("%-24s name=%-8q groups=[%s] subscription=%s", it.JID, it.Name, strings.Join(it.Group, ", "), sub)
}
