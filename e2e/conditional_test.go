//go:build e2e

package e2e

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// reconcileShort is sync.reconcile_interval in conditional_outside_change:
// long enough for a refresh right after another to fall within it on a
// busy machine, short enough to wait for.
const reconcileShort = 6 * time.Second

// TestConditional runs the conditional fetch scenarios against every
// server: TestConditional/<server>/<scenario>. The backend sends ETag and
// Last-Modified and answers 304 (docs/PROTOCOL.md, "Conditional
// requests"); each scenario starts a sidecar with its own
// sync.reconcile_interval.
func TestConditional(t *testing.T) {
	runPerServer(t, servers{}, func(t *testing.T, e *Env) { e.run(t, conditionalScenarios) })
}

var conditionalScenarios = []Scenario{
	{"conditional_fetch", testConditionalFetch},
	{"conditional_versioned_read", testConditionalVersionedRead},
	{"conditional_outside_change", testConditionalOutsideChange},
	{"no_rewrite_after_restart", testNoRewriteAfterRestart},
}

// restartSidecar stops e's sidecar, if any, and starts one with the
// scenario settings plus env, which stops when t ends; its output is
// logged if t fails.
func restartSidecar(t *testing.T, e *Env, env ...string) *harness.Sidecar {
	t.Helper()
	if e.Sidecar != nil {
		e.Sidecar.Stop(10 * time.Second)
	}
	opts := sidecarOptions(mainPing)
	opts.Env = append(opts.Env, env...)
	sc := e.StartSidecar(t, opts)
	t.Cleanup(func() { e.Sidecar, e.Admin = nil, nil })
	logOnFailure(t, sc.Process)
	return sc
}

// metricsOf scrapes the sidecar's /metrics: series -> value.
func metricsOf(t testing.TB, e *Env) map[string]float64 {
	t.Helper()
	raw := e.Admin.Do(t, http.MethodGet, "/metrics", nil)
	if raw.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", raw.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(raw.Body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// Series the scenarios count.
const (
	readsFull      = `roster_sidecar_server_roster_reads_total{read="full"}`
	readsUnchanged = `roster_sidecar_server_roster_reads_total{read="unchanged"}`
	readsSkipped   = `roster_sidecar_server_roster_reads_total{read="skipped"}`
	notModified    = `roster_sidecar_backend_conditional_fetches_total{outcome="not_modified"}`
	iqGets         = `roster_sidecar_iq_duration_seconds_count{outcome="result",type="get"}`
	iqSets         = `roster_sidecar_iq_duration_seconds_count{outcome="result",type="set"}`
)

// expectDelta checks how much each series grew from before to after.
func expectDelta(t testing.TB, before, after map[string]float64, want map[string]float64) {
	t.Helper()
	for series, d := range want {
		if got := after[series] - before[series]; got != d {
			t.Errorf("%s grew by %v, want %v", series, got, d)
		}
	}
}

// expectFetches checks the backend requests for user since the first n:
// their statuses, and whether each sent the validators.
func expectFetches(t testing.TB, e *Env, user string, n int, want ...string) {
	t.Helper()
	reqs := e.Backend.Requests(user)[n:]
	var got []string
	for _, r := range reqs {
		s := strconv.Itoa(r.Status)
		if r.IfNoneMatch != "" {
			s = "conditional " + s
		}
		got = append(got, s)
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("backend requests for %s: %q, want %q", user, got, want)
	}
}

// testConditionalFetch: with the default sync.reconcile_interval (1h), a
// refresh of a user whose roster changed nowhere costs one fetch answered
// 304, no roster read and no SET, and pushes nothing; a change at the
// backend is still applied by the next refresh.
func testConditionalFetch(t *testing.T, e *Env) {
	restartSidecar(t, e)
	const user = "cf_alice"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	contacts := []harness.Contact{
		{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}},
		{JID: "paul@example.test", Name: "Paul"},
	}
	e.Backend.SetRosterConditional(user, contacts...)
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 2, 0, 0)
	c.WaitForRoster(t, contacts, pushWait)
	expectFetches(t, e, user, 0, "200")

	before, pushes := metricsOf(t, e), c.Pushes()
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 0, 0)
	expectFetches(t, e, user, 1, "conditional 304")
	expectDelta(t, before, metricsOf(t, e), map[string]float64{
		notModified: 1, readsSkipped: 1, readsFull: 0, readsUnchanged: 0, iqGets: 0, iqSets: 0,
	})
	c.AssertRosterStays(t, pushes, contacts, quiet)

	changed := []harness.Contact{
		{JID: "marie@example.test", Name: "Marie Curie", Groups: []string{"Friends"}},
		{JID: "paul@example.test", Name: "Paul"},
	}
	e.Backend.SetRosterConditional(user, changed...)
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 1, 0)
	expectFetches(t, e, user, 2, "conditional 200")
	c.WaitForRoster(t, changed, pushWait)
}

// testConditionalVersionedRead: with sync.reconcile_interval 0 a 304 never
// skips a read. On ejabberd (mod_roster versioning, as shipped), once a
// full read has found the roster in line, a refresh with nothing to do is
// a 304 and a versioned roster GET answered empty; an outside change is
// seen by that GET and reverted at once, the backend asked again without
// validators. On Prosody, whose mod_privilege ignores roster versions, a
// 304 could not end a sync: the fetch is never conditional and every
// refresh reads in full, which reverts the change too.
func testConditionalVersionedRead(t *testing.T, e *Env) {
	restartSidecar(t, e, "ROSTER_SIDECAR_SYNC_RECONCILE_INTERVAL=0")
	const user = "cv_bob"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	contacts := []harness.Contact{
		{JID: "ann@example.test", Name: "Ann", Groups: []string{"G"}},
		{JID: "ben@example.test", Name: "Ben"},
	}
	e.Backend.SetRosterConditional(user, contacts...)
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 2, 0, 0)
	c.WaitForRoster(t, contacts, pushWait)
	// The first refresh wrote, so the version it read is stale: this one
	// reads in full (and learns the version on ejabberd).
	before := metricsOf(t, e)
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 0, 0)
	expectFetches(t, e, user, 1, "200")
	expectDelta(t, before, metricsOf(t, e), map[string]float64{readsFull: 1, iqSets: 0})

	versioned := e.Server.Name == "ejabberd"
	before, pushes := metricsOf(t, e), c.Pushes()
	for range 2 {
		expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 0, 0)
	}
	if versioned {
		expectFetches(t, e, user, 2, "conditional 304", "conditional 304")
		expectDelta(t, before, metricsOf(t, e), map[string]float64{
			notModified: 2, readsUnchanged: 2, readsFull: 0, readsSkipped: 0, iqGets: 2, iqSets: 0,
		})
	} else {
		expectFetches(t, e, user, 2, "200", "200")
		expectDelta(t, before, metricsOf(t, e), map[string]float64{
			notModified: 0, readsUnchanged: 0, readsFull: 2, readsSkipped: 0, iqGets: 2, iqSets: 0,
		})
	}
	c.AssertRosterStays(t, pushes, contacts, quiet)

	// Changed behind the sidecar's back: reverted by the next refresh.
	injectRoster(t, e.Server, user, harness.Contact{JID: "stray@example.test", Name: "Stray"})
	injectRoster(t, e.Server, user, harness.Contact{JID: "ann@example.test", Name: "Not Ann"})
	c.WaitForRoster(t, []harness.Contact{{JID: "ann@example.test", Name: "Not Ann"}, contacts[1], {JID: "stray@example.test", Name: "Stray"}}, pushWait)
	n := len(e.Backend.Requests(user))
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 1, 1)
	if versioned {
		expectFetches(t, e, user, n, "conditional 304", "200")
	} else {
		expectFetches(t, e, user, n, "200")
	}
	c.WaitForRoster(t, contacts, pushWait)
}

// testConditionalOutsideChange: with a short sync.reconcile_interval, a
// change made behind the sidecar's back right after a sync that wrote
// survives a refresh answered 304 within the interval (no versioned read
// can see it then, on either server), and the first refresh after the
// interval reads in full and reverts it.
func testConditionalOutsideChange(t *testing.T, e *Env) {
	restartSidecar(t, e, "ROSTER_SIDECAR_SYNC_RECONCILE_INTERVAL="+reconcileShort.String())
	const user = "co_carl"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{
		{JID: "ann@example.test", Name: "Ann", Groups: []string{"G"}},
		{JID: "ben@example.test", Name: "Ben"},
	}
	e.Backend.SetRosterConditional(user, v1...)
	start := time.Now()
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 2, 0, 0)
	populated := time.Now() // the full read was before this
	c.WaitForRoster(t, v1, pushWait)

	injectRoster(t, e.Server, user, harness.Contact{JID: "stray@example.test", Name: "Stray"})
	injectRoster(t, e.Server, user, harness.Contact{JID: "ann@example.test", Name: "Not Ann", Groups: []string{"Other"}})
	changed := []harness.Contact{
		{JID: "ann@example.test", Name: "Not Ann", Groups: []string{"Other"}},
		{JID: "ben@example.test", Name: "Ben"},
		{JID: "stray@example.test", Name: "Stray"},
	}
	c.WaitForRoster(t, changed, pushWait)

	n := len(e.Backend.Requests(user))
	before := metricsOf(t, e)
	refreshed := time.Now()
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 0, 0)
	if refreshed.Sub(start) < reconcileShort {
		// Within the interval of the full read: skipped.
		expectFetches(t, e, user, n, "conditional 304")
		expectDelta(t, before, metricsOf(t, e), map[string]float64{readsSkipped: 1, readsFull: 0, iqGets: 0, iqSets: 0})
		if diff := DiffRoster(changed, c.FetchRoster(t), false); diff != "" {
			t.Errorf("the outside change did not survive a refresh within sync.reconcile_interval:\n%s", diff)
		}
	} else {
		t.Logf("the refresh started %v after the first: too late to check that it skips the read", refreshed.Sub(start))
	}

	// The first refresh after the interval reads in full and reverts it.
	time.Sleep(time.Until(populated.Add(reconcileShort + 100*time.Millisecond)))
	n = len(e.Backend.Requests(user))
	before = metricsOf(t, e)
	expectCounts(t, e.Admin.RefreshOK(t, user), user, 0, 1, 1)
	expectFetches(t, e, user, n, "200")
	expectDelta(t, before, metricsOf(t, e), map[string]float64{readsFull: 1, readsSkipped: 0})
	c.WaitForRoster(t, v1, pushWait)
}

// testNoRewriteAfterRestart: right after a (re)start the sidecar does not
// know whether the server keeps subscriptions. Items that differ only in
// subscription are then not written blindly: on ejabberd, which does not
// keep them, at most one item is written (to learn it) however many users
// are refreshed at once, and no other is pushed to the clients; on Prosody
// the subscription changes are applied in the same refresh.
func testNoRewriteAfterRestart(t *testing.T, e *Env) {
	restartSidecar(t, e)
	users := []string{"nr_1", "nr_2", "nr_3", "nr_4"}
	e.Users(t, users...)
	contacts := func(sub string) []harness.Contact {
		return []harness.Contact{
			{JID: "ann@example.test", Name: "Ann", Subscription: sub},
			{JID: "ben@example.test", Name: "Ben", Groups: []string{"G"}, Subscription: sub},
		}
	}
	for _, u := range users {
		e.Backend.SetRoster(u, contacts("both")...)
	}
	e.Admin.RefreshOK(t, users...)
	c := Login(t, e.Server, users[0])
	c.WaitForRoster(t, contacts("both"), pushWait)

	restartSidecar(t, e)
	for _, u := range users {
		e.Backend.SetRoster(u, contacts("to")...)
	}
	pushes := c.Pushes()
	r := e.Admin.RefreshOK(t, users...)
	updated := 0
	for _, u := range users {
		updated += r.Result(t, u).Updated
	}
	if e.Server.HonoursSubscription {
		if updated != 2*len(users) {
			t.Errorf("Prosody: %d items updated, want every subscription change (%d)", updated, 2*len(users))
		}
		c.WaitForRoster(t, contacts("to"), pushWait)
	} else {
		if updated > 1 {
			t.Errorf("ejabberd: %d items rewritten after a restart, want at most 1 (the one that learns)", updated)
		}
		time.Sleep(quiet)
		if extra := c.PushesSince(pushes); len(extra) > updated {
			t.Errorf("ejabberd: %d pushes for %d writes: %s", len(extra), updated, formatItems(extra))
		}
	}
	r = e.Admin.RefreshOK(t, users...)
	for _, u := range users {
		expectCounts(t, r, u, 0, 0, 0)
	}
}
