package rosterhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

func TestParseUser(t *testing.T) {
	domains := []string{"example.test", "Other.TEST"}
	tests := []struct {
		in            string
		local, domain string
		notServed     bool   // the error wraps ErrDomainNotServed
		err           string // substring of the expected error; "" for none
	}{
		{in: "john", local: "john", domain: "example.test"},
		{in: "JOHN@example.test", local: "john", domain: "example.test"},
		{in: "john@other.test", local: "john", domain: "other.test"},
		{in: "John@OTHER.test.", local: "john", domain: "other.test"},
		{in: "john@third.test", local: "john", domain: "third.test", notServed: true,
			err: `invalid username "john@third.test": its domain is not one of the domains served here (example.test, other.test)`},
		{in: "JOHN@Third.Test", local: "john", domain: "third.test", notServed: true, err: "its domain is not one of"},
		// A malformed name is not a domain question.
		{in: "jo hn@third.test", err: "it contains a space"},
		{in: "john@exa mple.test", err: "its domain is not one of"},
		{in: "a@b@other.test", err: "its domain is not one of"},
		{in: "john@other.test/res", err: "it has a resource"},
	}
	for _, tt := range tests {
		local, domain, err := ParseUser(tt.in, domains)
		if tt.err == "" {
			if err != nil || local != tt.local || domain != tt.domain {
				t.Errorf("ParseUser(%q) = %q, %q, %v; want %q, %q", tt.in, local, domain, err, tt.local, tt.domain)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseUser(%q) error = %v; want one containing %q", tt.in, err, tt.err)
			continue
		}
		if got := errors.Is(err, ErrDomainNotServed); got != tt.notServed {
			t.Errorf("ParseUser(%q): errors.Is(err, ErrDomainNotServed) = %v; want %v", tt.in, got, tt.notServed)
		}
		if tt.notServed && (local != tt.local || domain != tt.domain) {
			t.Errorf("ParseUser(%q) = %q, %q; want %q, %q with the error", tt.in, local, domain, tt.local, tt.domain)
		}
	}
	// One domain: the error text of before.
	if _, err := ParseUsername("john@other.test", "example.test"); err == nil ||
		!strings.Contains(err.Error(), "its domain is not example.test, the domain served here") || !errors.Is(err, ErrDomainNotServed) {
		t.Errorf("ParseUsername: %v", err)
	}
	if _, _, err := ParseUser("john", nil); err == nil {
		t.Error("ParseUser without domains: no error")
	}
}

// ownerOn returns the JID of local@domain.
func ownerOn(t *testing.T, local, domain string) jid.JID {
	t.Helper()
	j, err := jid.New(local, domain, "")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestFetchDomainPlaceholder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Host+" "+r.RequestURI)
		mu.Unlock()
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, "other "+r.RequestURI)
		mu.Unlock()
		fmt.Fprint(w, `{}`)
	}))
	defer other.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := newClient(t, Config{
		URLTemplate: srv.URL + "/{domain}/roster/%s?d={domain}",
		DomainURLs:  map[string]string{"override.test": other.URL + "/users/%s"},
	})
	ctx := context.Background()
	for _, o := range []jid.JID{ownerOn(t, "john", "example.test"), ownerOn(t, "john", "other.test"),
		ownerOn(t, "hash#tag", "münchen.test"), ownerOn(t, "john", "override.test")} {
		if _, err := c.Fetch(ctx, o); err != nil {
			t.Fatalf("Fetch(%s): %v", o, err)
		}
	}
	want := []string{
		host + " /example.test/roster/john?d=example.test",
		host + " /other.test/roster/john?d=other.test",
		host + " /m%C3%BCnchen.test/roster/hash%23tag?d=m%C3%BCnchen.test",
		"other /users/john",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewDomainTemplates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string // "" means valid
	}{
		{"placeholder in path", Config{URLTemplate: "http://backend/{domain}/%s"}, ""},
		{"placeholder in query", Config{URLTemplate: "http://backend/%s?domain={domain}"}, ""},
		{"placeholder twice", Config{URLTemplate: "http://backend/{domain}/%s?d={domain}"}, ""},
		{"placeholder in host", Config{URLTemplate: "http://{domain}/roster/%s"}, "{domain} in the path or query only"},
		{"placeholder in a host name", Config{URLTemplate: "http://backend.{domain}/roster/%s"}, "{domain} in the path or query only"},
		{"placeholder in user info", Config{URLTemplate: "http://{domain}@backend/roster/%s"}, "{domain} in the path or query only"},
		{"placeholder in fragment", Config{URLTemplate: "http://backend/roster/%s#{domain}"}, "{domain} in the path or query only"},
		{"domain URL", Config{URLTemplate: "http://backend/%s", DomainURLs: map[string]string{"other.test": "https://other/%s?k=" + secret}}, ""},
		{"domain URL without placeholder", Config{URLTemplate: "http://backend/%s", DomainURLs: map[string]string{"other.test": "https://other/roster?k=" + secret}},
			`roster URL template of other.test has no "%s"`},
		{"domain URL bad", Config{URLTemplate: "http://backend/%s", DomainURLs: map[string]string{"other.test": "ftp://other/%s?k=" + secret}},
			"roster URL template of other.test does not make an absolute http or https URL"},
	}
	for _, tt := range tests {
		c, err := New(tt.cfg)
		if tt.err == "" {
			if err != nil || c == nil {
				t.Errorf("%s: New = %v, %v", tt.name, c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v; want %q", tt.name, err, tt.err)
		}
		checkNoSecret(t, err)
	}
}

// TestFetchDomainURLSecretRedacted: the secrets of every domain's URL are
// hidden from error texts.
func TestFetchDomainURLSecretRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere?k="+secret, http.StatusFound)
	}))
	defer srv.Close()
	c := newClient(t, Config{URLTemplate: "http://127.0.0.1:1/%s", DomainURLs: map[string]string{"other.test": srv.URL + "/%s?k=" + secret}})
	_, err := c.Fetch(context.Background(), ownerOn(t, "john", "other.test"))
	if err == nil {
		t.Fatal("no error")
	}
	checkNoSecret(t, err)
}

// TestFetchChangedKeyedByDomain: the validators of john@example.test are
// not sent for john@other.test.
func TestFetchChangedKeyedByDomain(t *testing.T) {
	b, srv := newConditionalBackend(t)
	c := newClient(t, Config{URLTemplate: srv.URL + "/roster/%s", ConditionalCache: 10})
	ctx := context.Background()
	b.set("john", `"v1"`, time.Time{})
	if _, err := c.FetchChanged(ctx, ownerOn(t, "john", "example.test"), true); err != nil {
		t.Fatal(err)
	}
	r, err := c.FetchChanged(ctx, ownerOn(t, "john", "other.test"), true)
	if err != nil || r.NotModified {
		t.Fatalf("FetchChanged(john@other.test) = %+v, %v", r, err)
	}
	if got := b.last(); got != "john inm= ims=" {
		t.Errorf("john@other.test was asked with %q, the validators of john@example.test", got)
	}
	r, err = c.FetchChanged(ctx, ownerOn(t, "john", "example.test"), true)
	if err != nil || !r.NotModified {
		t.Errorf("FetchChanged(john@example.test) = %+v, %v; want 304", r, err)
	}
}

// FuzzParseUser: what ParseUser accepts reads back the same from its bare
// JID; a bare localpart is the default domain's user exactly as
// ParseUsername reads it; a name on a domain not served comes with a
// well-formed user on another domain.
func FuzzParseUser(f *testing.F) {
	domains := []string{"example.test", "other.test"}
	for _, seed := range []string{
		"john", "JOHN@Other.Test", "john@other.test.", "john@third.test", "a@b@other.test", "@other.test",
		"john@other.test/r", "..@other.test", "josé@other.test", "a b@third.test", "john@", "john@exa mple",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		local, domain, err := ParseUser(s, domains)
		if !strings.Contains(s, "@") {
			name, err1 := ParseUsername(s, domains[0])
			if (err == nil) != (err1 == nil) || err == nil && (local != name || domain != domains[0]) {
				t.Fatalf("ParseUser(%q) = %q, %q, %v; ParseUsername = %q, %v", s, local, domain, err, name, err1)
			}
		}
		switch {
		case errors.Is(err, ErrDomainNotServed):
			if local == "" || domain == "" || slices.Contains(domains, domain) {
				t.Fatalf("ParseUser(%q) = %q, %q with a domain not served", s, local, domain)
			}
			if _, _, err := ParseUser(local+"@"+domains[1], domains); err != nil {
				t.Fatalf("the localpart %q of %q is not valid on a served domain: %v", local, s, err)
			}
		case err != nil:
			if local != "" || domain != "" {
				t.Fatalf("ParseUser(%q) = %q, %q with error %v", s, local, domain, err)
			}
		default:
			if !slices.Contains(domains, domain) {
				t.Fatalf("ParseUser(%q) = %q, %q: not a served domain", s, local, domain)
			}
			if l, d, err := ParseUser(local+"@"+domain, domains); err != nil || l != local || d != domain {
				t.Fatalf("ParseUser(%q) = %q, %q, %v; want %q, %q", local+"@"+domain, l, d, err, local, domain)
			}
		}
	})
}
