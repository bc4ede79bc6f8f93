package daemon

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"roster-sidecar/rostersync"
)

// signedPost POSTs body to path of the daemon's admin API, signed with
// secret as PROTOCOL.md describes (computed here, independently of the
// admin package), and returns the status and the body.
func signedPost(t *testing.T, d *testDaemon, secret, path, body string) (int, string) {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sum := sha256.Sum256([]byte(body))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v1:" + ts + ":POST:" + path + ":" + hex.EncodeToString(sum[:])))
	req, err := http.NewRequest(http.MethodPost, d.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Roster-Sidecar-Timestamp", ts)
	req.Header.Set("X-Roster-Sidecar-Signature", "v1="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A signed push reaches the roster with no backend fetch, held to the
// backend's limits; an unsigned request is refused when only a secret is
// configured, on a non-loopback listener too.
func TestServeSignedPush(t *testing.T) {
	const secret = "daemon-hmac-secret-0123456789"
	var logs bytes.Buffer
	d := startDaemonWith(t, func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(contactsRoster(1))
	}, func(c *Config) {
		c.AdminHMACSecret = secret
		c.BackendMaxName = 8
	}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	code, body := signedPost(t, d, secret, "/roster_admin/push",
		`{"john": {"marie@example.test": {"name": "Marie", "groups": ["Friends"]}, "long@example.test": {"name": "Much too long"}}}`)
	if code != http.StatusOK {
		t.Fatalf("signed push: %d %s", code, body)
	}
	var a struct {
		Status  string `json:"status"`
		Updated int    `json:"updated"`
		Results []struct {
			Added   int `json:"added"`
			Skipped []struct {
				JID string `json:"jid"`
			} `json:"skipped"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Status != "ok" || a.Updated != 1 || len(a.Results) != 1 ||
		a.Results[0].Added != 1 || len(a.Results[0].Skipped) != 1 || a.Results[0].Skipped[0].JID != "long@example.test" {
		t.Fatalf("push answer %s (%v)", body, err)
	}
	if got := d.xmpp.Roster("john@example.test"); !slices.Equal(got, []string{"marie@example.test|Marie|both|Friends"}) {
		t.Errorf("roster = %v", got)
	}
	if n := d.fetches.Load(); n != 0 {
		t.Errorf("the backend was asked %d times for a push", n)
	}

	resp, err := http.Post(d.url("/roster_admin/refresh"), "application/json", strings.NewReader(`["john"]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Roster-Sidecar-Signature" {
		t.Errorf("unsigned refresh: %d %v", resp.StatusCode, resp.Header)
	}
	if code, body := signedPost(t, d, secret, "/roster_admin/refresh", `["john"]`); code != http.StatusOK {
		t.Errorf("signed refresh: %d %s", code, body)
	}
	if code, body := signedPost(t, d, "wrong-secret-0123456789", "/roster_admin/refresh", `["john"]`); code != http.StatusUnauthorized {
		t.Errorf("refresh signed with another secret: %d %s", code, body)
	}
	d.shutdown(t)
	http.DefaultClient.CloseIdleConnections()
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the logs show the HMAC secret:\n%s", logs.String())
	}
}

// Without a token, an HMAC secret is enough for a non-loopback listener.
func TestNewAdminOffLoopback(t *testing.T) {
	s := rostersync.NewSyncer(rostersync.SyncerConfig{UserDomain: "example.test"}, nil, nil, nil, slog.New(slog.DiscardHandler))
	cfg := Config{AdminListen: "0.0.0.0:5380", UserDomain: "example.test"}
	if _, err := NewAdmin(cfg, s, nil, nil); err == nil || !strings.Contains(err.Error(), "without admin.token or admin.hmac_secret") {
		t.Fatalf("NewAdmin off loopback without a credential: %v", err)
	}
	cfg.AdminHMACSecret = "0123456789abcdef"
	if _, err := NewAdmin(cfg, s, nil, nil); err != nil {
		t.Fatalf("NewAdmin off loopback with an HMAC secret: %v", err)
	}
}
