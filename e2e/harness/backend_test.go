package harness

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestBackend checks the scriptable backend on its own.
func TestBackend(t *testing.T) {
	b := NewBackend(t)
	b.SetRoster("hash#tag", Contact{JID: "marie@example.test", Name: "Marie", Groups: []string{"Friends"}})
	b.Set("broken", Reply{Status: 500, Body: "oops"})

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(b.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/roster/hash%23tag"); code != 200 || body != `{"marie@example.test":{"name":"Marie","groups":["Friends"]}}` {
		t.Errorf("hash#tag: %d %s", code, body)
	}
	if code, _ := get("/roster/broken"); code != 500 {
		t.Errorf("broken: %d", code)
	}
	if code, _ := get("/roster/nobody"); code != 404 {
		t.Errorf("nobody: %d", code)
	}
	reqs := b.Requests("hash#tag")
	if len(reqs) != 1 || reqs[0].EscapedPath != "/roster/hash%23tag" {
		t.Errorf("requests for hash#tag: %+v", reqs)
	}
	if n := len(b.Requests("")); n != 3 {
		t.Errorf("%d requests recorded, want 3", n)
	}
}

// TestBackendConditional checks the validators and 304 answers of
// SetRosterConditional.
func TestBackendConditional(t *testing.T) {
	b := NewBackend(t)
	b.SetRosterConditional("john", Contact{JID: "marie@example.test", Name: "Marie"})
	get := func(header ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, b.URL+"/roster/john", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	code, h, body := get()
	etag, lm := h.Get("ETag"), h.Get("Last-Modified")
	if code != 200 || body == "" || len(etag) < 3 || lm == "" {
		t.Fatalf("plain GET: %d, ETag %q, Last-Modified %q, %s", code, etag, lm, body)
	}
	if code, h, body := get("If-None-Match", etag); code != 304 || body != "" || h.Get("ETag") != etag {
		t.Errorf("If-None-Match: %d %q", code, body)
	}
	if code, _, _ := get("If-None-Match", `W/`+etag); code != 304 {
		t.Errorf("weak If-None-Match: %d", code)
	}
	if code, _, _ := get("If-None-Match", `"other"`, "If-Modified-Since", lm); code != 200 {
		t.Errorf("If-None-Match decides over If-Modified-Since: %d", code)
	}
	if code, _, _ := get("If-Modified-Since", lm); code != 304 {
		t.Errorf("If-Modified-Since: %d", code)
	}
	earlier := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	if code, _, _ := get("If-Modified-Since", earlier); code != 200 {
		t.Errorf("If-Modified-Since an hour ago: %d", code)
	}
	b.SetRosterConditional("john", Contact{JID: "marie@example.test", Name: "Marie Curie"})
	if code, _, _ := get("If-None-Match", etag); code != 200 {
		t.Errorf("If-None-Match after a change: %d", code)
	}
	var statuses []int
	for _, r := range b.Requests("john") {
		statuses = append(statuses, r.Status)
	}
	if want := []int{200, 304, 304, 200, 304, 200, 200}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("recorded statuses %v, want %v", statuses, want)
	}
	if r := b.Requests("john")[1]; r.IfNoneMatch != etag {
		t.Errorf("recorded If-None-Match %q", r.IfNoneMatch)
	}
}
