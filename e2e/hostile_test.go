//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// Settings of the hostile-user suite (issue 11).
const (
	// readyPoll is how often /readyz is asked while a user attacks.
	readyPoll = 20 * time.Millisecond
	// settleWait bounds the wait for the component to answer a ping after
	// an attack (pings beyond its request rate go unanswered and are
	// repeated).
	settleWait = 60 * time.Second
	// askWait bounds the wait for one answer from the component.
	askWait = 10 * time.Second
	// Component request rate of the sidecar (component.requestRate and
	// requestBurst): answers beyond it are dropped.
	requestRate, requestBurst = 50, 100
	// The flood: pings and messages from one user, sent from
	// floodSessions sessions at once. Both servers throttle what they read
	// from each client connection: ejabberd's c2s_shaper (3,000 B/s after
	// a 20,000-byte burst, deploy/ejabberd/ejabberd.yml) and Prosody's
	// mod_limits, whose built-in c2s default (10 KiB/s, 2 s burst) the
	// overlay's `limits = {}` does not remove. One session would take
	// minutes for 4,000 stanzas (about 550 KB); eight, within ejabberd's
	// max_user_sessions of 10, take some 7 s on Prosody and 17 s on
	// ejabberd (measured): the client writes them in milliseconds, the
	// servers pass them on at that pace.
	floodPings, floodMessages, floodSessions = 2000, 2000, 8
	// maxRSS bounds the sidecar's peak resident memory (VmHWM) after the
	// flood. At rest it is about 25 MiB; the flood's 4,000 stanzas are
	// well under 1 MiB of XML, so even holding all of them several times
	// over, with the heap doubled by the garbage collector, stays far
	// below 100 MiB, while a leak of a goroutine or a buffer per stanza
	// (tens of KiB each) crosses it.
	maxRSS = 100 << 20
	// maxFloodLog bounds what the sidecar may log during the flood (debug
	// level): no line per stanza or sender (4,000 lines would be several
	// hundred KiB).
	maxFloodLog = 16 << 10
)

// TestHostile is the hostile-user suite of issue 11, on every server:
// TestHostile/<server>/<scenario>. Logged-in users send the component
// stanzas that once dropped its link, forged its state or could grow its
// memory, while /readyz is polled; web pages call the admin API; accounts
// named "." and ".." log in. The sidecar runs as by default: admin API on
// loopback without a token, which is the set-up web pages can reach.
func TestHostile(t *testing.T) {
	runPerServer(t, servers{}, withSidecar(hostileOptions(), hostileScenarios))
}

// hostileOptions: the suite's settings (no refresh at login) without a
// token.
func hostileOptions() harness.SidecarOptions {
	opts := sidecarOptions(mainPing)
	opts.Token = ""
	return opts
}

var hostileScenarios = []Scenario{
	// First: the component's request rate is not spent yet.
	{"component_answers", testComponentAnswers},
	{"unsolicited_rsm_reply", testUnsolicitedRSMReply},
	{"error_code_not_a_number", testErrorCodeNotANumber},
	{"undecodable_requests", testUndecodableRequests},
	{"privilege_from_user", testPrivilegeFromUser},
	{"presence_priority", testPresencePriority},
	{"flood", testFlood},
	{"admin_from_browser", testAdminFromBrowser},
	// Last: it replaces the sidecar.
	{"login_dot_usernames", testLoginDotUsernames},
}

// hostile is one attack under way: the attacker's sessions and what the
// sidecar was like before.
type hostile struct {
	t       *testing.T
	e       *Env
	mallory []*Client
	// comp is the component's JID.
	comp string
	// mark is the length of the sidecar's output before the attack.
	mark int
	// victim is a user the attack is not about, logged in as vc.
	victim string
	vc     *Client
}

// refreshVictim gives the victim a roster with one contact named after
// label through the admin API, waits until the victim's client shows it,
// and returns how long the refresh call took.
func (h *hostile) refreshVictim(label string) time.Duration {
	h.t.Helper()
	contacts := []harness.Contact{{JID: h.victim + "_" + label + "@example.test", Name: label}}
	h.e.Backend.SetRoster(h.victim, contacts...)
	r, raw := h.e.Admin.Refresh(h.t, h.victim)
	if res := r.Result(h.t, h.victim); res.Status != "ok" {
		h.t.Fatalf("%s: refreshing %s: %s", h.e.Server.Name, h.victim, raw.Body)
	}
	h.vc.WaitForRoster(h.t, contacts, pushWait)
	return raw.Elapsed
}

// attack logs in the victim <prefix>_victim and sessions of the attacker
// <prefix>_mallory, then runs send (mallory's stanzas) while /readyz is
// polled every readyPoll. Afterwards it checks what issue 11 asks: /readyz
// never left 200; the link neither dropped nor reconnected (the sidecar's
// log, xmpp_reconnects_total, xmpp_connected); the attack added no metric
// series, and the roster privilege is granted for the user domain only;
// and a refresh of the victim still reaches the victim's client.
func attack(t *testing.T, e *Env, prefix string, sessions int, send func(h *hostile)) {
	t.Helper()
	mallory, victim := prefix+"_mallory", prefix+"_victim"
	e.Users(t, mallory, victim)
	h := &hostile{t: t, e: e, comp: e.Server.ComponentDomain, victim: victim, vc: Login(t, e.Server, victim)}
	for range sessions {
		h.mallory = append(h.mallory, Login(t, e.Server, mallory))
	}
	before := scrapeMetrics(t, e)
	h.mark = len(e.Sidecar.Output())
	w := watchReady(e.Sidecar)
	// Also when a check below ends the test.
	defer h.checkLog()
	defer w.check(t)

	send(h)
	for _, m := range h.mallory {
		h.settle(m)
	}
	h.checkLink(before, scrapeMetrics(t, e))
	h.refreshVictim("after")
}

// settle waits until the component has read everything m sent before: it
// pings the component until an answer comes (a server relays one session's
// stanzas in order; pings beyond the component's request rate get no
// answer, hence the retries). Any answer will do, an error from the server
// included: whether the link held is checked after.
func (h *hostile) settle(m *Client) {
	h.t.Helper()
	deadline := time.Now().Add(settleWait)
	for tries := 1; ; tries++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := m.Ask(ctx, pingIQ(h.comp))
		cancel()
		if err == nil {
			if tries > 1 {
				h.t.Logf("%s: the component answered the %d. ping", m.JID, tries)
			}
			return
		}
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
		if tries <= 3 { // the first failures say why the last one happened
			h.t.Logf("%s: ping %d of the component unanswered: %v", m.JID, tries, err)
		}
		if !timedOut || time.Now().After(deadline) {
			h.t.Fatalf("%s on %s: no answer to a ping of the component (for %v): %v", m.JID, h.e.Server.Name, settleWait, err)
		}
	}
}

// sendEach sends each stanza from mallory's first session, waits until the
// component has read it, and stops at the first after which the sidecar
// lost its link, naming it.
func (h *hostile) sendEach(stanzas ...string) {
	h.t.Helper()
	m := h.mallory[0]
	for _, s := range stanzas {
		h.send(m, s)
		h.settle(m)
		if strings.Contains(h.e.Sidecar.Output()[h.mark:], "XMPP connection lost") {
			h.t.Errorf("%s: the sidecar lost its link after %s sent\n  %s", h.e.Server.Name, m.JID, s)
			return
		}
	}
}

// send sends one stanza from m.
func (h *hostile) send(m *Client, stanza string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), askWait)
	defer cancel()
	if err := m.Send(ctx, stanza); err != nil {
		h.t.Fatalf("%s: sending %s: %v", m.JID, stanza, err)
	}
}

// ask sends an IQ from mallory's first session and returns the answer,
// failing the test when none comes within askWait.
func (h *hostile) ask(iq string) iqAnswer {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), askWait)
	defer cancel()
	raw, err := h.mallory[0].Ask(ctx, iq)
	if err != nil {
		h.t.Fatalf("%s: no answer within %v to\n  %s\n%v", h.e.Server.Name, askWait, iq, err)
	}
	a := iqAnswer{Raw: raw}
	if err := xml.Unmarshal([]byte(raw), &a); err != nil {
		h.t.Fatalf("%s: the answer to %s does not parse: %v\n%s", h.e.Server.Name, iq, err, raw)
	}
	h.t.Logf("%s: %s\n  -> %s", h.e.Server.Name, iq, raw)
	return a
}

// expectError checks that a is an error from the component with the
// condition cond.
func (h *hostile) expectError(a iqAnswer, cond string) {
	h.t.Helper()
	if a.Type != "error" || a.Condition() != cond || a.From != h.comp {
		h.t.Errorf("%s: want an error %s from %s, got %s", h.e.Server.Name, cond, h.comp, a.Raw)
	}
}

// expectDiscoInfo checks that a is the component's disco#info result.
func (h *hostile) expectDiscoInfo(a iqAnswer) {
	h.t.Helper()
	if a.Type != "result" || a.From != h.comp {
		h.t.Errorf("%s: want a result from %s, got %s", h.e.Server.Name, h.comp, a.Raw)
		return
	}
	if !slices.ContainsFunc(a.Query.Identities, func(i discoIdentity) bool {
		return i.Category == "component" && i.Type == "generic"
	}) {
		h.t.Errorf("%s: no identity category=component type=generic in %s", h.e.Server.Name, a.Raw)
	}
	for _, f := range []string{"http://jabber.org/protocol/disco#info", "urn:xmpp:ping"} {
		if !slices.ContainsFunc(a.Query.Features, func(x discoFeature) bool { return x.Var == f }) {
			h.t.Errorf("%s: feature %s missing in %s", h.e.Server.Name, f, a.Raw)
		}
	}
}

// checkLink checks the sidecar's metrics after the attack against before.
func (h *hostile) checkLink(before, after metricsSnapshot) {
	h.t.Helper()
	t, name := h.t, h.e.Server.Name
	// It is 0 throughout the suite; compared with before, the verdict of
	// a scenario does not depend on the scenarios before it.
	if n, was := after["roster_sidecar_xmpp_reconnects_total"], before["roster_sidecar_xmpp_reconnects_total"]; n != was {
		t.Errorf("%s: roster_sidecar_xmpp_reconnects_total went from %v to %v during the attack", name, was, n)
	}
	if v := after["roster_sidecar_xmpp_connected"]; v != 1 {
		t.Errorf("%s: roster_sidecar_xmpp_connected is %v, want 1", name, v)
	}
	// The roster privilege is granted for the user domain, and the attack
	// made no series for another "domain" (series an earlier scenario
	// made are that scenario's failure).
	ours := `roster_sidecar_roster_privilege_granted{domain="` + harness.UserDomain + `"}`
	if v, ok := after[ours]; !ok || v != 1 {
		t.Errorf("%s: %s is %v (present %v), want 1", name, ours, v, ok)
	}
	for k, v := range after {
		if _, old := before[k]; strings.HasPrefix(k, "roster_sidecar_roster_privilege_granted{") && k != ours && !old {
			t.Errorf("%s: the attack made a privilege series for another domain: %s %v", name, k, v)
		}
	}
	var added []string
	for k := range after {
		if _, ok := before[k]; !ok {
			added = append(added, k)
		}
	}
	if len(added) > 0 {
		slices.Sort(added)
		t.Errorf("%s: the attack added %d metric series: %s", name, len(added), strings.Join(added, "\n  "))
	}
}

// checkLog checks that the sidecar neither lost nor re-made its link since
// the attack began (it logs "XMPP connection lost" at each loss and
// "connected to XMPP server" at each connection).
func (h *hostile) checkLog() {
	h.t.Helper()
	out := h.e.Sidecar.Output()[h.mark:]
	if strings.Contains(out, "XMPP connection lost") || strings.Contains(out, "connected to XMPP server") {
		h.t.Errorf("%s: the sidecar's link dropped during the attack:\n%s", h.e.Server.Name, out)
	}
}

// iqAnswer is an IQ reply as a client receives it.
type iqAnswer struct {
	Type  string `xml:"type,attr"`
	From  string `xml:"from,attr"`
	Error struct {
		Type       string `xml:"type,attr"`
		Conditions []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"error"`
	Query struct {
		Identities []discoIdentity `xml:"identity"`
		Features   []discoFeature  `xml:"feature"`
	} `xml:"http://jabber.org/protocol/disco#info query"`
	// Raw is the reply as XML.
	Raw string `xml:"-"`
}

type discoIdentity struct {
	Category string `xml:"category,attr"`
	Type     string `xml:"type,attr"`
	Name     string `xml:"name,attr"`
}

type discoFeature struct {
	Var string `xml:"var,attr"`
}

// Condition is the defined condition of an error reply ("" for none).
func (a iqAnswer) Condition() string {
	for _, c := range a.Error.Conditions {
		if c.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.XMLName.Local != "text" {
			return c.XMLName.Local
		}
	}
	return ""
}

// pingIQ is an XEP-0199 ping to to.
func pingIQ(to string) string {
	return fmt.Sprintf(`<iq type='get' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, to)
}

// testComponentAnswers: the component answers what is addressed to it as
// RFC 6120 8.2.3 wants. XEP-0030 disco#info and XEP-0199 ping get a result
// (the identity category=component type=generic, the features disco#info
// and ping), anything else service-unavailable, from the component's JID.
// Both servers pass these IQs on to the component and relay its answers
// unchanged (measured: ejabberd 24.12 does not answer for the component
// either; the identity's name="roster-sidecar" is the component's). The
// sidecar before issue 11 answered disco#info with gosrc.io/xmpp's
// service-unavailable (with a legacy code='503').
func testComponentAnswers(t *testing.T, e *Env) {
	attack(t, e, "h_ans", 1, func(h *hostile) {
		h.expectDiscoInfo(h.ask(fmt.Sprintf(`<iq type='get' to='%s'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, h.comp)))
		if a := h.ask(pingIQ(h.comp)); a.Type != "result" || a.From != h.comp {
			h.t.Errorf("%s: ping: want a result from %s, got %s", e.Server.Name, h.comp, a.Raw)
		}
		h.expectError(h.ask(fmt.Sprintf(`<iq type='get' to='%s'><query xmlns='jabber:iq:version'/></iq>`, h.comp)), "service-unavailable")
	})
}

// testUnsolicitedRSMReply: the demonstrated case of issue 11 (1), an IQ
// result nobody asked for whose roster query carries a non-numeric RSM
// count, which took the link down on both servers; the same as an error,
// to the component's full JID, with other RSM fields, and with an id like
// the sidecar's own.
func testUnsolicitedRSMReply(t *testing.T, e *Env) {
	attack(t, e, "h_rsm", 1, func(h *hostile) {
		c := h.comp
		rsm := func(typ, to, id, set string) string {
			return fmt.Sprintf(`<iq type='%s' id='%s' to='%s'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'>%s</set></query></iq>`, typ, id, to, set)
		}
		h.sendEach(
			// Exactly the stanza of the issue.
			`<iq type='result' id='anything' to='`+c+`'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'><count>x</count></set></query></iq>`,
			rsm("error", c, "anything", "<count>x</count>"),
			rsm("result", c+"/res", "anything", "<count>x</count>"),
			rsm("result", c, "QWERTYUIOPASDFGHJKLZXCVBNM", "<count>x</count>"),
			rsm("result", c, "r1", "<first index='x'>a</first><max>-x</max><index>99999999999999999999</index>"),
			rsm("error", c, "r2", "<count>1e9</count>"),
		)
	})
}

// testErrorCodeNotANumber: stanza errors whose legacy code is not a number
// (issue 11 (b)), on an IQ, a message and a presence.
func testErrorCodeNotANumber(t *testing.T, e *Env) {
	attack(t, e, "h_code", 1, func(h *hostile) {
		c := h.comp
		cond := `<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`
		h.sendEach(
			`<iq type='error' id='anything' to='`+c+`'><error code='abc' type='cancel'>`+cond+`</error></iq>`,
			`<iq type='error' id='e2' to='`+c+`'><error code='99999999999999999999' type='x'/></iq>`,
			`<iq type='error' id='e3' to='`+c+`'><query xmlns='jabber:iq:roster'/><error code='' type='cancel'>`+cond+`</error></iq>`,
			`<message type='error' to='`+c+`'><error code='abc' type='cancel'>`+cond+`</error></message>`,
			`<presence type='error' to='`+c+`'><error code='abc' type='cancel'>`+cond+`</error></presence>`,
		)
	})
}

// testUndecodableRequests: IQ get and set to the component with payloads
// gosrc.io/xmpp cannot decode (issue 11 (c)); each is answered, a
// disco#info carrying RSM as disco#info. A roster set never reaches the
// component on Prosody (measured): the mod_firewall rule of
// deploy/prosody/roster-sidecar.pfw bounces every roster set a client
// sends, whatever its to, with not-allowed (from the component's JID)
// before routing it.
func testUndecodableRequests(t *testing.T, e *Env) {
	rosterSet := map[string]string{"prosody": "not-allowed", "ejabberd": "service-unavailable"}[e.Server.Kind]
	attack(t, e, "h_undec", 1, func(h *hostile) {
		c := h.comp
		h.expectError(h.ask(`<iq type='get' to='`+c+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='x' max_items='x'/></pubsub></iq>`), "service-unavailable")
		h.expectError(h.ask(`<iq type='set' to='`+c+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='x'><item id='1'><x xmlns='urn:a'><priority>x</priority></x></item></publish></pubsub></iq>`), "service-unavailable")
		h.expectDiscoInfo(h.ask(`<iq type='get' to='` + c + `'><query xmlns='http://jabber.org/protocol/disco#info'><set xmlns='http://jabber.org/protocol/rsm'><max>x</max><count>x</count></set></query></iq>`))
		h.expectError(h.ask(`<iq type='set' to='`+c+`'><query xmlns='jabber:iq:roster'><set xmlns='http://jabber.org/protocol/rsm'><count>x</count></set></query></iq>`), rosterSet)
		h.expectError(h.ask(`<iq type='set' to='`+c+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`), "service-unavailable")
		if a := h.ask(`<iq type='get' to='` + c + `'><ping xmlns='urn:xmpp:ping'><x xmlns='urn:a'><priority>300</priority></x></ping></iq>`); a.Type != "result" {
			h.t.Errorf("%s: a ping with a payload: want a result, got %s", e.Server.Name, a.Raw)
		}
	})
}

// testPrivilegeFromUser: XEP-0356 privilege messages from a user (issue 11
// (d)), from three sessions (three full JIDs), in both namespaces, one
// revoking the roster privilege, one to the component's full JID: none
// becomes a grant (a metric series, a log line) or takes the sidecar's
// privilege away (/readyz stays 200). attack checks the series.
//
// Measured: ejabberd passes all of them on to the component. Prosody's
// mod_privilege, loaded on the component's host, takes every message to
// the component (bare or full JID) that carries a urn:xmpp:privilege:2
// <privilege/> for a privileged-message request of the component's own,
// and answers the user auth/forbidden: only the urn:xmpp:privilege:1 ones
// reach the component there (they made the series of issue 11 with the
// sidecar before the fix, on both servers).
func testPrivilegeFromUser(t *testing.T, e *Env) {
	attack(t, e, "h_priv", 3, func(h *hostile) {
		c := h.comp
		priv := func(to, ns, roster string) string {
			return fmt.Sprintf(`<message to='%s'><privilege xmlns='%s'><perm access='roster' type='%s'/><perm access='presence' type='managed_entity'/></privilege></message>`, to, ns, roster)
		}
		for _, m := range h.mallory {
			for _, s := range []string{
				priv(c, "urn:xmpp:privilege:2", "both"),
				priv(c, "urn:xmpp:privilege:1", "both"),
				priv(c, "urn:xmpp:privilege:2", "none"),
				priv(c+"/res", "urn:xmpp:privilege:2", "both"),
			} {
				h.send(m, s)
			}
		}
		for _, m := range h.mallory {
			h.settle(m)
		}
		if out := h.e.Sidecar.Output()[h.mark:]; strings.Contains(out, "privileges granted") {
			h.t.Errorf("%s: the sidecar logged a grant during the attack:\n%s", e.Server.Name, out)
		}
	})
}

// testPresencePriority: presence whose priority does not fit gosrc.io/xmpp's
// int8 (issue 11 (e)), as directed presence to the component and, since the
// presence privilege forwards users' presence to it, as broadcast presence.
func testPresencePriority(t *testing.T, e *Env) {
	attack(t, e, "h_prio", 1, func(h *hostile) {
		c := h.comp
		h.sendEach(
			`<presence to='`+c+`'><priority>300</priority></presence>`,
			`<presence to='`+c+`'><x xmlns='urn:a'><priority>x</priority></x></presence>`,
			`<presence to='`+c+`'><priority>128</priority></presence>`,
			`<presence to='`+c+`/res'><show>xx</show><priority>1e3</priority><status><priority>-129</priority></status></presence>`,
			`<presence to='`+c+`' type='unavailable'><priority>x</priority></presence>`,
			`<presence><priority>300</priority></presence>`,
			`<presence><x xmlns='urn:a'><priority>x</priority></x></presence>`,
		)
	})
}

// testFlood: one user sends the component floodPings pings and
// floodMessages messages (half of them privilege messages, see
// testPrivilegeFromUser) as fast as
// floodSessions sessions can send them (issue 11 (f)). /readyz stays 200,
// the sidecar's peak RSS stays under maxRSS, it logs next to nothing, and
// it answers no more pings than its request rate allows.
func testFlood(t *testing.T, e *Env) {
	pid := e.Sidecar.Pid()
	rest := procStatus(t, pid, "VmRSS")
	cpu0, srvCPU0 := groupCPU(t, pid), groupCPU(t, e.Server.Process.Pid())
	attack(t, e, "h_flood", floodSessions, func(h *hostile) {
		c := h.comp
		start := time.Now()
		errs := make(chan error, len(h.mallory))
		var wg sync.WaitGroup
		for s, m := range h.mallory {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				for i := range floodPings / floodSessions {
					if err := m.Send(ctx, fmt.Sprintf(`<iq type='get' id='f%d-%d' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, s, i, c)); err != nil {
						errs <- err
						return
					}
					msg := fmt.Sprintf(`<message type='chat' to='%s'><body>flood %d %d</body></message>`, c, s, i)
					if i%2 == 1 {
						// Both namespaces: Prosody passes on only :1.
						msg = fmt.Sprintf(`<message to='%s'><privilege xmlns='urn:xmpp:privilege:%d'><perm access='roster' type='both'/></privilege></message>`, c, 1+i/2%2)
					}
					if err := m.Send(ctx, msg); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		sent := time.Since(start)
		close(errs)
		for err := range errs {
			h.t.Fatalf("%s: flooding: %v", e.Server.Name, err)
		}
		// The servers take seconds to pass the flood on (see
		// floodSessions): a refresh meanwhile gets every answer (the
		// stanzas of the flood do not hold up the server's replies).
		if d := h.refreshVictim("during"); d >= iqTimeout {
			t.Errorf("%s: a refresh during the flood took %v (IQ timeout %v)", e.Server.Name, d, iqTimeout)
		}
		for _, m := range h.mallory {
			h.settle(m)
		}
		window := time.Since(start)
		var pongs, refusals int
		for _, m := range h.mallory {
			r, x := m.IQReplies(c)
			pongs, refusals = pongs+r, refusals+x
		}
		hwm := procStatus(t, pid, "VmHWM")
		logged := len(h.e.Sidecar.Output()) - h.mark
		t.Logf("%s: %d pings and %d messages sent from %d sessions in %v; all read by the component after %v; "+
			"%d pings answered, %d errors; sidecar RSS %d KiB at rest, peak %d KiB; %d bytes logged; CPU time sidecar %v, server %v",
			e.Server.Name, floodPings, floodMessages, floodSessions, sent.Round(time.Millisecond), window.Round(time.Millisecond),
			pongs, refusals, rest>>10, hwm>>10, logged, groupCPU(t, pid)-cpu0, groupCPU(t, e.Server.Process.Pid())-srvCPU0)
		// Every Allow of the component's limiter happened within window.
		if most := requestBurst + int(requestRate*window.Seconds()) + 1; pongs > most {
			t.Errorf("%s: %d pings answered within %v; the request rate (%d/s, burst %d) allows %d", e.Server.Name, pongs, window, requestRate, requestBurst, most)
		}
		if pongs == 0 || refusals != 0 {
			t.Errorf("%s: want some pings answered with a result and no error, got %d results, %d errors", e.Server.Name, pongs, refusals)
		}
		if hwm > maxRSS {
			t.Errorf("%s: the sidecar's peak RSS is %d MiB, over %d MiB", e.Server.Name, hwm>>20, maxRSS>>20)
		}
		if logged > maxFloodLog {
			t.Errorf("%s: the sidecar logged %d bytes during the flood (bound %d):\n%s", e.Server.Name, logged, maxFloodLog, h.e.Sidecar.Output()[h.mark:])
		}
	})
}

// testAdminFromBrowser: what a web page in a browser on the sidecar's host
// can do to the admin API in the default set-up (issue 11 (5)): a
// cross-site text/plain POST (a form or fetch without preflight), a
// cross-site GET (an <img> tag) and requests under a foreign Host (DNS
// rebinding) are refused with 403, before any backend fetch, and the
// roster stays; what backends and curl send (none of those headers) still
// refreshes.
func testAdminFromBrowser(t *testing.T, e *Env) {
	const user = "h_adm_victim"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{{JID: "h_adm_old@example.test", Name: "Old"}}
	populate(t, e, c, user, v1...)
	v2 := []harness.Contact{{JID: "h_adm_new@example.test", Name: "New", Groups: []string{"Changed"}}}
	e.Backend.SetRoster(user, v2...)
	fetches := len(e.Backend.Requests(""))
	n := c.Pushes()

	body := `["` + user + `"]`
	evil := http.Header{"Origin": {"http://evil.example"}}
	for _, r := range []adminRequest{
		{"cross-site text/plain POST", http.MethodPost, "/roster_admin/refresh", body, "",
			http.Header{"Content-Type": {"text/plain;charset=UTF-8"}, "Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}, "Origin": {"http://evil.example"}}},
		{"cross-site GET (img)", http.MethodGet, "/roster_admin/refresh/" + user, "", "",
			http.Header{"Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"image"}}},
		{"foreign Host POST (DNS rebinding)", http.MethodPost, "/roster_admin/refresh", body, "evil.example:5380",
			http.Header{"Content-Type": {"application/json"}}},
		// Variants.
		{"same-site POST", http.MethodPost, "/roster_admin/refresh/" + user, "", "",
			http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"http://other.localhost"}}},
		{"cross-origin POST without Sec-Fetch-Site (older browser)", http.MethodPost, "/roster_admin/refresh", body, "",
			http.Header{"Content-Type": {"text/plain"}, "Origin": evil["Origin"]}},
		{"foreign Host GET refresh", http.MethodGet, "/roster_admin/refresh/" + user, "", "evil.example:5380", nil},
		{"foreign Host /readyz", http.MethodGet, "/readyz", "", "evil.example:5380", nil},
		{"foreign Host /metrics", http.MethodGet, "/metrics", "", "evil.example", nil},
	} {
		if got := r.do(t, e); got.Status != http.StatusForbidden {
			t.Errorf("%s: %s: status %d, want 403: %s", e.Server.Name, r.name, got.Status, got.Body)
		}
	}
	if got := e.Backend.Requests("")[fetches:]; len(got) != 0 {
		t.Errorf("%s: the refused requests made %d backend fetches: %+v", e.Server.Name, len(got), got)
	}
	c.AssertRosterStays(t, n, v1, quiet)

	// curl -d '["user"]' http://127.0.0.1:PORT/roster_admin/refresh
	curl := adminRequest{"curl", http.MethodPost, "/roster_admin/refresh", body, "",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "User-Agent": {"curl/8.5.0"}, "Accept": {"*/*"}}}
	if got := curl.do(t, e); got.Status != http.StatusOK || !strings.Contains(got.Body, `"updated":1`) {
		t.Errorf("%s: a curl-like refresh: status %d, want 200 with updated 1: %s", e.Server.Name, got.Status, got.Body)
	}
	c.WaitForRoster(t, v2, pushWait)
	if got := len(e.Backend.Requests(user)); got != 2 {
		t.Errorf("%s: %d backend fetches for %s, want 2 (populate and curl)", e.Server.Name, got, user)
	}
}

// adminRequest is a request to the sidecar's admin API as a browser or
// curl would send it.
type adminRequest struct {
	name, method, path, body string
	// host replaces the Host header when not empty.
	host   string
	header http.Header
}

func (r adminRequest) do(t *testing.T, e *Env) harness.AdminReply {
	t.Helper()
	var rd io.Reader
	if r.body != "" {
		rd = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, e.Sidecar.Admin.BaseURL+r.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.host != "" {
		req.Host = r.host
	}
	start := time.Now()
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	reply := harness.AdminReply{Status: resp.StatusCode, Body: strings.TrimSpace(string(b)), Elapsed: time.Since(start)}
	t.Logf("%s: %s %s -> %d %s", r.name, r.method, r.path, reply.Status, reply.Body)
	return reply
}

// testLoginDotUsernames: users named "." and ".." log in with the refresh
// at login on (issue 11 (4)): the backend never gets a request for /. or
// /.. (which a path-cleaning backend would resolve to another document),
// and their rosters stay empty although the backend would give them one. A
// server that refuses to register such a name is recorded (see
// dotRefused). It restarts the sidecar with sync.on_login.
func testLoginDotUsernames(t *testing.T, e *Env) {
	e.Sidecar.Stop(10 * time.Second)
	opts := hostileOptions()
	opts.Env = nil // sync.on_login: true, the default
	e.StartSidecar(t, opts)

	var dots []string
	for _, u := range []string{".", ".."} {
		err := e.Server.TryCreateUser(u)
		t.Logf("%s: registering %q: %v", e.Server.Name, u, err)
		if err == nil {
			dots = append(dots, u)
		}
		// A roster for the sidecar to (wrongly) apply.
		e.Backend.SetRoster(u, harness.Contact{JID: "h_dot_stolen@example.test", Name: "Not yours"})
	}
	if want := dotAccounts[e.Server.Kind]; !slices.Equal(dots, want) {
		t.Fatalf("%s registered the accounts %q, measured to register %q", e.Server.Name, dots, want)
	}
	const control = "h_dot_control"
	e.Users(t, control)
	controlRoster := []harness.Contact{{JID: "h_dot_friend@example.test", Name: "Friend"}}
	e.Backend.SetRoster(control, controlRoster...)

	done := func(m metricsSnapshot) float64 {
		return m[`roster_sidecar_login_refreshes_total{outcome="ok"}`] + m[`roster_sidecar_login_refreshes_total{outcome="error"}`]
	}
	before := done(scrapeMetrics(t, e))
	clients := map[string]*Client{}
	for _, u := range dots {
		clients[u] = Login(t, e.Server, u)
	}
	Login(t, e.Server, control).WaitForRoster(t, controlRoster, loginWait)
	// Every login refresh has ended (ok or error) before the checks.
	want := float64(len(dots) + 1)
	err := harness.WaitFor(context.Background(), e.Sidecar.Process, loginWait, "the login refreshes to end", func() error {
		if n := done(scrapeMetrics(t, e)) - before; n < want {
			return fmt.Errorf("%v of %v ended", n, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range e.Backend.Requests("") {
		if r.User == "." || r.User == ".." || strings.HasSuffix(r.EscapedPath, "/.") || strings.HasSuffix(r.EscapedPath, "/..") {
			t.Errorf("%s: the backend got a request for %s", e.Server.Name, r.EscapedPath)
		}
	}
	for u, c := range clients {
		if items := c.FetchRoster(t); len(items) != 0 {
			t.Errorf("%s: %q got a roster: %s", e.Server.Name, u, formatItems(items))
		}
	}
	if n := strings.Count(e.Sidecar.Output(), "login refresh failed"); n < len(dots) {
		t.Errorf("%s: %d login refreshes failed, want %d (one per user named . or ..)", e.Server.Name, n, len(dots))
	}
}

// dotAccounts are the accounts named "." and ".." each server was measured
// to register (see testLoginDotUsernames).
var dotAccounts = map[string][]string{
	"prosody":  {".", ".."},
	"ejabberd": {".", ".."},
}

// readyWatch polls the sidecar's /readyz every readyPoll until halted.
type readyWatch struct {
	url  string
	once sync.Once
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	polls    int
	slowest  time.Duration
	failures []string // the first few answers other than 200
	failed   int
}

func watchReady(s *harness.Sidecar) *readyWatch {
	w := &readyWatch{url: s.Admin.BaseURL + "/readyz", stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *readyWatch) run() {
	defer close(w.done)
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		start := time.Now()
		status, err := w.poll(client)
		d := time.Since(start)
		w.mu.Lock()
		w.polls++
		w.slowest = max(w.slowest, d)
		if err != nil || status != http.StatusOK {
			w.failed++
			if len(w.failures) < 5 {
				w.failures = append(w.failures, fmt.Sprintf("%s: status %d, error %v", start.Format("15:04:05.000"), status, err))
			}
		}
		w.mu.Unlock()
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
	}
}

func (w *readyWatch) poll(client *http.Client) (int, error) {
	resp, err := client.Get(w.url)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// halt stops the polling; it may be called more than once.
func (w *readyWatch) halt() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// check halts the polling and fails t unless every poll answered 200.
func (w *readyWatch) check(t *testing.T) {
	t.Helper()
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed > 0 {
		t.Errorf("/readyz left 200 in %d of %d polls: %s", w.failed, w.polls, strings.Join(w.failures, "; "))
		return
	}
	t.Logf("/readyz answered 200 to all %d polls (slowest %v)", w.polls, w.slowest.Round(time.Millisecond))
}

// metricsSnapshot maps each series of /metrics ("name{labels}") to its
// value.
type metricsSnapshot map[string]float64

func scrapeMetrics(t testing.TB, e *Env) metricsSnapshot {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(e.Sidecar.Admin.BaseURL + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	m := metricsSnapshot{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return m
}

// procStatus returns a field of /proc/PID/status given in kB (VmRSS,
// VmHWM) in bytes.
func procStatus(t testing.TB, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// groupCPU returns the CPU time (user and system) used so far by the
// processes of the process group pgid.
func groupCPU(t testing.TB, pgid int) time.Duration {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var ticks int
	for _, d := range entries {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		// The fields after the command name, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.Atoi(f[11])
		s, _ := strconv.Atoi(f[12])
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
