package daemon

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// etagBackend answers every user three contacts with an ETag, and 304 to
// a request that sends it back.
func etagBackend(w http.ResponseWriter, r *http.Request) {
	const etag = `"roster-v1"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_ = json.NewEncoder(w).Encode(contactsRoster(3))
}

// The settings reach the backend client and the Syncer: the second refresh
// gets a 304 and skips the sync (no read, no write), and the metrics say
// so; with backend.conditional_cache 0 every refresh fetches and reads.
func TestConditionalRefreshMetrics(t *testing.T) {
	d := startDaemonWith(t, etagBackend, func(c *Config) {
		c.BackendConditional, c.ReconcileInterval = 100, time.Hour
	}, nil)
	for range 2 {
		if code, a, err := d.refresh(http.DefaultClient, "john"); err != nil || code != 200 || a.Updated != 1 {
			t.Fatalf("refresh = %d %+v %v", code, a, err)
		}
	}
	// The first refresh reads the roster and reads it back once to learn
	// how the server stores subscriptions; the second reads nothing.
	counts := d.xmpp.Counts()
	if counts.Gets != 2 || counts.Sets != 3 || d.fetches.Load() != 2 {
		t.Fatalf("two refreshes: %d GETs, %d SETs, %d fetches; want 2, 3, 2", counts.Gets, counts.Sets, d.fetches.Load())
	}
	m := scrape(t, d)
	for series, want := range map[string]float64{
		`roster_sidecar_backend_conditional_fetches_total{outcome="not_modified"}`: 1,
		`roster_sidecar_backend_conditional_fetches_total{outcome="modified"}`:     0,
		`roster_sidecar_backend_conditional_fetches_total{outcome="error"}`:        0,
		`roster_sidecar_backend_request_duration_seconds_count{class="3xx"}`:       1,
		`roster_sidecar_server_roster_reads_total{read="full"}`:                    1,
		`roster_sidecar_server_roster_reads_total{read="skipped"}`:                 1,
		`roster_sidecar_server_roster_reads_total{read="unchanged"}`:               0,
		`roster_sidecar_user_syncs_total{domain="example.test",result="ok"}`:       2,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}

	off := startDaemonWith(t, etagBackend, nil, nil)
	for range 2 {
		if code, a, err := off.refresh(http.DefaultClient, "john"); err != nil || code != 200 || a.Updated != 1 {
			t.Fatalf("refresh without conditional fetches = %d %+v %v", code, a, err)
		}
	}
	if counts := off.xmpp.Counts(); counts.Gets != 3 {
		t.Fatalf("without conditional fetches: %d GETs, want 3 (2 reads, 1 read-back)", counts.Gets)
	}
	if got := scrape(t, off)[`roster_sidecar_server_roster_reads_total{read="full"}`]; got != 2 {
		t.Fatalf("full reads without conditional fetches: %v", got)
	}
	http.DefaultClient.CloseIdleConnections()
}
