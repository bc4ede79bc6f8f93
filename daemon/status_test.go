package daemon

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"roster-sidecar/admin"
	"roster-sidecar/component/componenttest"
)

// getJSON GETs path of the daemon's admin API and decodes its 200 answer.
func getJSON(t *testing.T, d *testDaemon, path string, v any) {
	t.Helper()
	resp, err := http.Get(d.url(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// GET /roster_admin/status reports serve's link as check would: the
// privileges, the helper and, once the privilege is gone, what to fix.
func TestStatusReportsTheLink(t *testing.T) {
	d := startDaemon(t, 1)
	var st admin.ServerStatus
	componenttest.WaitFor(t, "the helper looked for", func() bool {
		st = admin.ServerStatus{}
		getJSON(t, d, "/roster_admin/status", &st)
		return st.Link != nil && st.Link.Helper != admin.HelperUnknown
	})
	if !st.Ready || st.Reason != "" || st.Version != "test" || st.UserDomain != "example.test" ||
		st.Limits != (admin.Limits{MaxUsers: 100, MaxBodyBytes: 1 << 20, Concurrency: 8, RequestTimeoutSeconds: 60}) {
		t.Errorf("status = %+v", st)
	}
	want := admin.LinkStatus{
		Mode: admin.ModePrivilege, Address: d.xmpp.Addr(), Component: "roster.example.test", Connected: true,
		Privileges: []admin.DomainPrivileges{{Domain: "example.test", Roster: "both", Message: "outgoing", Presence: "managed_entity"}},
		Helper:     admin.HelperMissing, CompareSubscription: "auto",
	}
	if got := *st.Link; got.Mode != want.Mode || got.Address != want.Address || got.Component != want.Component || !got.Connected ||
		len(got.Privileges) != 1 || got.Privileges[0] != want.Privileges[0] || got.Helper != want.Helper ||
		got.CompareSubscription != want.CompareSubscription || got.Problem != nil || got.Error != "" {
		t.Errorf("link = %+v, want %+v", got, want)
	}

	d.xmpp.SetPrivilege(`<message from='example.test' to='roster.example.test'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/></privilege></message>`)
	d.xmpp.DropAll()
	componenttest.WaitFor(t, "the reconnection with roster=get", func() bool {
		st = admin.ServerStatus{}
		getJSON(t, d, "/roster_admin/status", &st)
		return !st.Ready && st.Link.Connected && len(st.Link.Privileges) == 1
	})
	if st.Reason == "" || st.Link.Privileges[0].Roster != "get" || st.Link.Problem == nil ||
		st.Link.Problem.What != "the server granted roster=get only on example.test (need get and set)" || !strings.Contains(st.Link.Problem.Fix, `set roster = "both"`) {
		t.Errorf("not ready: %+v, link %+v, problem %+v", st, st.Link, st.Link.Problem)
	}
	http.DefaultClient.CloseIdleConnections()
}

// POST /roster_admin/diff previews through serve's Syncer and writes
// nothing.
func TestDiffThroughServe(t *testing.T) {
	d := startDaemon(t, 2)
	d.xmpp.SetRoster("john@example.test", map[string]componenttest.Item{
		"c0@example.test":   {Name: "Old name", Subscription: "both", Groups: []string{"G"}},
		"gone@example.test": {Name: "Gone", Subscription: "both"},
	})
	resp, err := http.Post(d.url("/roster_admin/diff"), "application/json", strings.NewReader(`["john", "aaron"]`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a admin.DiffResponse
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("diff: %s %v", resp.Status, err)
	}
	if a.Status != "ok" || a.Changed != 2 || a.Errors != 0 || len(a.Results) != 2 {
		t.Fatalf("diff = %+v", a)
	}
	john := a.Results[0].Preview()
	if len(john.Add) != 1 || john.Add[0].JID != "c1@example.test" || len(john.Update) != 1 || john.Update[0].Have.Name != "Old name" ||
		john.Update[0].Want.Name != "Contact 0" || len(john.Remove) != 1 || john.Remove[0].JID != "gone@example.test" {
		t.Errorf("john: %+v", a.Results[0])
	}
	if aaron := a.Results[1]; aaron.User != "aaron" || len(aaron.Add) != 2 {
		t.Errorf("aaron: %+v", aaron)
	}
	if n := d.xmpp.Counts().Sets; n != 0 {
		t.Errorf("diff sent %d SETs", n)
	}
	http.DefaultClient.CloseIdleConnections()
}
