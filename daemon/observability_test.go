package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
)

// scrape returns the samples of /metrics by series, e.g.
// `roster_sidecar_user_syncs_total{domain="example.test",result="ok"}` -> 2.
func scrape(t *testing.T, d *testDaemon) map[string]float64 {
	t.Helper()
	resp, err := http.Get(d.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
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
		samples[line[:i]] = v
	}
	return samples
}

// backendWithBad answers three valid contacts and one invalid one for every
// user, and 500 for the user "bad".
func backendWithBad(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/bad") {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	roster := contactsRoster(3)
	roster["not a jid"] = map[string]any{}
	_ = json.NewEncoder(w).Encode(roster)
}

func TestMetricsCountWhatHappened(t *testing.T) {
	d := startDaemonWith(t, backendWithBad, nil, nil)
	code, a, err := d.refresh(http.DefaultClient, "john", "aaron", "bad")
	if err != nil || code != 200 || a.Updated != 2 || a.Errors != 1 {
		t.Fatalf("refresh = %d %+v %v", code, a, err)
	}
	resp, err := http.Get(d.url("/roster_admin/refresh/john")) // nothing left to change
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("refresh john: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Post(d.url("/roster_admin/refresh"), "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad refresh: %v %v", resp, err)
	}
	resp.Body.Close()

	counts := d.xmpp.Counts()
	m := scrape(t, d)
	want := map[string]float64{
		`roster_sidecar_refresh_requests_total{code="200",route="/roster_admin/refresh"}`:       1,
		`roster_sidecar_refresh_requests_total{code="400",route="/roster_admin/refresh"}`:       1,
		`roster_sidecar_refresh_requests_total{code="200",route="/roster_admin/refresh/:user"}`: 1,
		`roster_sidecar_refresh_request_duration_seconds_count{route="/roster_admin/refresh"}`:  2,
		`roster_sidecar_user_syncs_total{domain="example.test",result="ok"}`:                    3,
		`roster_sidecar_user_syncs_total{domain="example.test",result="error"}`:                 1,
		`roster_sidecar_user_sync_duration_seconds_count`:                                       4,
		`roster_sidecar_roster_items_changed_total{op="added"}`:                                 6,
		`roster_sidecar_roster_items_changed_total{op="updated"}`:                               0,
		`roster_sidecar_roster_items_changed_total{op="removed"}`:                               0,
		`roster_sidecar_skipped_contacts_total`:                                                 3,
		`roster_sidecar_iq_duration_seconds_count{outcome="result",type="set"}`:                 float64(counts.Sets),
		`roster_sidecar_iq_duration_seconds_count{outcome="result",type="get"}`:                 float64(counts.Gets),
		`roster_sidecar_backend_request_duration_seconds_count{class="2xx"}`:                    3,
		`roster_sidecar_backend_request_duration_seconds_count{class="5xx"}`:                    1,
		`roster_sidecar_xmpp_connected`:                                                         1,
		`roster_sidecar_roster_privilege_granted{domain="example.test"}`:                        1,
		`roster_sidecar_syncs_in_flight`:                                                        0,
		`roster_sidecar_xmpp_reconnects_total`:                                                  0,
	}
	for series, v := range want {
		got, ok := m[series]
		if !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	if counts.Sets != 6 || counts.Gets < 3 {
		t.Errorf("fake server saw %+v, want 6 SETs and at least 3 GETs", counts)
	}
	for _, series := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := m[series]; !ok {
			t.Errorf("%s missing: Go and process collectors not registered", series)
		}
	}

	// A dropped link is counted as a reconnect, and the gauges follow.
	d.xmpp.DropAll()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = scrape(t, d)
		if m[`roster_sidecar_xmpp_reconnects_total`] >= 1 && m[`roster_sidecar_xmpp_connected`] == 1 &&
			m[`roster_sidecar_roster_privilege_granted{domain="example.test"}`] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a dropped link: reconnects %v, connected %v", m[`roster_sidecar_xmpp_reconnects_total`], m[`roster_sidecar_xmpp_connected`])
		}
		time.Sleep(20 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestLogsHoldNoSecret runs refreshes with every secret set, logging at
// debug level in both formats, and looks for the secrets in the output.
func TestLogsHoldNoSecret(t *testing.T) {
	const (
		token      = "admin-token-4b1d"
		backendKey = "backend-key-9f3e"
		urlKey     = "url-key-77aa"
	)
	secrets := []string{token, backendKey, urlKey, componenttest.Secret}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var logs bytes.Buffer // slog handlers serialise their writes; read after serve returned
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			var h slog.Handler = slog.NewTextHandler(&logs, opts)
			if format == "json" {
				h = slog.NewJSONHandler(&logs, opts)
			}
			var sawHeader bool
			var mu sync.Mutex
			d := startDaemonWith(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				sawHeader = sawHeader || r.Header.Get("Authorization") == "Bearer "+backendKey
				mu.Unlock()
				if r.URL.Query().Get("key") != urlKey {
					http.Error(w, "no key", http.StatusForbidden)
					return
				}
				backendWithBad(w, r)
			}, func(c *Config) {
				c.AdminToken = token
				c.BackendHeaders = map[string]string{"Authorization": "Bearer " + backendKey}
				c.RosterURL += "?key=" + urlKey
			}, slog.New(h))

			post := func(auth, body string) int {
				req, _ := http.NewRequest(http.MethodPost, d.url("/roster_admin/refresh"), strings.NewReader(body))
				req.Header.Set("Authorization", auth)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			if code := post("Bearer "+token, `["john","bad"]`); code != 200 {
				t.Fatalf("refresh: %d", code)
			}
			if code := post("Bearer wrong-"+token, `["john"]`); code != 401 {
				t.Fatalf("refresh with a wrong token: %d", code)
			}
			if code := post("Bearer "+token, `["john", 1]`); code != 400 {
				t.Fatalf("bad refresh: %d", code)
			}
			d.shutdown(t)
			http.DefaultClient.CloseIdleConnections()

			out := logs.String()
			mu.Lock()
			defer mu.Unlock()
			if !sawHeader {
				t.Error("the backend never got the Authorization header")
			}
			for _, want := range []string{"admin: roster refresh", "user sync", "roster refresh failed", "connected to XMPP server"} {
				if !strings.Contains(out, want) {
					t.Errorf("logs lack %q:\n%s", want, out)
				}
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("logs contain the secret %q:\n%s", s, out)
				}
			}
		})
	}
}
