//go:build e2e

package e2e

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"roster-sidecar/e2e/harness"
)

// TestPresenceHelper runs the sidecar against Prosody with roster-sidecar's
// helper, deploy/prosody/mod_roster_sidecar.lua, loaded from the deploy
// configuration: presence flows as the subscriptions written allow, at
// once, and a user's changes are one request. It means something on
// Prosody only: TestPresenceHelper/prosody/<scenario>.
func TestPresenceHelper(t *testing.T) {
	runPerServer(t, servers{only: []string{"prosody", "prosody012"}}, func(t *testing.T, e *Env) {
		if !e.Server.PresenceHelper {
			t.Fatal("the Prosody runner did not load the helper")
		}
		e.StartSidecar(t, sidecarOptions(mainPing))
		waitLogged(t, e.Sidecar, `msg="server helper found`)
		e.run(t, []Scenario{
			{"friends_then_unfriend", testHelperFriends},
			{"one_way", testHelperOneWay},
			{"reduced_then_removed", testHelperReduced},
			{"large_populate", testLargePopulate},
			{"requests_checked", testHelperRequests},
		})
	})
}

// TestWithoutHelper runs Prosody from a configuration without the helper
// (e2e/testdata/prosody-nohelper.cfg.lua): check says it is missing and
// what is lost, the sidecar says so at start-up, rosters sync item by item
// as before, and presence flows only from the contacts' next broadcast.
func TestWithoutHelper(t *testing.T) {
	s := servers{only: []string{"prosody", "prosody012"}, start: harness.ServerOptions{ProsodyNoHelper: true}}
	runPerServer(t, s, func(t *testing.T, e *Env) {
		if e.Server.PresenceHelper {
			t.Fatal("the Prosody runner loaded the helper")
		}
		requireSidecar(t)
		e.Users(t, "nh_check")
		e.Backend.SetRoster("nh_check")
		runCommand(t, harness.SidecarEnv(e.Server, e.Backend), 0, []string{"check", "--user", "nh_check"},
			"ready:      ok: the component may read and write the rosters of example.test\n",
			"helper:     missing on example.test (optional; the Prosody module deploy/prosody/mod_roster_sidecar.lua, docs/deploy-prosody.md): "+
				"without it contacts see each other's presence only from their next status change or login, not at once, "+
				"and each roster item is a write of its own (slow for large rosters on Prosody)\n")
		e.StartSidecar(t, sidecarOptions(mainPing))
		waitLogged(t, e.Sidecar, `msg="server helper not found`)
		e.run(t, []Scenario{
			{"first_population", testFirstPopulation},
			{"removal", testRemoval},
			{"presence_after_both", testPresenceAfterBoth},
			{"large_populate", testLargePopulate},
		})
	})
}

// waitLogged waits until the sidecar has logged want.
func waitLogged(t *testing.T, s *harness.Sidecar, want string) {
	t.Helper()
	err := harness.WaitFor(t.Context(), s.Process, 5*time.Second, "the sidecar to log "+want, func() error {
		if !strings.Contains(s.Output(), want) {
			return fmt.Errorf("not logged yet")
		}
		return nil
	})
	if err != nil {
		t.Errorf("%v; its output:\n%s", err, s.Output())
	}
}

// testHelperFriends: two online users made friends by one refresh see
// each other available within a second; a status change flows both ways
// afterwards; an unfriend refresh makes each see the other unavailable
// within a second, and the items disappear.
func testHelperFriends(t *testing.T, e *Env) {
	const a, b = "hf_amy", "hf_ben"
	ca, cb := onlinePair(t, e, a, b)
	na, nb := ca.PresenceCount(), cb.PresenceCount()
	start := time.Now()
	befriend(t, e, ca, cb)
	pa := ca.WaitForPresence(t, na, cb.JID, "", pushWait)
	pb := cb.WaitForPresence(t, nb, ca.JID, "", pushWait)
	t.Logf("friends: available presence %v (%s) and %v (%s) after the refresh started",
		pa.At.Sub(start).Round(time.Millisecond), a, pb.At.Sub(start).Round(time.Millisecond), b)
	within(t, b+"'s presence at "+a, pa.At.Sub(start), helperPresenceBound)
	within(t, a+"'s presence at "+b, pb.At.Sub(start), helperPresenceBound)

	statusFlows(t, cb, ca, true)
	statusFlows(t, ca, cb, true)

	na, nb = ca.PresenceCount(), cb.PresenceCount()
	e.Backend.SetRoster(a)
	e.Backend.SetRoster(b)
	start = time.Now()
	r := e.Admin.RefreshOK(t, a, b)
	expectCounts(t, r, a, 0, 0, 1)
	expectCounts(t, r, b, 0, 0, 1)
	pa = ca.WaitForPresence(t, na, cb.JID, "unavailable", pushWait)
	pb = cb.WaitForPresence(t, nb, ca.JID, "unavailable", pushWait)
	t.Logf("unfriend: unavailable presence %v (%s) and %v (%s) after the refresh started",
		pa.At.Sub(start).Round(time.Millisecond), a, pb.At.Sub(start).Round(time.Millisecond), b)
	within(t, b+"'s unavailable at "+a, pa.At.Sub(start), helperPresenceBound)
	within(t, a+"'s unavailable at "+b, pb.At.Sub(start), helperPresenceBound)
	ca.WaitForRoster(t, nil, pushWait)
	cb.WaitForRoster(t, nil, pushWait)
	statusFlows(t, cb, ca, false)
	statusFlows(t, ca, cb, false)
}

// testHelperOneWay: the backend gives c subscription "to" on d and d
// "from" on c: c sees d at once and d's status changes afterwards; d never
// sees c.
func testHelperOneWay(t *testing.T, e *Env) {
	const c, d = "ow_cat", "ow_dan"
	cc, cd := onlinePair(t, e, c, d)
	cWants := []harness.Contact{{JID: cd.JID.String(), Name: "Dan", Subscription: "to"}}
	dWants := []harness.Contact{{JID: cc.JID.String(), Name: "Cat", Subscription: "from"}}
	e.Backend.SetRoster(c, cWants...)
	e.Backend.SetRoster(d, dWants...)
	nc, nd := cc.PresenceCount(), cd.PresenceCount()
	start := time.Now()
	e.Admin.RefreshOK(t, c, d)
	cc.WaitForRoster(t, cWants, pushWait)
	cd.WaitForRoster(t, dWants, pushWait)
	p := cc.WaitForPresence(t, nc, cd.JID, "", pushWait)
	t.Logf("one way: %s sees %s %v after the refresh started", c, d, p.At.Sub(start).Round(time.Millisecond))
	within(t, d+"'s presence at "+c, p.At.Sub(start), helperPresenceBound)
	time.Sleep(quiet)
	if got := cd.PresencesFrom(nd, cc.JID, ""); len(got) != 0 {
		t.Errorf("%s, subscribed from only, received %s's presence: %v", d, c, got)
	}
	statusFlows(t, cd, cc, true)
	statusFlows(t, cc, cd, false)
}

// testHelperReduced: friends with both; the backend reduces e's item to
// "to" and f's to "from" (f no longer sees e): f receives e's
// unavailable, e keeps seeing f. Then the backend removes them: e receives
// f's unavailable.
func testHelperReduced(t *testing.T, e *Env) {
	const a, b = "rd_eve", "rd_fay"
	ca, cb := onlinePair(t, e, a, b)
	na, nb := ca.PresenceCount(), cb.PresenceCount()
	befriend(t, e, ca, cb)
	ca.WaitForPresence(t, na, cb.JID, "", pushWait)
	cb.WaitForPresence(t, nb, ca.JID, "", pushWait)

	aWants := []harness.Contact{{JID: cb.JID.String(), Name: "Friend " + b, Subscription: "to"}}
	bWants := []harness.Contact{{JID: ca.JID.String(), Name: "Friend " + a, Subscription: "from"}}
	e.Backend.SetRoster(a, aWants...)
	e.Backend.SetRoster(b, bWants...)
	na, nb = ca.PresenceCount(), cb.PresenceCount()
	start := time.Now()
	r := e.Admin.RefreshOK(t, a, b)
	expectCounts(t, r, a, 0, 1, 0)
	expectCounts(t, r, b, 0, 1, 0)
	p := cb.WaitForPresence(t, nb, ca.JID, "unavailable", pushWait)
	t.Logf("reduced: %s sees %s unavailable %v after the refresh started", b, a, p.At.Sub(start).Round(time.Millisecond))
	within(t, a+"'s unavailable at "+b, p.At.Sub(start), helperPresenceBound)
	ca.WaitForRoster(t, aWants, pushWait)
	cb.WaitForRoster(t, bWants, pushWait)
	time.Sleep(quiet)
	if got := ca.PresencesFrom(na, cb.JID, "unavailable"); len(got) != 0 {
		t.Errorf("%s, still subscribed to %s, received its unavailable: %v", a, b, got)
	}
	statusFlows(t, cb, ca, true)
	statusFlows(t, ca, cb, false)

	e.Backend.SetRoster(a)
	e.Backend.SetRoster(b)
	na = ca.PresenceCount()
	start = time.Now()
	e.Admin.RefreshOK(t, a, b)
	p = ca.WaitForPresence(t, na, cb.JID, "unavailable", pushWait)
	t.Logf("removed: %s sees %s unavailable %v after the refresh started", a, b, p.At.Sub(start).Round(time.Millisecond))
	within(t, b+"'s unavailable at "+a, p.At.Sub(start), helperPresenceBound)
	ca.WaitForRoster(t, nil, pushWait)
	cb.WaitForRoster(t, nil, pushWait)
}

// statusFlows has from broadcast an available presence (a status change)
// and checks that to receives it, or with flows false that it does not.
func statusFlows(t *testing.T, from, to *Client, flows bool) {
	t.Helper()
	n := to.PresenceCount()
	sent := time.Now()
	from.SendPresence(t, jid.JID{}, "")
	if flows {
		p := to.WaitForPresence(t, n, from.JID, "", pushWait)
		t.Logf("%s's status change reached %s after %v", from.JID.Localpart(), to.JID.Localpart(), p.At.Sub(sent).Round(time.Millisecond))
		return
	}
	time.Sleep(quiet)
	if got := to.PresencesFrom(n, from.JID, ""); len(got) != 0 {
		t.Errorf("%s's status change reached %s, who is not subscribed to it: %v", from.JID.Localpart(), to.JID.Localpart(), got)
	}
}

// helperCalls is a Lua chunk for ProsodyShell that hands requests of
// roster-sidecar's protocol to mod_roster_sidecar inside Prosody, from
// origins the sidecar cannot fake (a client, a component without roster
// privilege), and returns the answers separated by " || ". Each call is
// {origin type, origin host, owner, {{jid, subscription, name}...}}.
const helperCalls = `local st = require "util.stanza";
local events = prosody.hosts["example.test"].events;
local ns = "urn:xmpp:roster-sidecar:0";
local function call(otype, ohost, owner, items)
  local replies = {};
  local origin = { type = otype, host = ohost, send = function(s) replies[#replies + 1] = tostring(s) end };
  local iq = st.iq({ type = "set", id = "t", from = ohost, to = "example.test" }):tag("apply", { xmlns = ns, jid = owner });
  for _, it in ipairs(items) do iq:tag("item", { xmlns = ns, jid = it[1], subscription = it[2], name = it[3] }):up() end;
  events.fire_event("iq-set/host/" .. ns .. ":apply", { origin = origin, stanza = iq });
  return table.concat(replies, " ");
end;
local out = {};
for _, c in ipairs(CALLS) do out[#out + 1] = call(c[1], c[2], c[3], c[4]) end;
return table.concat(out, " || ")`

// helperAnswer is what testHelperRequests reads of an answer.
type helperAnswer struct {
	Type  string `xml:"type,attr"`
	Error *struct {
		Conditions []struct{ XMLName xml.Name } `xml:",any"`
	} `xml:"error"`
	Applied *struct {
		Changed   string `xml:"changed,attr"`
		Unchanged string `xml:"unchanged,attr"`
		Failed    []struct {
			JID       string `xml:"jid,attr"`
			Condition string `xml:"condition,attr"`
		} `xml:"failed"`
	} `xml:"urn:xmpp:roster-sidecar:0 applied"`
}

// String is the answer in short: the error condition, or the counts and
// failures.
func (a helperAnswer) String() string {
	switch {
	case a.Error != nil:
		for _, c := range a.Error.Conditions {
			if c.XMLName.Local != "text" {
				return "error " + c.XMLName.Local
			}
		}
		return "error"
	case a.Applied != nil:
		var failed []string
		for _, f := range a.Applied.Failed {
			failed = append(failed, f.JID+"="+f.Condition)
		}
		slices.Sort(failed)
		return fmt.Sprintf("changed %s unchanged %s failed %v", a.Applied.Changed, a.Applied.Unchanged, failed)
	}
	return a.Type
}

// testHelperRequests: mod_roster_sidecar answers only components with the
// roster set privilege, checks the user, applies what it can of a request
// and names the items it refused.
func testHelperRequests(t *testing.T, e *Env) {
	const user = "proto_user"
	e.Users(t, user)
	owner := user + "@example.test"
	calls := `{
  {"c2s", "example.test", "` + owner + `", {}},
  {"component", "other.example.test", "` + owner + `", {}},
  {"component", "roster.example.test", "nobody@example.test", {}},
  {"component", "roster.example.test", "someone@elsewhere.test", {}},
  {"component", "roster.example.test", "example.test", {}},
  {"component", "roster.example.test", "` + owner + `", {
    {"gone@example.test", "remove"}, {"` + owner + `", "both"}, {"a@example.test/res", "both"},
    {"bad@@jid", "both"}, {"ok@example.test", "weird"}, {"ok@example.test", "both", "OK"}}},
  {"component", "roster.example.test", "` + owner + `", {{"ok@example.test", "both", "OK"}}},
}`
	lua := strings.ReplaceAll(strings.ReplaceAll(helperCalls, "CALLS", calls), "\n", " ")
	out := e.Server.ProsodyShell(t, lua)
	i := strings.Index(out, "Result: ")
	if i < 0 {
		t.Fatalf("shell output: %s", out)
	}
	raw := strings.Split(strings.TrimSpace(out[i+len("Result: "):]), " || ")
	want := []string{
		"error forbidden",
		"error forbidden",
		"error item-not-found",
		"error bad-request",
		"error bad-request",
		"changed 1 unchanged 0 failed [a@example.test/res=bad-request bad@@jid=jid-malformed gone@example.test=item-not-found ok@example.test=bad-request " + owner + "=not-allowed]",
		"changed 0 unchanged 1 failed []",
	}
	if len(raw) != len(want) {
		t.Fatalf("%d answers, want %d: %s", len(raw), len(want), out)
	}
	for i, r := range raw {
		var a helperAnswer
		if err := xml.Unmarshal([]byte(r), &a); err != nil {
			t.Errorf("answer %d: %v: %s", i, err, r)
			continue
		}
		if got := a.String(); got != want[i] {
			t.Errorf("answer %d = %s, want %s (%s)", i, got, want[i], r)
		}
	}
	c := Login(t, e.Server, user)
	if diff := DiffRoster([]harness.Contact{{JID: "ok@example.test", Name: "OK"}}, c.FetchRoster(t), true); diff != "" {
		t.Errorf("roster after the requests:\n%s", diff)
	}
}

// largeRoster is the size of testLargePopulate's roster.
const largeRoster = 2000

// testLargePopulate fills an online user's empty roster with largeRoster
// contacts in one refresh, and logs how long it took: with the helper one
// request (one roster load and save), without it one XEP-0356 write per
// item, each of which makes Prosody's mod_privilege load and save the whole
// roster. The only bound is sync.timeout on a stall of the writes (and the
// admin client's timeout on the refresh). It also logs when the client
// had every push and how long its roster fetch then took: after a batch the
// fetch waits behind the client's answers to the pushes, which Prosody's
// mod_limits reads at its c2s default of 10 KiB/s (the e2e overlay's
// limits = {} keeps that default).
func testLargePopulate(t *testing.T, e *Env) {
	const user = "large_pop"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	contacts := make([]harness.Contact, largeRoster)
	for i := range contacts {
		contacts[i] = harness.Contact{JID: fmt.Sprintf("bulk%04d@example.test", i), Name: fmt.Sprintf("Contact %d", i), Groups: []string{"Bulk"}}
	}
	e.Backend.SetRoster(user, contacts...)
	before := iqCounts(t, e)
	started := time.Now()
	r, raw := e.Admin.Refresh(t, user)
	expectCounts(t, r, user, largeRoster, 0, 0)
	pushed := waitForPushes(t, c, largeRoster, 3*pushWait)
	fetchStart := time.Now()
	c.WaitForRoster(t, contacts, 3*pushWait)
	t.Logf("%s: the client had every push %v after the refresh started; its roster fetch then took %v", e.Server.Name,
		pushed.Sub(started).Round(time.Millisecond), time.Since(fetchStart).Round(time.Millisecond))
	after := iqCounts(t, e)
	how := "per item, no helper"
	if e.Server.PresenceHelper {
		how = "through the helper"
	}
	t.Logf("%s: populated %d contacts %s in %v (%v per item; %d batch requests, %d roster SETs)", e.Server.Name, largeRoster, how,
		raw.Elapsed.Round(time.Millisecond), (raw.Elapsed / largeRoster).Round(time.Microsecond),
		after["batch"]-before["batch"], after["set"]-before["set"])
	if e.Server.PresenceHelper && (after["batch"]-before["batch"] < 1 || after["set"] != before["set"]) {
		t.Errorf("with the helper: %d batch requests and %d SETs, want batches only", after["batch"]-before["batch"], after["set"]-before["set"])
	}
	if !e.Server.PresenceHelper && (after["batch"] != before["batch"] || after["set"]-before["set"] != largeRoster) {
		t.Errorf("without the helper: %d batch requests and %d SETs, want %d SETs", after["batch"]-before["batch"], after["set"]-before["set"], largeRoster)
	}
}

// waitForPushes waits until c has received n roster pushes, and returns
// when.
func waitForPushes(t *testing.T, c *Client, n int, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.Pushes() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d roster pushes after %v, want %d", c.JID, c.Pushes(), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

// iqCounts reads the sidecar's IQ round trips by type from /metrics.
func iqCounts(t *testing.T, e *Env) map[string]int {
	t.Helper()
	reply := e.Admin.Do(t, http.MethodGet, "/metrics", nil)
	if reply.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", reply.Status)
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(reply.Body))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "roster_sidecar_iq_duration_seconds_count{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(value)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(labels, ",") {
			if typ, ok := strings.CutPrefix(l, `type="`); ok {
				counts[strings.TrimSuffix(typ, `"`)] += n
			}
		}
	}
	return counts
}
