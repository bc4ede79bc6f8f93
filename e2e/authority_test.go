//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/roster"
	"mellium.im/xmpp/stanza"

	"roster-sidecar/e2e/harness"
)

// The ejabberd account roster-sidecar authenticates as in API mode; the
// api_permissions rule of deploy/ejabberd/ejabberd.yml allows it the three
// roster commands. The tests also use it to change rosters behind the
// sidecar's back.
const (
	apiAccount  = "roster-sidecar"
	apiPassword = "e2e-api-password"
)

var apiAccounts sync.Map // *Server -> struct{}: account registered

// ensureAPIAccount registers the API account on an ejabberd server once.
func ensureAPIAccount(t testing.TB, srv *harness.Server) {
	t.Helper()
	if _, done := apiAccounts.Load(srv); done {
		return
	}
	srv.CreateUsersWithPassword(t, apiPassword, apiAccount)
	apiAccounts.Store(srv, struct{}{})
}

// apiCall runs an ejabberd API command as the API account and returns the
// answer body; a status other than 200 fails the test.
func apiCall(t testing.TB, srv *harness.Server, command string, args any) string {
	t.Helper()
	ensureAPIAccount(t, srv)
	body, _ := json.Marshal(args)
	req, err := http.NewRequest(http.MethodPost, srv.APIURL+command, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(apiAccount+"@"+srv.Domain, apiPassword)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("ejabberd API %s: %v", command, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ejabberd API %s %s: %s: %s", command, body, resp.Status, out)
	}
	return string(out)
}

// injectRoster changes user's roster behind the sidecar's back, as an admin
// tool (or a change the server lets through) would: it sets the item for
// c.JID, or removes it when c.Subscription is "remove"; an empty
// subscription is "both". On ejabberd it goes through the HTTP API, on
// Prosody through its admin shell, inside the server (online clients get a
// push either way).
func injectRoster(t testing.TB, srv *harness.Server, user string, c harness.Contact) {
	t.Helper()
	sub := c.Subscription
	if sub == "" {
		sub = "both"
	}
	contact := jid.MustParse(c.JID)
	switch srv.Kind {
	case "ejabberd":
		if sub == "remove" {
			apiCall(t, srv, "delete_rosteritem", map[string]string{
				"localuser": user, "localhost": srv.Domain, "user": contact.Localpart(), "host": contact.Domainpart()})
			return
		}
		groups := c.Groups
		if groups == nil {
			groups = []string{}
		}
		apiCall(t, srv, "add_rosteritem", map[string]any{"localuser": user, "localhost": srv.Domain,
			"user": contact.Localpart(), "host": contact.Domainpart(), "nick": c.Name, "groups": groups, "subs": sub})
	case "prosody":
		item := "nil"
		if sub != "remove" {
			var groups []string
			for _, g := range c.Groups {
				groups = append(groups, "["+strconv.Quote(g)+"] = true")
			}
			name := "nil"
			if c.Name != "" {
				name = strconv.Quote(c.Name)
			}
			item = fmt.Sprintf("{ subscription = %q, name = %s, groups = { %s } }", sub, name, strings.Join(groups, ", "))
		}
		lua := fmt.Sprintf(`>local rm = require "%[5]score.rostermanager"; local r = rm.load_roster(%[1]q, %[2]q); `+
			`r[%[3]q] = %[4]s; assert(rm.save_roster(%[1]q, %[2]q, r)); rm.roster_push(%[1]q, %[2]q, %[3]q); return "injected"`,
			user, srv.Domain, contact.Bare().String(), item, srv.LuaPrefix)
		prosodyShell(t, srv, lua, "injected")
	default:
		t.Fatalf("no roster injection for %s", srv.Name)
	}
}

// prosodyShell runs one `prosodyctl shell` command against the running
// server (its admin socket) and checks that the output contains want.
func prosodyShell(t testing.TB, srv *harness.Server, command, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := srv.Prosodyctl(ctx, "shell", command).CombinedOutput()
	if err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("prosodyctl shell %q: %v: %s", command, err, out)
	}
}

// testClientRosterEditRefused: the backend owns the roster, so the server
// refuses a client's own roster add, change and removal (ejabberd: mod_roster
// access; Prosody: mod_firewall rules), and the roster stays as it was.
func testClientRosterEditRefused(t *testing.T, e *Env) {
	const user = "lock_ann"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{{JID: "kit@example.test", Name: "Kit", Groups: []string{"Friends"}}}
	populate(t, e, c, user, v1...)
	n := c.Pushes()
	for what, it := range map[string]roster.Item{
		"add":    {JID: jid.MustParse("intruder@example.test"), Name: "Intruder"},
		"change": {JID: jid.MustParse("kit@example.test"), Name: "Renamed", Group: []string{"Mine"}},
		"remove": {JID: jid.MustParse("kit@example.test"), Subscription: "remove"},
	} {
		if cond := c.SetRosterItem(t, it); cond != "not-allowed" {
			t.Errorf("%s on %s: the client's roster %s was answered %q, want not-allowed", user, e.Server.Name, what, or(cond, "success"))
		}
	}
	c.AssertRosterStays(t, n, v1, quiet)
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// testClientSubscriptionBlocked: a user's subscription stanzas (subscribe,
// subscribed, unsubscribe, unsubscribed) are answered with an error and
// change no roster. Prosody (mod_firewall) does not deliver them. ejabberd
// 24.12 (mod_roster access) answers the sender with forbidden and does not
// record the request on the sender's side, but still routes the stanza: a
// subscribe reaches the contact as a request, which the contact cannot
// accept either. The scenario checks exactly that, so the README stays true.
func testClientSubscriptionBlocked(t *testing.T, e *Env) {
	const a, b = "sub_bea", "sub_cal"
	e.Users(t, a, b)
	ca, cb := Login(t, e.Server, a), Login(t, e.Server, b)
	na, nb := ca.PresenceCount(), cb.PresenceCount()
	types := []stanza.PresenceType{stanza.SubscribePresence, stanza.SubscribedPresence, stanza.UnsubscribePresence, stanza.UnsubscribedPresence}
	for _, typ := range types {
		ca.SendPresence(t, cb.JID, typ)
	}
	deadline := time.Now().Add(pushWait)
	for len(ca.PresencesFrom(na, cb.JID, "error")) < len(types) && time.Now().Before(deadline) {
		time.Sleep(25 * time.Millisecond)
	}
	if got := ca.PresencesFrom(na, cb.JID, "error"); len(got) != len(types) {
		t.Errorf("%s: %d error answers to %d subscription stanzas: %v", e.Server.Name, len(got), len(types), ca.Presences(na))
	}
	time.Sleep(quiet)
	var delivered []string
	for _, p := range cb.Presences(nb) {
		if NormalizeJID(p.From) == ca.JID.String() && p.Type != "" && p.Type != "unavailable" {
			delivered = append(delivered, p.Type)
		}
	}
	t.Logf("%s: %s sent %v to %s; %s received %v from %s", e.Server.Name, a, types, b, b, delivered, a)
	switch e.Server.Kind {
	case "prosody":
		if len(delivered) != 0 {
			t.Errorf("%s delivered subscription stanzas: %v", e.Server.Name, delivered)
		}
	case "ejabberd":
		if strings.Join(delivered, ",") != "subscribe" {
			t.Errorf("ejabberd 24.12 was measured to deliver the subscribe (only); now it delivered %v: update the README", delivered)
		}
		// The contact's approval is refused as well, and changes nothing.
		nb = cb.PresenceCount()
		cb.SendPresence(t, ca.JID, stanza.SubscribedPresence)
		cb.WaitForPresence(t, nb, ca.JID, "error", pushWait)
	}
	time.Sleep(quiet)
	for _, c := range []*Client{ca, cb} {
		if items := c.FetchRoster(t); len(items) != 0 {
			t.Errorf("%s on %s: subscription stanzas changed the roster: %s", c.JID, e.Server.Name, formatItems(items))
		}
	}
}

// testOutsideChangesReverted: whatever changes a roster behind the
// sidecar's back (an admin tool, a change the server lets through) is
// reverted by the next sync: replace semantics, an added item is removed,
// a changed one restored, a removed one put back.
func testOutsideChangesReverted(t *testing.T, e *Env) {
	const user = "rev_dan"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{
		{JID: "ann@example.test", Name: "Ann", Groups: []string{"G"}},
		{JID: "ben@example.test", Name: "Ben"},
	}
	populate(t, e, c, user, v1...)
	injectRoster(t, e.Server, user, harness.Contact{JID: "stray@example.test", Name: "Stray"})
	injectRoster(t, e.Server, user, harness.Contact{JID: "ann@example.test", Name: "Not Ann", Groups: []string{"Other"}})
	injectRoster(t, e.Server, user, harness.Contact{JID: "ben@example.test", Subscription: "remove"})
	changed := []harness.Contact{
		{JID: "ann@example.test", Name: "Not Ann", Groups: []string{"Other"}},
		{JID: "stray@example.test", Name: "Stray"},
	}
	c.WaitForRoster(t, changed, pushWait) // the changes took effect
	r := e.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 1, 1, 1)
	c.WaitForRoster(t, v1, pushWait)
}
