// Command rosterclient logs in to an XMPP server as a user, fetches the
// roster the way any client does, and prints it. With -watch it keeps the
// session open and prints every roster push until interrupted. It speaks
// plain TCP and is meant for loopback demos only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"mellium.im/sasl"
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
	watch := flag.Bool("watch", false, "stay online and print roster pushes until Ctrl-C")
	flag.Parse()
	if err := run(*addr, *user, *pass, *watch); err != nil {
		fmt.Fprintln(os.Stderr, "rosterclient:", err)
		os.Exit(1)
	}
}

func run(addr, user, pass string, watch bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
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

	pushes := roster.Handler{Push: func(_ string, it roster.Item) error {
		fmt.Printf("push: %s\n", formatItem(it))
		return nil
	}}
	served := make(chan error, 1)
	go func() { served <- session.Serve(mux.New(stanza.NSClient, roster.Handle(pushes))) }()
	if err := session.Send(dialCtx, stanza.Presence{}.Wrap(nil)); err != nil {
		return fmt.Errorf("send presence: %w", err)
	}
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
	if watch {
		fmt.Println("watching for roster pushes; Ctrl-C to stop")
		select {
		case <-ctx.Done():
		case err := <-served:
			return err
		}
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
