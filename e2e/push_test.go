//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// hmacSecret is admin.hmac_secret of the sidecar of TestPushAndSignedCalls.
const hmacSecret = "e2e-hmac-secret-0123456789abcdef"

// TestPushAndSignedCalls runs push mode and signed calls against every
// server: TestPushAndSignedCalls/<server>/<scenario>. The sidecar has both
// a token and an HMAC secret, so either one suffices.
func TestPushAndSignedCalls(t *testing.T) {
	opts := sidecarOptions(mainPing)
	opts.Env = append(slices.Clone(opts.Env), "ROSTER_SIDECAR_ADMIN_HMAC_SECRET="+hmacSecret)
	runPerServer(t, servers{}, withSidecar(opts, pushScenarios))
}

var pushScenarios = []Scenario{
	{"push_without_fetch", testPushWithoutFetch},
	{"push_user_error", testPushUserError},
	{"signed_calls", testSignedCalls},
}

// requireNoFetch fails the test if the backend got a request for one of
// users. Push users have no script either: a fetch would fail them (404).
func requireNoFetch(t *testing.T, e *Env, users ...string) {
	t.Helper()
	for _, u := range users {
		if reqs := e.Backend.Requests(u); len(reqs) != 0 {
			t.Errorf("the backend got %d requests for %s: %+v", len(reqs), u, reqs)
		}
	}
}

// testPushWithoutFetch: rosters pushed for an online and an offline user
// reach both, with no request to the backend, changes and removals
// included; an identical push changes nothing; a refresh afterwards
// fetches the backend again, whose roster then wins.
func testPushWithoutFetch(t *testing.T, e *Env) {
	const online, offline = "pu_alice", "pu_bob"
	e.Users(t, online, offline)
	c := Login(t, e.Server, online)

	v1 := []harness.Contact{
		{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}},
		{JID: "Judy@Example.TEST", Name: "Judy", Groups: []string{"Work", "Friends"}},
		{JID: "ext@elsewhere.test", Groups: []string{"Remote"}, Subscription: "to"},
	}
	forBob := []harness.Contact{{JID: "kim@example.test", Name: "Kim"}}
	r, raw := e.Admin.Push(t, map[string][]harness.Contact{online: v1, offline: forBob})
	if r.Status != "ok" || r.Updated != 2 || r.Errors != 0 || len(r.Results) != 2 {
		t.Fatalf("want status ok, updated 2, errors 0; got %s", raw.Body)
	}
	expectCounts(t, r, online, len(v1), 0, 0)
	expectCounts(t, r, offline, 1, 0, 0)
	c.WaitForRoster(t, v1, pushWait)
	Login(t, e.Server, offline).WaitForRoster(t, forBob, 0)
	requireNoFetch(t, e, online, offline)

	v2 := []harness.Contact{
		{JID: "marie@example.test", Name: "Marie Curie", Groups: []string{"Friends"}},
		{JID: "judy@example.test", Name: "Judy", Groups: []string{"Work", "Friends"}},
	}
	r, _ = e.Admin.Push(t, map[string][]harness.Contact{online: v2})
	expectCounts(t, r, online, 0, 1, 1)
	c.WaitForRoster(t, v2, pushWait)

	n := c.Pushes()
	r, _ = e.Admin.Push(t, map[string][]harness.Contact{online: v2})
	expectCounts(t, r, online, 0, 0, 0)
	c.AssertRosterStays(t, n, v2, quiet)
	requireNoFetch(t, e, online, offline)

	// A refresh still asks the backend, and its answer wins.
	v3 := []harness.Contact{{JID: "lou@example.test", Name: "Lou"}}
	e.Backend.SetRoster(online, v3...)
	r = e.Admin.RefreshOK(t, online)
	expectCounts(t, r, online, 1, 0, 2)
	c.WaitForRoster(t, v3, pushWait)
	if n := len(e.Backend.Requests(online)); n != 1 {
		t.Errorf("the backend got %d requests for %s after one refresh, want 1", n, online)
	}
}

// testPushUserError: a user whose pushed roster is not a JSON object fails
// alone and keeps its roster; the other user of the push is applied.
func testPushUserError(t *testing.T, e *Env) {
	const bad, good = "pe_carol", "pe_dan"
	e.Users(t, bad, good)
	c := Login(t, e.Server, bad)
	v1 := []harness.Contact{{JID: "max@example.test", Name: "Max"}}
	e.Admin.Push(t, map[string][]harness.Contact{bad: v1})
	c.WaitForRoster(t, v1, pushWait)

	n := c.Pushes()
	forGood := []harness.Contact{{JID: "ned@example.test", Name: "Ned"}}
	raw := e.Admin.Do(t, http.MethodPost, "/roster_admin/push", map[string]json.RawMessage{
		bad:  json.RawMessage(`["max@example.test"]`),
		good: json.RawMessage(harness.EncodeRoster(forGood)),
	})
	if raw.Status != http.StatusOK {
		t.Fatalf("push: %d %s", raw.Status, raw.Body)
	}
	var r harness.RefreshResponse
	if err := json.Unmarshal([]byte(raw.Body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != "ok" || r.Updated != 1 || r.Errors != 1 {
		t.Errorf("want status ok, updated 1, errors 1; got %s", raw.Body)
	}
	if res := r.Result(t, bad); res.Status != "error" || !strings.Contains(res.Error, "is a JSON array, not an object") {
		t.Errorf("%s: %+v", bad, res)
	}
	expectCounts(t, r, good, 1, 0, 0)
	c.AssertRosterStays(t, n, v1, quiet)
	Login(t, e.Server, good).WaitForRoster(t, forGood, 0)
	requireNoFetch(t, e, bad, good)
}

// testSignedCalls: with a token and an HMAC secret configured, a signed
// request without the token is served, refresh and push alike; an
// unsigned one without the token, one signed with another secret, a
// replayed and a stale one are refused with 401 and change nothing.
func testSignedCalls(t *testing.T, e *Env) {
	const user = "sg_erin"
	e.Users(t, user)
	c := Login(t, e.Server, user)
	v1 := []harness.Contact{{JID: "uma@example.test", Name: "Uma"}}
	e.Backend.SetRoster(user, v1...)
	noToken := e.Admin.WithToken("")

	refused := func(what string, raw harness.AdminReply, msg string) {
		t.Helper()
		if raw.Status != http.StatusUnauthorized || !strings.Contains(raw.Body, `"status":"error"`) || !strings.Contains(raw.Body, msg) {
			t.Errorf("%s: want 401 with %q, got %d %s", what, msg, raw.Status, raw.Body)
		}
	}
	raw := noToken.RefreshRaw(t, user)
	refused("unsigned without a token", raw, "missing or invalid bearer token, and no request signature")
	if got := raw.Header.Values("WWW-Authenticate"); !slices.Equal(got, []string{"Bearer", "Roster-Sidecar-Signature"}) {
		t.Errorf("WWW-Authenticate %q", got)
	}
	refused("signed with another secret", noToken.WithSecret("another-secret-0123456789").RefreshRaw(t, user),
		"does not match the request")
	if n := len(e.Backend.Requests(user)); n != 0 {
		t.Fatalf("refused requests reached the backend %d times", n)
	}

	signed := noToken.WithSecret(hmacSecret)
	r, _ := signed.Refresh(t, user)
	expectCounts(t, r, user, 1, 0, 0)
	c.WaitForRoster(t, v1, pushWait)
	if n := len(e.Backend.Requests(user)); n != 1 {
		t.Errorf("the backend got %d requests for %s after one signed refresh, want 1", n, user)
	}

	// One signed request, sent twice: the second is a replay.
	path := "/roster_admin/refresh/" + user
	header := harness.SignHeader(hmacSecret, time.Now(), http.MethodPost, path, nil)
	if raw := noToken.DoRaw(t, http.MethodPost, path, nil, header); raw.Status != http.StatusOK {
		t.Errorf("signed one-user refresh: %d %s", raw.Status, raw.Body)
	}
	refused("replayed", noToken.DoRaw(t, http.MethodPost, path, nil, header), "a replay")
	stale := harness.SignHeader(hmacSecret, time.Now().Add(-10*time.Minute), http.MethodPost, path, nil)
	refused("stale", noToken.DoRaw(t, http.MethodPost, path, nil, stale), "in the past")
	if n := len(e.Backend.Requests(user)); n != 2 {
		t.Errorf("the backend got %d requests for %s, want 2 (the replay and the stale one refused)", n, user)
	}

	// A signed push, without the token.
	v2 := []harness.Contact{{JID: "vic@example.test", Name: "Vic", Groups: []string{"G"}}}
	r, _ = signed.Push(t, map[string][]harness.Contact{user: v2})
	expectCounts(t, r, user, 1, 0, 1)
	c.WaitForRoster(t, v2, pushWait)
	if n := len(e.Backend.Requests(user)); n != 2 {
		t.Errorf("the push reached the backend: %d requests for %s, want still 2", n, user)
	}
}
