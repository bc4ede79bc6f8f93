//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"roster-sidecar/e2e/harness"
)

// The domains of TestDomains. The server hosts the default domain
// (harness.UserDomain) and otherDomain through the deploy files (Prosody:
// PROSODY_USER_DOMAINS, one privileged VirtualHost each; ejabberd: the
// XMPP_DOMAINS macro, one host each, mod_privilege on all), and both grant
// the sidecar the roster privilege. The sidecar serves those two and
// noprivDomain, which the server does not grant: on Prosody a VirtualHost
// without mod_privilege (e2e/testdata/prosody-domains.cfg.lua), on
// ejabberd a domain it does not host; either way no privilege message
// comes for it. unservedDomain is configured nowhere.
const (
	otherDomain    = "other.test"
	noprivDomain   = "nopriv.test"
	unservedDomain = "third.test"
)

// TestDomains runs one sidecar serving several user domains against every
// server: TestDomains/<server>/<scenario>. Users of the default domain are
// named by localpart, the others by bare JID. The main backend serves the
// default domain (and any domain without a URL of its own) at
// /roster/<localpart>@<domain>, through {domain} in http_roster_url; a
// second backend serves otherDomain at /roster/<localpart>, through
// backend.domain_urls.
func TestDomains(t *testing.T) {
	s := servers{start: harness.ServerOptions{
		Domains:        []string{otherDomain},
		ProsodyOverlay: harness.RepoFile(t, "e2e", "testdata", "prosody-domains.cfg.lua"),
		Env:            []string{"PROSODY_UNGRANTED_DOMAIN=" + noprivDomain},
	}}
	runPerServer(t, s, func(t *testing.T, e *Env) {
		d := &domainsEnv{Env: e, other: harness.NewBackend(t)}
		opts := sidecarOptions(mainPing)
		opts.Env = []string{
			// Login refreshes on: login_other_domain tests them. The other
			// scenarios refresh a user before it logs in, so that the login
			// is within sync.login_min_interval of a sync and fetches nothing.
			"ROSTER_SIDECAR_SYNC_ON_LOGIN=true",
			"ROSTER_SIDECAR_XMPP_USER_DOMAINS=" + strings.Join([]string{harness.UserDomain, otherDomain, noprivDomain}, ","),
			"ROSTER_SIDECAR_HTTP_ROSTER_URL=" + e.Backend.URL + harness.BackendPrefix + "%s@{domain}",
			`ROSTER_SIDECAR_BACKEND_DOMAIN_URLS={"` + otherDomain + `": "` + d.other.RosterURL() + `"}`,
		}
		e.StartSidecar(t, opts)
		var scenarios []Scenario
		for _, s := range domainScenarios {
			scenarios = append(scenarios, Scenario{s.name, func(t *testing.T, e *Env) { s.run(t, d) }})
		}
		e.run(t, scenarios)
	})
}

// domainsEnv is a TestDomains Env with the backend of otherDomain.
type domainsEnv struct {
	*Env
	other *harness.Backend
}

var domainScenarios = []struct {
	name string
	run  func(t *testing.T, d *domainsEnv)
}{
	{"ready_per_domain", testReadyPerDomain},
	{"refresh_both_domains", testRefreshBothDomains},
	{"bare_name_is_default_domain", testBareNameIsDefaultDomain},
	{"domain_not_configured", testDomainNotConfigured},
	{"domain_not_granted", testDomainNotGranted},
	{"push_other_domain", testPushOtherDomain},
	{"login_other_domain", testLoginOtherDomain},
}

// testReadyPerDomain: /readyz is 200 (the default domain is granted) and
// lists each domain; the privilege gauge says the same per domain.
func testReadyPerDomain(t *testing.T, d *domainsEnv) {
	raw := d.Admin.Do(t, http.MethodGet, "/readyz", nil)
	var ready struct {
		Status  string `json:"status"`
		Domains []struct {
			Domain  string `json:"domain"`
			Default bool   `json:"default"`
			Ready   bool   `json:"ready"`
			Error   string `json:"error"`
		} `json:"domains"`
	}
	if err := json.Unmarshal([]byte(raw.Body), &ready); err != nil || raw.Status != http.StatusOK || ready.Status != "ok" || len(ready.Domains) != 3 {
		t.Fatalf("/readyz: %d %s (%v)", raw.Status, raw.Body, err)
	}
	want := []string{harness.UserDomain + " default ready", otherDomain + " ready", noprivDomain}
	for i, dom := range ready.Domains {
		got := dom.Domain
		if dom.Default {
			got += " default"
		}
		if dom.Ready {
			got += " ready"
		}
		if got != want[i] {
			t.Errorf("/readyz domain %d: %q, want %q (%s)", i, got, want[i], raw.Body)
		}
	}
	if e := ready.Domains[2].Error; !strings.Contains(e, "roster privilege not granted") || !strings.Contains(e, noprivDomain) {
		t.Errorf("/readyz: the error of %s does not say its privilege is missing: %q", noprivDomain, e)
	}
	m := metricsOf(t, d.Env)
	for dom, want := range map[string]float64{harness.UserDomain: 1, otherDomain: 1, noprivDomain: 0} {
		series := `roster_sidecar_roster_privilege_granted{domain="` + dom + `"}`
		if v, ok := m[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

// testRefreshBothDomains: one refresh for users of both domains (the same
// localpart on each, and an offline user of the other domain) fetches
// each from its domain's backend URL and reaches each user's own roster;
// online clients on both domains get the changes pushed.
func testRefreshBothDomains(t *testing.T, d *domainsEnv) {
	const user, offline = "dm_alice", "dm_bob"
	d.Users(t, user)
	d.Server.CreateUsersOn(t, otherDomain, user, offline)
	mine := []harness.Contact{{JID: "marie@" + harness.UserDomain, Name: "Marie", Groups: []string{"Friends"}}}
	theirs := []harness.Contact{
		{JID: "nina@" + otherDomain, Name: "Nina", Groups: []string{"Team"}},
		{JID: user + "@" + harness.UserDomain, Name: "Alice on the default domain"},
	}
	forBob := []harness.Contact{{JID: "olga@" + otherDomain, Name: "Olga"}}
	d.Backend.SetRoster(user+"@"+harness.UserDomain, mine...)
	d.other.SetRoster(user, theirs...)
	d.other.SetRoster(offline, forBob...)
	other, bob := user+"@"+otherDomain, offline+"@"+otherDomain

	r := d.Admin.RefreshOK(t, user, other, bob)
	expectCounts(t, r, user, 1, 0, 0)
	expectCounts(t, r, other, 2, 0, 0)
	expectCounts(t, r, bob, 1, 0, 0)
	if got := resultUsers(r); !slices.Equal(got, []string{user, other, bob}) {
		t.Errorf("results name %q, want %q", got, []string{user, other, bob})
	}
	c := Login(t, d.Server, user)
	c.WaitForRoster(t, mine, 0)
	co := Login(t, d.Server, other)
	co.WaitForRoster(t, theirs, 0)
	Login(t, d.Server, bob).WaitForRoster(t, forBob, 0)

	// Changes reach the online clients of both domains.
	mine2 := append(slices.Clone(mine), harness.Contact{JID: "paul@" + harness.UserDomain, Name: "Paul"})
	theirs2 := theirs[:1]
	d.Backend.SetRoster(user+"@"+harness.UserDomain, mine2...)
	d.other.SetRoster(user, theirs2...)
	r = d.Admin.RefreshOK(t, user, other)
	expectCounts(t, r, user, 1, 0, 0)
	expectCounts(t, r, other, 0, 0, 1)
	c.WaitForRoster(t, mine2, pushWait)
	co.WaitForRoster(t, theirs2, pushWait)

	for backend, want := range map[*harness.Backend]map[string]int{
		d.Backend: {user + "@" + harness.UserDomain: 2},
		d.other:   {user: 2, offline: 1},
	} {
		for u, n := range want {
			if got := len(backend.Requests(u)); got != n {
				t.Errorf("the backend got %d requests for %s, want %d", got, u, n)
			}
		}
	}
}

// testBareNameIsDefaultDomain: a bare name, and the default domain spelt
// out, are the default domain's user; the other domain's user of the same
// localpart is not fetched.
func testBareNameIsDefaultDomain(t *testing.T, d *domainsEnv) {
	const user = "dm_carl"
	d.Users(t, user)
	d.Server.CreateUsersOn(t, otherDomain, user)
	want := []harness.Contact{{JID: "quinn@" + harness.UserDomain, Name: "Quinn"}}
	d.Backend.SetRoster(user+"@"+harness.UserDomain, want...)
	d.other.SetRoster(user, harness.Contact{JID: "never@" + otherDomain, Name: "Never"})

	r := d.Admin.RefreshOK(t, user)
	expectCounts(t, r, user, 1, 0, 0)
	// The default domain spelt out is the same user, named by localpart.
	r, raw := d.Admin.Refresh(t, user+"@"+strings.ToUpper(harness.UserDomain))
	if len(r.Results) != 1 || r.Results[0].User != user || r.Results[0].Status != "ok" {
		t.Errorf("refresh of %s@%s: %s", user, harness.UserDomain, raw.Body)
	}
	if n := len(d.other.Requests(user)); n != 0 {
		t.Errorf("the other domain's backend got %d requests for %s", n, user)
	}
	Login(t, d.Server, user).WaitForRoster(t, want, 0)
}

// testDomainNotConfigured: a user of a domain the sidecar does not serve
// fails alone, in results; the one-user route answers 400.
func testDomainNotConfigured(t *testing.T, d *domainsEnv) {
	const user = "dm_dora"
	d.Users(t, user)
	want := []harness.Contact{{JID: "rita@" + harness.UserDomain, Name: "Rita"}}
	d.Backend.SetRoster(user+"@"+harness.UserDomain, want...)
	stranger := "dm_sam@" + unservedDomain

	r, raw := d.Admin.Refresh(t, stranger, user)
	if r.Status != "ok" || r.Updated != 1 || r.Errors != 1 {
		t.Fatalf("want status ok, updated 1, errors 1; got %s", raw.Body)
	}
	expectCounts(t, r, user, 1, 0, 0)
	res := r.Result(t, stranger)
	if res.Status != "error" || !strings.Contains(res.Error, "domain "+unservedDomain+" is not served here") {
		t.Errorf("%s: %+v", stranger, res)
	}
	Login(t, d.Server, user).WaitForRoster(t, want, 0)
	if reqs := d.Backend.Requests(stranger); len(reqs) != 0 {
		t.Errorf("the backend got %d requests for %s", len(reqs), stranger)
	}
	one := d.Admin.Do(t, http.MethodPost, "/roster_admin/refresh/"+stranger, nil)
	if one.Status != http.StatusBadRequest || !strings.Contains(one.Body, "its domain is not one of the domains served here") {
		t.Errorf("one-user refresh of %s: %d %s", stranger, one.Status, one.Body)
	}
}

// testDomainNotGranted: a user of a domain the sidecar serves but the
// server did not grant fails alone, with an error saying so, and nothing
// is fetched for it.
func testDomainNotGranted(t *testing.T, d *domainsEnv) {
	const user = "dm_eli"
	d.Users(t, user)
	want := []harness.Contact{{JID: "sara@" + harness.UserDomain, Name: "Sara"}}
	d.Backend.SetRoster(user+"@"+harness.UserDomain, want...)
	ungranted := "dm_tom@" + noprivDomain
	d.Backend.SetRoster(ungranted, harness.Contact{JID: "x@" + noprivDomain})
	if d.Server.Kind == "prosody" {
		// The domain is hosted (registering fails on a host Prosody does
		// not serve): only the privilege is missing.
		d.Server.CreateUsersOn(t, noprivDomain, "dm_tom")
	}

	r, raw := d.Admin.Refresh(t, user, ungranted)
	if r.Status != "ok" || r.Updated != 1 || r.Errors != 1 {
		t.Fatalf("want status ok, updated 1, errors 1; got %s", raw.Body)
	}
	expectCounts(t, r, user, 1, 0, 0)
	res := r.Result(t, ungranted)
	if res.Status != "error" || !strings.Contains(res.Error, "roster privilege not granted") || !strings.Contains(res.Error, noprivDomain) {
		t.Errorf("%s: the error does not say the privilege is missing: %+v", ungranted, res)
	}
	if reqs := d.Backend.Requests(ungranted); len(reqs) != 0 {
		t.Errorf("the backend got %d requests for %s", len(reqs), ungranted)
	}
	Login(t, d.Server, user).WaitForRoster(t, want, 0)
	m := metricsOf(t, d.Env)
	if v := m[`roster_sidecar_user_syncs_total{domain="`+noprivDomain+`",result="error"}`]; v < 1 {
		t.Errorf("no failed sync counted for %s", noprivDomain)
	}
}

// testPushOtherDomain: a push names the other domain's user by bare JID;
// its roster reaches the online client without a fetch.
func testPushOtherDomain(t *testing.T, d *domainsEnv) {
	const user = "dm_fay"
	d.Server.CreateUsersOn(t, otherDomain, user)
	other := user + "@" + otherDomain
	seed := []harness.Contact{{JID: "uma@" + otherDomain, Name: "Uma"}}
	r, raw := d.Admin.Push(t, map[string][]harness.Contact{other: seed})
	if r.Status != "ok" || r.Updated != 1 {
		t.Fatalf("push: %s", raw.Body)
	}
	c := Login(t, d.Server, other)
	c.WaitForRoster(t, seed, 0)
	pushed := []harness.Contact{{JID: "uma@" + otherDomain, Name: "Uma U.", Groups: []string{"Team"}}}
	r, _ = d.Admin.Push(t, map[string][]harness.Contact{other: pushed})
	expectCounts(t, r, other, 0, 1, 0)
	c.WaitForRoster(t, pushed, pushWait)
	if n := len(d.other.Requests(user)); n != 0 {
		t.Errorf("the other domain's backend got %d requests for %s", n, user)
	}
}

// testLoginOtherDomain: a user of the other domain that was never synced
// logs in; the presence the server forwards for that domain makes the
// sidecar refresh it from its backend within seconds.
func testLoginOtherDomain(t *testing.T, d *domainsEnv) {
	const user = "dm_gus"
	d.Server.CreateUsersOn(t, otherDomain, user)
	want := []harness.Contact{{JID: "vera@" + otherDomain, Name: "Vera"}}
	d.other.SetRoster(user, want...)
	c := Login(t, d.Server, user+"@"+otherDomain)
	c.WaitForRoster(t, want, loginWait)
	waitRequests(t, d.other, user, 1)
}

// resultUsers returns the users of r's results, in order.
func resultUsers(r harness.RefreshResponse) []string {
	var out []string
	for _, res := range r.Results {
		out = append(out, res.User)
	}
	return out
}
