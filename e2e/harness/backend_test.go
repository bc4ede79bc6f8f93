package harness

import (
	"io"
	"net/http"
	"testing"
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
