//go:build e2e

package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"roster-sidecar/e2e/harness"
)

// TestEjabberdStrangers: ejabberd 24.12 answers a client's subscription
// stanzas with forbidden (mod_roster's access rule, checked at the sender)
// and then routes them anyway, so a subscribe reaches the contact as a
// request (testClientSubscriptionBlocked). Do ejabberd's stock modules stop
// it? Each variant below is loaded into a running ejabberd by reloading its
// configuration from deploy/ejabberd/ejabberd.yml with the variant's lines
// appended to `modules` (ejabberdReload), and measured with real clients
// (strangerStanzas): a subscribe and a chat message from a stranger, a
// message between friends (subscription both, as API mode stores it), and a
// message between users whose items say "none" (as XEP-0356 mode stores
// them). Then, with the one variant that stops the subscribe loaded, the
// sidecar's API-mode scenarios run again. It means something on ejabberd
// only: TestEjabberdStrangers/ejabberd/<scenario>.
//
// What the scenarios assert is what was measured; docs/compatibility.md
// and the README's authority table say it.
func TestEjabberdStrangers(t *testing.T) {
	runPerServer(t, servers{only: []string{"ejabberd"}}, func(t *testing.T, e *Env) {
		srv := e.Server
		ensureAPIAccount(t, srv)
		api := *srv
		api.HonoursSubscription = true
		e.Server = &api
		e.StartSidecar(t, loginOptions(
			"ROSTER_SIDECAR_EJABBERD_API_URL="+srv.APIURL,
			"ROSTER_SIDECAR_EJABBERD_API_USER="+apiAccount+"@"+srv.Domain,
			"ROSTER_SIDECAR_EJABBERD_API_PASSWORD="+apiPassword))
		var scenarios []Scenario
		for _, v := range strangerVariants {
			scenarios = append(scenarios, Scenario{v.name, func(t *testing.T, e *Env) { testStrangerVariant(t, e, v) }})
		}
		// The sidecar's API-mode scenarios with the variant that stops
		// a stranger's subscribe loaded (strangerVariants leaves it so).
		scenarios = append(scenarios,
			Scenario{"captcha_loaded/friends_see_each_other_then_unfriend", testAPIFriendsPresence},
			Scenario{"captcha_loaded/pair_converges_in_any_order", testAPIPairConverges},
			Scenario{"captcha_loaded/client_unsubscribed_reverted", testAPIClientUnsubscribedReverted},
			Scenario{"captcha_loaded/login_refresh", testChangedWhileOffline},
			Scenario{"captcha_loaded/client_roster_edit_refused", testClientRosterEditRefused},
		)
		e.run(t, scenarios)
	})
}

// strangerVariant is one configuration measured, and what it was measured
// to do.
type strangerVariant struct {
	name string
	// config is appended to deploy/ejabberd/ejabberd.yml, whose last
	// section is `modules`: indented lines add modules, others are
	// top-level options.
	config string
	// privacyList, when set, is the default privacy list (XEP-0016) the
	// recipients' own clients set before the measurement.
	privacyList string
	// want is what strangerStanzas measured.
	want strangerOutcome
	// logged, when set, is what ejabberd logged meanwhile.
	logged string
}

// strangerOutcome says which of the measured stanzas reached their
// recipient, and the error conditions the stranger's client received
// for its subscribe (in order).
type strangerOutcome struct {
	SubscribeDelivered      bool
	SubscribeErrors         string
	StrangerMessage         bool
	FriendsMessage          bool
	NoneSubscriptionMessage bool
}

func (o strangerOutcome) String() string {
	yes := func(b bool) string {
		if b {
			return "delivered"
		}
		return "not delivered"
	}
	return fmt.Sprintf("stranger's subscribe %s (errors to the stranger: %s); stranger's message %s; message between friends (both) %s; message between items with subscription none %s",
		yes(o.SubscribeDelivered), or(o.SubscribeErrors, "none"), yes(o.StrangerMessage), yes(o.FriendsMessage), yes(o.NoneSubscriptionMessage))
}

// strangerVariants are measured in this order; the last one stays loaded
// for the scenarios after them.
var strangerVariants = []strangerVariant{
	{
		name: "without_module",
		want: strangerOutcome{SubscribeDelivered: true, SubscribeErrors: "forbidden", StrangerMessage: true, FriendsMessage: true, NoneSubscriptionMessage: true},
	},
	{
		// Local users are never strangers by default.
		name:   "block_strangers_defaults",
		config: "  mod_block_strangers: {}\n",
		want:   strangerOutcome{SubscribeDelivered: true, SubscribeErrors: "forbidden", StrangerMessage: true, FriendsMessage: true, NoneSubscriptionMessage: true},
	},
	{
		// Messages from whoever is not subscribed are dropped, local
		// users included; subscription requests are filtered only with
		// captcha.
		name:   "block_strangers_local_users",
		config: "  mod_block_strangers:\n    allow_local_users: false\n",
		want:   strangerOutcome{SubscribeDelivered: true, SubscribeErrors: "forbidden", FriendsMessage: true},
	},
	{
		// Without captcha_cmd the module's subscription filter crashes
		// and ejabberd goes on as if it were not there.
		name:   "block_strangers_captcha",
		config: "  mod_block_strangers:\n    allow_local_users: false\n    captcha: true\n",
		want:   strangerOutcome{SubscribeDelivered: true, SubscribeErrors: "forbidden", FriendsMessage: true},
		logged: "Hook roster_in_subscription crashed when running mod_block_strangers:filter_subscription/2",
	},
	{
		// The recipients' own privacy lists: subscription stanzas are
		// matched only by items for every kind of stanza (XEP-0016), so
		// the list that stops them stops messages too.
		name:        "privacy_list_deny_none",
		config:      "  mod_privacy: {}\n",
		privacyList: `<item type="subscription" value="none" action="deny" order="1"/>`,
		want:        strangerOutcome{SubscribeErrors: "forbidden", FriendsMessage: true},
	},
	{
		// A CAPTCHA command that always fails: the request is answered
		// with an error instead of a challenge, and not delivered.
		name:   "block_strangers_failing_captcha",
		config: "  mod_block_strangers:\n    allow_local_users: false\n    captcha: true\ncaptcha_cmd: /bin/false\n",
		want:   strangerOutcome{SubscribeErrors: "forbidden,internal-server-error", FriendsMessage: true},
	},
}

// testStrangerVariant loads v and measures it with users of its own.
func testStrangerVariant(t *testing.T, e *Env, v strangerVariant) {
	ejabberdReload(t, e.Server, v.config)
	mark := len(e.Server.Process.Output())
	p := strings.NewReplacer("without_module", "wm", "block_strangers_", "bs", "privacy_list_deny_none", "pl",
		"defaults", "d", "local_users", "l", "failing_captcha", "f", "captcha", "c").Replace(v.name)
	got := strangerStanzas(t, e, p, v.privacyList)
	t.Logf("%s: %s", v.name, got)
	if got != v.want {
		t.Errorf("%s: measured\n  %s\nwant (measured before)\n  %s\nupdate docs/compatibility.md and the README", v.name, got, v.want)
	}
	if v.logged != "" && !strings.Contains(e.Server.Process.Output()[mark:], v.logged) {
		t.Errorf("%s: ejabberd did not log %q (measured before): update docs/compatibility.md", v.name, v.logged)
	}
}

// strangerWait bounds the wait for stanzas that may be blocked.
const strangerWait = 3 * time.Second

// strangerStanzas measures one configuration with five new users: p_f1
// and p_f2 made friends by the sidecar (both), p_n1 and p_n2 given each
// other with subscription none, and the stranger p_s. With privacyList
// set, the clients of the recipients, p_f1 and p_n1, make it their default
// privacy list first.
func strangerStanzas(t *testing.T, e *Env, p, privacyList string) strangerOutcome {
	t.Helper()
	f1, f2, n1, n2, s := p+"_f1", p+"_f2", p+"_n1", p+"_n2", p+"_s"
	e.Users(t, f1, f2, n1, n2, s)
	jidOf := func(u string) string { return u + "@" + e.Server.Domain }
	e.Backend.SetRoster(f1, harness.Contact{JID: jidOf(f2), Name: "F2"})
	e.Backend.SetRoster(f2, harness.Contact{JID: jidOf(f1), Name: "F1"})
	e.Backend.SetRoster(n1, harness.Contact{JID: jidOf(n2), Name: "N2", Subscription: "none"})
	e.Backend.SetRoster(n2, harness.Contact{JID: jidOf(n1), Name: "N1", Subscription: "none"})
	e.Backend.SetRoster(s)
	e.Admin.RefreshOK(t, f1, f2, n1, n2, s)
	c := map[string]*stanzaClient{}
	for _, u := range []string{f1, f2, n1, n2, s} {
		c[u] = stanzaLogin(t, e.Server, u)
	}
	if privacyList != "" {
		for _, u := range []string{f1, n1} {
			c[u].ask(t, `<iq type="set"><query xmlns="jabber:iq:privacy"><list name="strangers">`+privacyList+`</list></query></iq>`)
			c[u].ask(t, `<iq type="set"><query xmlns="jabber:iq:privacy"><default name="strangers"/></query></iq>`)
		}
	}
	// Logins refresh the users too (sync.on_login): let those finish.
	e.Admin.RefreshOK(t, f1, f2, n1, n2, s)
	for _, u := range []string{f1, f2, n1, n2} {
		items := c[u].rosterSize(t)
		if items != 1 {
			t.Fatalf("%s has %d roster items, want 1", u, items)
		}
	}

	var out strangerOutcome
	marks := map[string]int{}
	for u, cl := range c {
		marks[u] = cl.count()
	}
	c[s].send(t, fmt.Sprintf(`<presence type="subscribe" to="%s"/>`, jidOf(f1)))
	c[s].send(t, fmt.Sprintf(`<message type="chat" to="%s"><body>hello from a stranger</body></message>`, jidOf(f1)))
	c[f2].send(t, fmt.Sprintf(`<message type="chat" to="%s"><body>hello from a friend</body></message>`, jidOf(f1)))
	c[n2].send(t, fmt.Sprintf(`<message type="chat" to="%s"><body>hello, none to none</body></message>`, jidOf(n1)))
	// Delivered stanzas arrive within milliseconds on loopback: wait up
	// to strangerWait for all four, then a quiet period.
	for deadline := time.Now().Add(strangerWait); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if len(c[f1].since(marks[f1], "presence", jidOf(s), "subscribe")) > 0 &&
			len(c[f1].since(marks[f1], "message", jidOf(s), "chat")) > 0 &&
			len(c[f1].since(marks[f1], "message", jidOf(f2), "chat")) > 0 &&
			len(c[n1].since(marks[n1], "message", jidOf(n2), "chat")) > 0 {
			break
		}
	}
	time.Sleep(quiet)
	out.SubscribeDelivered = len(c[f1].since(marks[f1], "presence", jidOf(s), "subscribe")) > 0
	out.StrangerMessage = len(c[f1].since(marks[f1], "message", jidOf(s), "chat")) > 0
	out.FriendsMessage = len(c[f1].since(marks[f1], "message", jidOf(f2), "chat")) > 0
	out.NoneSubscriptionMessage = len(c[n1].since(marks[n1], "message", jidOf(n2), "chat")) > 0
	var conds []string
	for _, st := range c[s].since(marks[s], "presence", jidOf(f1), "error") {
		conds = append(conds, st.Condition)
	}
	out.SubscribeErrors = strings.Join(conds, ",")
	for u, cl := range c {
		t.Logf("%s received: %v", u, cl.since(marks[u], "", "", ""))
	}
	// Whatever was delivered, no roster changed.
	for _, u := range []string{f1, s} {
		if n := c[u].rosterSize(t); n != map[string]int{f1: 1, s: 0}[u] {
			t.Errorf("%s's roster has %d items after the stranger's subscribe", u, n)
		}
	}
	return out
}

// ejabberdReload reloads the running ejabberd's configuration (as
// `ejabberdctl reload_config` does) from deploy/ejabberd/ejabberd.yml with
// config appended: the file's last section is `modules`, so indented lines
// add modules and unindented ones are top-level options. Modules added
// start, modules gone stop. The file is written to a temporary directory.
func ejabberdReload(t testing.TB, srv *harness.Server, config string) {
	t.Helper()
	deploy, err := os.ReadFile(harness.RepoFile(t, "deploy", "ejabberd", "ejabberd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(deploy), "\n"), "\n")
	last := ""
	for _, l := range lines {
		if l != "" && l[0] != ' ' && l[0] != '#' {
			last = l
		}
	}
	if last != "modules:" {
		t.Fatalf("the last section of deploy/ejabberd/ejabberd.yml is %q, not modules: ejabberdReload must change", last)
	}
	path := filepath.Join(harness.TempDir(t, "e2e-ejabberd-reload-"), "ejabberd.yml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"+config), 0o600); err != nil {
		t.Fatal(err)
	}
	out := ejabberdEval(t, srv, fmt.Sprintf(`os:putenv("EJABBERD_CONFIG_PATH", %q), ejabberd_config:reload()`, path))
	if out != "ok" {
		t.Fatalf("reloading ejabberd's configuration with\n%s: %s", config, out)
	}
	t.Logf("ejabberd reloaded from deploy/ejabberd/ejabberd.yml with\n%s", or(config, "  (nothing appended)\n"))
}

var evalNodes atomic.Int64

// ejabberdEval evaluates the Erlang expressions body on srv's running node
// (through a hidden Erlang node) and returns the value printed with ~p.
func ejabberdEval(t testing.TB, srv *harness.Server, body string) string {
	t.Helper()
	n := srv.Erlang
	if n == nil {
		t.Fatalf("%s has no Erlang node", srv.Name)
	}
	code := fmt.Sprintf(`N = list_to_atom(%q),
true = net_kernel:connect_node(N),
io:format("~p~n", [rpc:call(N, erlang, apply, [fun() -> %s end, []])]),
halt().`, n.Name, body)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("eval%d_%d_%d", os.Getpid(), n.DistPort, evalNodes.Add(1))
	cmd := exec.CommandContext(ctx, "erl", "-sname", name, "-setcookie", n.Cookie, "-hidden", "-noshell",
		"-erl_epmd_port", strconv.Itoa(n.DistPort), "-start_epmd", "false", "-dist_listen", "false", "-eval", code)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("erl on %s: %v\n%s", n.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// stanzaClient is a logged-in client that records every message, presence
// and IQ it receives (the suite's Client keeps rosters and presence only).
type stanzaClient struct {
	jid     jid.JID
	session *xmpp.Session

	mu  sync.Mutex
	got []recvStanza
}

// recvStanza is a stanza a stanzaClient received.
type recvStanza struct {
	Kind, Type, From string
	// Condition is the error's defined condition, for type error.
	Condition string
}

func (s recvStanza) String() string {
	return fmt.Sprintf("%s type=%q from %s%s", s.Kind, s.Type, s.From, map[bool]string{true: " (" + s.Condition + ")", false: ""}[s.Condition != ""])
}

// stanzaLogin logs user in (plain TCP on loopback, as Login) and sends
// initial presence.
func stanzaLogin(t *testing.T, srv *harness.Server, user string) *stanzaClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	j := jid.MustParse(user + "@" + srv.Domain)
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", srv.C2SAddr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.SASL("", harness.UserPassword, sasl.ScramSha1, sasl.Plain), xmpp.BindResource()}}
	session, err := xmpp.NewSession(ctx, j.Domain(), j, conn, xmpp.Secure,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig { return cfg }))
	if err != nil {
		_ = conn.Close()
		t.Fatalf("%s: logging in: %v", user, err)
	}
	c := &stanzaClient{jid: j, session: session}
	served := make(chan error, 1)
	go func() {
		served <- session.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			var st struct {
				Type  string `xml:"type,attr"`
				From  string `xml:"from,attr"`
				Error struct {
					Conditions []struct {
						XMLName xml.Name
					} `xml:",any"`
				} `xml:"error"`
			}
			if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&st); err != nil {
				return err
			}
			rs := recvStanza{Kind: start.Name.Local, Type: st.Type, From: st.From}
			for _, cond := range st.Error.Conditions {
				if cond.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && cond.XMLName.Local != "text" {
					rs.Condition = cond.XMLName.Local
				}
			}
			c.mu.Lock()
			c.got = append(c.got, rs)
			c.mu.Unlock()
			return nil
		}))
	}()
	t.Cleanup(func() {
		_ = session.Close()
		_ = session.Conn().Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
		}
	})
	c.send(t, `<presence/>`)
	return c
}

// send sends one stanza written as XML.
func (c *stanzaClient) send(t testing.TB, raw string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.session.Send(ctx, xml.NewDecoder(strings.NewReader(raw))); err != nil {
		t.Fatalf("%s: sending %s: %v", c.jid, raw, err)
	}
}

// ask sends an IQ and fails the test unless the answer is a result.
func (c *stanzaClient) ask(t testing.TB, raw string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.session.SendIQ(ctx, xml.NewDecoder(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("%s: %s: %v", c.jid, raw, err)
	}
	defer resp.Close()
	var b strings.Builder
	enc := xml.NewEncoder(&b)
	for {
		// As Client.Ask: a token may come with io.EOF, and the encoder
		// writes each name's namespace itself.
		tok, err := resp.Token()
		if start, ok := tok.(xml.StartElement); ok {
			start.Attr = slices.DeleteFunc(slices.Clone(start.Attr), func(a xml.Attr) bool {
				return a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns"
			})
			tok = start
		}
		if tok != nil {
			if err := enc.EncodeToken(tok); err != nil {
				t.Fatalf("%s: %s: reading the answer: %v", c.jid, raw, err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %s: reading the answer: %v", c.jid, raw, err)
		}
	}
	_ = enc.Flush()
	if !strings.Contains(b.String(), `type="result"`) {
		t.Fatalf("%s: %s: answered %s", c.jid, raw, b.String())
	}
	return b.String()
}

// rosterSize fetches the roster and returns its number of items.
func (c *stanzaClient) rosterSize(t testing.TB) int {
	t.Helper()
	return strings.Count(c.ask(t, `<iq type="get"><query xmlns="jabber:iq:roster"/></iq>`), "<item ")
}

func (c *stanzaClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// since returns the stanzas received after the first n of kind (any if
// ""), from the bare JID from (any if ""), of type typ (any if "").
func (c *stanzaClient) since(n int, kind, from, typ string) []recvStanza {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []recvStanza
	for _, s := range c.got[min(n, len(c.got)):] {
		if (kind == "" || s.Kind == kind) && (from == "" || NormalizeJID(s.From) == from) && (typ == "" || s.Type == typ) {
			out = append(out, s)
		}
	}
	return out
}
