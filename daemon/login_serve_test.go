package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"roster-sidecar/component/componenttest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func metricsText(t *testing.T, d *testDaemon) string {
	t.Helper()
	resp, err := http.Get(d.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A new session seen in the presence the server forwards refreshes that
// user once; another session soon after does not.
func TestServeRefreshesAtLogin(t *testing.T) {
	d := startDaemonWith(t, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(2))
	}, func(c *Config) {
		c.OnLogin, c.LoginMinInterval, c.LoginRate, c.LoginQueue = true, time.Minute, 100, 10
	}, nil)
	want := []string{"c0@example.test|Contact 0|both|G", "c1@example.test|Contact 1|both|G"}
	d.xmpp.SendPresence("alice@example.test/phone", "")
	componenttest.WaitFor(t, "alice's roster", func() bool { return slices.Equal(d.xmpp.Roster("alice@example.test"), want) })
	d.xmpp.SendPresence("alice@example.test/laptop", "")
	componenttest.WaitFor(t, "the second login counted", func() bool {
		return strings.Contains(metricsText(t, d), `roster_sidecar_login_refreshes_total{outcome="recent"} 1`)
	})
	if n := d.fetches.Load(); n != 1 {
		t.Fatalf("%d backend fetches, want 1", n)
	}
	if m := metricsText(t, d); !strings.Contains(m, `roster_sidecar_login_refreshes_total{outcome="ok"} 1`) {
		t.Fatalf("metrics lack the login refresh:\n%s", m)
	}
	http.DefaultClient.CloseIdleConnections()
}

// With sync.on_login false, presence changes nothing.
func TestServeLoginRefreshOff(t *testing.T) {
	d := startDaemonWith(t, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(1))
	}, func(c *Config) { c.OnLogin = false }, nil)
	d.xmpp.SendPresence("alice@example.test/phone", "")
	time.Sleep(200 * time.Millisecond)
	if n := d.fetches.Load(); n != 0 {
		t.Fatalf("%d backend fetches", n)
	}
}

// In ejabberd API mode the rosters go through the HTTP API; the component
// link only serves readiness and presence.
func TestServeEjabberdAPIMode(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "roster-sidecar@example.test" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		calls = append(calls, strings.TrimPrefix(r.URL.Path, "/api/"))
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/get_roster") {
			_, _ = io.WriteString(w, `[{"jid":"old@example.test","nick":"","subscription":"both","pending":"none","groups":[]}]`)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/user_resources") {
			_, _ = io.WriteString(w, `["phone"]`)
			return
		}
		_, _ = io.WriteString(w, "0")
	}))
	defer api.Close()
	d := startDaemonWith(t, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(1))
	}, func(c *Config) {
		c.EjabberdAPIURL, c.EjabberdAPIUser, c.EjabberdAPIPass, c.EjabberdAPITime = api.URL+"/api", "roster-sidecar@example.test", "pw", time.Second
	}, nil)
	code, a, err := d.refresh(http.DefaultClient, "alice")
	if err != nil || code != 200 || a.Updated != 1 {
		t.Fatalf("refresh = %d %+v %v", code, a, err)
	}
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	last := got[len(got)-1]
	slices.Sort(got)
	// get, add c0, the removal of old (clear its subscription, delete),
	// and after the writes, alice being online, a presence probe of c0,
	// whose item gained "to".
	if want := []string{"add_rosteritem", "add_rosteritem", "delete_rosteritem", "get_roster", "send_stanza", "user_resources"}; !slices.Equal(got, want) {
		t.Fatalf("API calls = %v, want %v", got, want)
	}
	if last != "send_stanza" {
		t.Fatalf("the probe was not the last call: %v", calls)
	}
	if m := metricsText(t, d); !strings.Contains(m, `roster_sidecar_presence_probes_total{outcome="sent"} 1`) {
		t.Fatalf("metrics lack the probe:\n%s", m)
	}
	if c := d.xmpp.Counts(); c.Sets != 0 || c.Gets != 0 {
		t.Fatalf("roster IQs sent in API mode: %+v", c)
	}
	http.DefaultClient.CloseIdleConnections()
}
