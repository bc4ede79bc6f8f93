package harness

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RefreshResponse is the JSON answer of POST /roster_admin/refresh.
type RefreshResponse struct {
	Status  string       `json:"status"`
	Message string       `json:"message"`
	Updated int          `json:"updated"`
	Errors  int          `json:"errors"`
	Results []UserResult `json:"results"`
}

// UserResult is one entry of RefreshResponse.Results.
type UserResult struct {
	User    string `json:"user"`
	Status  string `json:"status"`
	Added   int    `json:"added"`
	Updated int    `json:"updated"`
	Removed int    `json:"removed"`
	Error   string `json:"error"`
}

// Result returns the entry for user, failing the test if there is none.
func (r RefreshResponse) Result(t TB, user string) UserResult {
	t.Helper()
	for _, res := range r.Results {
		if res.User == user {
			return res
		}
	}
	t.Fatalf("no result for %q in %+v", user, r)
	return UserResult{}
}

// AdminReply is a raw admin API answer.
type AdminReply struct {
	Status  int
	Body    string
	Elapsed time.Duration
	Header  http.Header
}

// Admin is a client of the sidecar's admin API.
type Admin struct {
	// BaseURL is like http://127.0.0.1:PORT.
	BaseURL string
	// Token is sent as a bearer token when not empty.
	Token string
	// Secret, when not empty, signs every request (SignHeader).
	Secret string
	client *http.Client
}

// newAdmin returns a client for the admin API at baseURL.
func newAdmin(baseURL, token string) *Admin {
	return &Admin{BaseURL: baseURL, Token: token, client: &http.Client{Timeout: 60 * time.Second}}
}

// WithToken returns a copy of a that sends token instead ("" for none).
func (a *Admin) WithToken(token string) *Admin {
	c := *a
	c.Token = token
	return &c
}

// WithSecret returns a copy of a that signs its requests with secret (""
// for none).
func (a *Admin) WithSecret(secret string) *Admin {
	c := *a
	c.Secret = secret
	return &c
}

// SignHeader returns the headers that sign a request (PROTOCOL.md "Signed
// requests"), computed here from the documented format: the HMAC-SHA256
// with secret of "v1:<ts>:<METHOD>:<target>:<hex SHA-256 of body>", where
// target is the path and query as sent.
func SignHeader(secret string, ts time.Time, method, target string, body []byte) http.Header {
	unix := strconv.FormatInt(ts.Unix(), 10)
	sum := sha256.Sum256(body)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v1:" + unix + ":" + method + ":" + target + ":" + hex.EncodeToString(sum[:])))
	return http.Header{
		"X-Roster-Sidecar-Timestamp": {unix},
		"X-Roster-Sidecar-Signature": {"v1=" + hex.EncodeToString(mac.Sum(nil))},
	}
}

// Do sends a request with an optional JSON body and returns the answer.
func (a *Admin) Do(t TB, method, path string, body any) AdminReply {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	header := http.Header{}
	if a.Secret != "" {
		header = SignHeader(a.Secret, time.Now(), method, path, raw)
	}
	return a.DoRaw(t, method, path, raw, header)
}

// DoRaw sends a request with body (nil for none, else sent as JSON) and
// header, plus the bearer token if any, and returns the answer. It does
// not sign: header carries a signature if one is wanted.
func (a *Admin) DoRaw(t TB, method, path string, body []byte, header http.Header) AdminReply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.BaseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for name, values := range header {
		req.Header[name] = values
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	start := time.Now()
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return AdminReply{Status: resp.StatusCode, Body: string(b), Elapsed: time.Since(start), Header: resp.Header}
}

// RefreshRaw posts users to /roster_admin/refresh and returns the raw answer.
func (a *Admin) RefreshRaw(t TB, users ...string) AdminReply {
	t.Helper()
	if users == nil {
		users = []string{}
	}
	return a.Do(t, http.MethodPost, "/roster_admin/refresh", users)
}

// Refresh posts users to /roster_admin/refresh, expects 200 with a JSON
// body, and returns it decoded together with the raw answer.
func (a *Admin) Refresh(t TB, users ...string) (RefreshResponse, AdminReply) {
	t.Helper()
	raw := a.RefreshRaw(t, users...)
	t.Logf("refresh %q -> %d in %v: %s", users, raw.Status, raw.Elapsed.Round(time.Millisecond), strings.TrimSpace(raw.Body))
	if raw.Status != http.StatusOK {
		t.Fatalf("refresh %q: status %d, body %s", users, raw.Status, raw.Body)
	}
	var r RefreshResponse
	if err := json.Unmarshal([]byte(raw.Body), &r); err != nil {
		t.Fatalf("refresh %q: body is not the expected JSON: %v: %s", users, err, raw.Body)
	}
	return r, raw
}

// RefreshOK refreshes users and expects every one of them to succeed.
func (a *Admin) RefreshOK(t TB, users ...string) RefreshResponse {
	t.Helper()
	r, raw := a.Refresh(t, users...)
	if r.Status != "ok" || r.Errors != 0 || r.Updated != len(users) {
		t.Fatalf("refresh %q: want status ok, updated %d, errors 0; got %s", users, len(users), raw.Body)
	}
	for _, u := range users {
		if res := r.Result(t, u); res.Status != "ok" {
			t.Fatalf("refresh %q: user %s: %+v", users, u, res)
		}
	}
	return r
}

// PushRaw posts rosters (username -> contacts) to /roster_admin/push, each
// roster encoded as the backend would answer it, and returns the raw
// answer.
func (a *Admin) PushRaw(t TB, rosters map[string][]Contact) AdminReply {
	t.Helper()
	body := make(map[string]json.RawMessage, len(rosters))
	for user, contacts := range rosters {
		body[user] = json.RawMessage(EncodeRoster(contacts))
	}
	return a.Do(t, http.MethodPost, "/roster_admin/push", body)
}

// Push posts rosters to /roster_admin/push, expects 200 with a JSON body,
// and returns it decoded together with the raw answer.
func (a *Admin) Push(t TB, rosters map[string][]Contact) (RefreshResponse, AdminReply) {
	t.Helper()
	raw := a.PushRaw(t, rosters)
	t.Logf("push of %d users -> %d in %v: %s", len(rosters), raw.Status, raw.Elapsed.Round(time.Millisecond), strings.TrimSpace(raw.Body))
	if raw.Status != http.StatusOK {
		t.Fatalf("push: status %d, body %s", raw.Status, raw.Body)
	}
	var r RefreshResponse
	if err := json.Unmarshal([]byte(raw.Body), &r); err != nil {
		t.Fatalf("push: body is not the expected JSON: %v: %s", err, raw.Body)
	}
	return r, raw
}
