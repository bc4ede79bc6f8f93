package harness

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
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
}

// Admin is a client of the sidecar's admin API.
type Admin struct {
	// BaseURL is like http://127.0.0.1:PORT.
	BaseURL string
	// Token is sent as a bearer token when not empty.
	Token  string
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

// Do sends a request with an optional JSON body and returns the answer.
func (a *Admin) Do(t TB, method, path string, body any) AdminReply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.BaseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
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
	return AdminReply{Status: resp.StatusCode, Body: string(b), Elapsed: time.Since(start)}
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
