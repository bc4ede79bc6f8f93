package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
)

// privilegeFor is componenttest.PrivilegeBoth for domain.
func privilegeFor(domain string) string {
	return strings.Replace(componenttest.PrivilegeBoth, "from='example.test'", "from='"+domain+"'", 1)
}

type readyAnswer struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Domains []struct {
		Domain  string `json:"domain"`
		Default bool   `json:"default"`
		Ready   bool   `json:"ready"`
		Error   string `json:"error"`
	} `json:"domains"`
}

func getReady(t *testing.T, d *testDaemon) (int, readyAnswer) {
	t.Helper()
	resp, err := http.Get(d.url("/readyz"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a readyAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, a
}

// One daemon serves example.test (the default), other.test (its own
// backend URL) and nopriv.test (no privilege from the server); the
// backend URL carries the domain.
func TestServeSeveralDomains(t *testing.T) {
	var mu sync.Mutex
	var fetched []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, "other "+r.URL.Path)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"c1@other.test": {"name": "C1"}}`))
	}))
	defer other.Close()
	d := startDaemonWith(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, "main "+r.URL.Path)
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(contactsRoster(2))
	}, func(c *Config) {
		c.UserDomains = []string{"example.test", "other.test", "nopriv.test"}
		c.RosterURL = strings.Replace(c.RosterURL, "/roster/%s", "/roster/{domain}/%s", 1)
		c.BackendDomainURLs = map[string]string{"other.test": other.URL + "/users/%s"}
	}, nil)

	// Ready on the default domain alone; the others are listed.
	code, ready := getReady(t, d)
	if code != http.StatusOK || len(ready.Domains) != 3 || !ready.Domains[0].Default || !ready.Domains[0].Ready ||
		ready.Domains[1].Ready || ready.Domains[2].Ready || !strings.Contains(ready.Domains[2].Error, "nopriv.test") {
		t.Fatalf("readyz %d %+v", code, ready)
	}
	// The server grants other.test too from the next connection.
	d.xmpp.SetPrivilege(componenttest.PrivilegeBoth + privilegeFor("other.test"))
	d.xmpp.DropAll()
	componenttest.WaitFor(t, "other.test ready", func() bool {
		code, ready = getReady(t, d)
		return code == http.StatusOK && ready.Domains[1].Ready
	})
	m := scrape(t, d)
	for series, want := range map[string]float64{
		`roster_sidecar_roster_privilege_granted{domain="example.test"}`: 1,
		`roster_sidecar_roster_privilege_granted{domain="other.test"}`:   1,
		`roster_sidecar_roster_privilege_granted{domain="nopriv.test"}`:  0,
	} {
		if v, ok := m[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}

	resp, err := http.Post(d.url("/roster_admin/refresh"), "application/json",
		strings.NewReader(`["john", "john@other.test", "x@nopriv.test", "y@third.test"]`))
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		refreshAnswer
		Results []struct{ User, Status, Error string } `json:"results"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || ans.Updated != 2 || ans.Errors != 2 || len(ans.Results) != 4 {
		t.Fatalf("refresh: %d %+v %v", resp.StatusCode, ans, err)
	}
	for i, want := range []struct{ user, status, err string }{
		{"john", "ok", ""},
		{"john@other.test", "ok", ""},
		{"x@nopriv.test", "error", "roster privilege not granted: the server sent no privilege for nopriv.test"},
		{"y@third.test", "error", "domain third.test is not served here (user domains: example.test, other.test, nopriv.test)"},
	} {
		r := ans.Results[i]
		if r.User != want.user || r.Status != want.status || !strings.Contains(r.Error, want.err) {
			t.Errorf("result %d = %+v, want %+v", i, r, want)
		}
	}
	mu.Lock()
	got := slices.Clone(fetched)
	mu.Unlock()
	slices.Sort(got)
	if want := []string{"main /roster/example.test/john", "other /users/john"}; !slices.Equal(got, want) {
		t.Errorf("backend requests %q, want %q", got, want)
	}
	if got := d.xmpp.Roster("john@other.test"); len(got) != 1 {
		t.Errorf("roster of john@other.test on the server: %q", got)
	}
	if got := d.xmpp.Roster("john@example.test"); len(got) != 2 {
		t.Errorf("roster of john@example.test on the server: %q", got)
	}
	m = scrape(t, d)
	for series, want := range map[string]float64{
		`roster_sidecar_user_syncs_total{domain="example.test",result="ok"}`:   1,
		`roster_sidecar_user_syncs_total{domain="other.test",result="ok"}`:     1,
		`roster_sidecar_user_syncs_total{domain="nopriv.test",result="error"}`: 1,
	} {
		if v, ok := m[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	for series := range m {
		if strings.Contains(series, "third.test") {
			t.Errorf("a series for a domain not served: %s", series)
		}
	}
}

// WaitReady waits a little for the other domains' privileges, and returns
// once the default domain is ready even when one never comes.
func TestWaitReadySeveralDomains(t *testing.T) {
	srv := componenttest.NewServer(t)
	cfg := Config{
		XMPPAddress: srv.Addr(), XMPPDomain: componenttest.Domain, XMPPSecret: componenttest.Secret,
		UserDomain: "example.test", UserDomains: []string{"example.test", "nopriv.test"},
		ConnectTimeout: time.Second, IQTimeout: time.Second, PrivilegeWait: 300 * time.Millisecond,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond, Window: 4, CompareSub: "auto",
		RosterURL: "http://127.0.0.1:1/%s", BackendTimeout: time.Second, BackendMaxBody: 1 << 20, SyncTimeout: time.Second,
	}
	p, err := Build(cfg, slog.New(slog.DiscardHandler), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	if err := p.WaitReady(ctx, 5*time.Second); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("WaitReady returned after %s, before waiting for nopriv.test", waited)
	}
	ready := p.Syncer.ReadyDomains()
	if len(ready) != 2 || ready[0].Err != nil || ready[1].Err == nil {
		t.Fatalf("ReadyDomains() = %+v", ready)
	}
	problem := p.DomainProblem("nopriv.test")
	if !strings.Contains(problem.What, "privileges only for example.test, not for the user domain nopriv.test") ||
		!strings.Contains(problem.Fix, "remove it from xmpp.user_domains") {
		t.Errorf("DomainProblem(nopriv.test) = %+v", problem)
	}
}
