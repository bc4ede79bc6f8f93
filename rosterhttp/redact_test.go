package rosterhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://app.example.com/api/roster/%s", "https://app.example.com/api/roster/%s"},
		{"https://app.example.com/api/roster/%s?token=" + secret, "https://app.example.com/api/roster/%s?token=REDACTED"},
		{"https://app.example.com/roster?user=%s&token=" + secret + "&flag", "https://app.example.com/roster?user=%s&token=REDACTED&flag"},
		{"https://u:" + secret + "@app.example.com/roster/%s", "https://app.example.com/roster/%s"},
		{"http://127.0.0.1:5281/api#" + secret, "http://127.0.0.1:5281/api"},
		{"http://backend:" + secret + "/%s", "(invalid URL)"},
	} {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFetchErrorsHideURLSecrets: whatever fails, the error text shows
// neither the user information nor the query values of the URL, not even
// where the backend echoes them; errors.Is and errors.As still work.
func TestFetchErrorsHideURLSecrets(t *testing.T) {
	const (
		password = "pa55w0rd-xyz"
		encoded  = "a%2Fhidden%2Fvalue"
		decoded  = "a/hidden/value"
	)
	secrets := []string{secret, password, encoded, decoded}
	check := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error text shows %q: %v", s, err)
			}
		}
	}
	template := func(base string) string {
		return strings.Replace(base, "://", "://user:"+password+"@", 1) + "/roster/%s?token=" + secret + "&k=" + encoded
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("u") + strings.TrimPrefix(r.URL.Path, "/roster/") {
		case "badlocation":
			// A Location that does not parse, echoing the query.
			w.Header().Set("Location", "http://[::1/x?"+r.URL.RawQuery+"&p="+password)
			w.WriteHeader(http.StatusFound)
		case "loop":
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
		case "slow":
			time.Sleep(200 * time.Millisecond)
		case "fail":
			http.Error(w, "boom "+r.URL.RawQuery, http.StatusInternalServerError)
		case "json":
			w.Write([]byte(`{"` + r.URL.RawQuery))
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(handler))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: template(srv.URL), MaxRedirects: DefaultMaxRedirects, Timeout: 100 * time.Millisecond})
	for _, user := range []string{"badlocation", "loop", "slow", "fail", "json"} {
		t.Run(user, func(t *testing.T) {
			_, err := c.Fetch(context.Background(), owner(t, user))
			check(t, err)
			if user == "loop" && !errors.Is(err, ErrTooManyRedirects) {
				t.Errorf("errors.Is(ErrTooManyRedirects) lost: %v", err)
			}
			if user == "slow" && !errors.Is(err, ErrTimeout) {
				t.Errorf("errors.Is(ErrTimeout) lost: %v", err)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := newClient(t, Config{URLTemplate: template("http://" + addr)})
		_, err = c.Fetch(context.Background(), owner(t, "john"))
		check(t, err)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("errors.Is(ECONNREFUSED) lost: %v", err)
		}
	})
}
