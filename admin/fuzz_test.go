package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"roster-sidecar/rostersync"
)

// failingSyncer fails every user whose name contains an "x".
type failingSyncer struct{ notReady bool }

func (f failingSyncer) Ready() error {
	if f.notReady {
		return errors.New("not connected to the XMPP server")
	}
	return nil
}

func (failingSyncer) Sync(_ context.Context, user string) rostersync.Result {
	if strings.Contains(user, "x") {
		return rostersync.Result{User: user, Err: errors.New("fetch roster of " + user + ": backend answered 500")}
	}
	return rostersync.Result{User: user, Added: 1}
}

func FuzzRefreshBody(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `[]`, `["john"]`, `["john","aaron"]`, `["John","john@example.test"]`, `["x1","x2"]`,
		`["john","x"]`, `{}`, `null`, `"x"`, `[1]`, `[null]`, `["a"] x`, `["a"`, `["a@b@c"]`, `["hash#tag","josé"]`,
		"[\"\xff\"]", `["\ud800"]`, `["a","b","c","d","e","f","g","h","i"]`, strings.Repeat(`"a",`, 200),
	} {
		f.Add([]byte(seed))
	}
	cfg := Config{MaxBodyBytes: 512, MaxUsers: 8, Concurrency: 2}
	ready := newServer(f, cfg, failingSyncer{})
	notReady := newServer(f, cfg, failingSyncer{notReady: true})

	f.Fuzz(func(t *testing.T, body []byte) {
		srv := ready
		if len(body)%3 == 0 {
			srv = notReady
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/roster_admin/refresh", bytes.NewReader(body))
		req.Host = testHost
		srv.Handler().ServeHTTP(rec, req)

		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var answer struct {
			Status  *string      `json:"status"`
			Message string       `json:"message"`
			Updated int          `json:"updated"`
			Errors  int          `json:"errors"`
			Results []UserResult `json:"results"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body, err)
		}
		if answer.Status == nil {
			t.Fatalf("answer %q has no status", rec.Body)
		}
		want := "error"
		if rec.Code == http.StatusOK && (answer.Updated > 0 || len(answer.Results) == 0) {
			want = "ok"
		}
		if *answer.Status != want {
			t.Fatalf("status %q, want %q, in answer %q", *answer.Status, want, rec.Body)
		}
		if rec.Code == http.StatusOK && answer.Updated+answer.Errors != len(answer.Results) {
			t.Fatalf("counts do not add up in %q", rec.Body)
		}
	})
}
