package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"mellium.im/xmpp/jid"

	"roster-sidecar/daemon"
	"roster-sidecar/rosterhttp"
)

// required is the smallest valid environment.
var required = map[string]string{
	"ROSTER_SIDECAR_XMPP_DOMAIN":      "roster.example.test",
	"ROSTER_SIDECAR_XMPP_USER_DOMAIN": "example.test",
	"ROSTER_SIDECAR_XMPP_SECRET":      "s3cret",
	"ROSTER_SIDECAR_HTTP_ROSTER_URL":  "http://127.0.0.1:8080/roster/%s",
}

func load(t *testing.T, env map[string]string, file string, args ...string) (daemon.Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	v := newViper(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flags: %v", err)
	}
	return loadConfig(v, file)
}

func TestConfigDefaultsFromEnvironment(t *testing.T) {
	c, err := load(t, required, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.XMPPAddress != "127.0.0.1:5347" || c.AdminListen != "127.0.0.1:5380" || c.IQTimeout != 15*time.Second ||
		c.Window != 16 || c.AdminConcurrency != 8 || c.XMPPSecret != "s3cret" || c.AdminToken != "" {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestConfigFileEnvAndFlagsPrecedence(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "config.yaml")
	yaml := `xmpp:
  address: 10.0.0.1:5347
  domain: roster.example.test
  user_domain: example.test
  secret: from-file
  window: 4
http_roster_url: https://app.example.test/roster/%s
backend:
  headers:
    Authorization: Bearer backend-token
admin:
  listen: 127.0.0.1:9999
  token_file: ` + tokenFile + `
log:
  format: json
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ROSTER_SIDECAR_XMPP_WINDOW": "8"}
	c, err := load(t, env, file, "--xmpp.address", "127.0.0.2:5347")
	if err != nil {
		t.Fatal(err)
	}
	if c.XMPPAddress != "127.0.0.2:5347" {
		t.Errorf("flag did not win: %s", c.XMPPAddress)
	}
	if c.Window != 8 {
		t.Errorf("env did not beat the file: window %d", c.Window)
	}
	if c.XMPPSecret != "from-file" || c.AdminToken != "file-token" || !c.LogJSON || c.AdminListen != "127.0.0.1:9999" {
		t.Errorf("file values not read: %+v", c)
	}
	if header(c, "Authorization") != "Bearer backend-token" {
		t.Errorf("backend headers = %v", c.BackendHeaders)
	}
}

// header looks a backend header up by name: viper lower-cases the keys of
// a file's maps, and header names are case-insensitive anyway.
func header(c daemon.Config, name string) string {
	for k, v := range c.BackendHeaders {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func TestConfigHeadersFromEnvironmentJSON(t *testing.T) {
	env := map[string]string{"ROSTER_SIDECAR_BACKEND_HEADERS": `{"Authorization":"Bearer x"}`}
	for k, v := range required {
		env[k] = v
	}
	c, err := load(t, env, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.BackendHeaders) != 1 || header(c, "Authorization") != "Bearer x" {
		t.Fatalf("headers = %v", c.BackendHeaders)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"missing domain", map[string]string{"ROSTER_SIDECAR_XMPP_DOMAIN": ""}, "xmpp.domain is required"},
		{"missing secret", map[string]string{"ROSTER_SIDECAR_XMPP_SECRET": ""}, "xmpp.secret is required"},
		{"missing url", map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": ""}, "http_roster_url is required"},
		{"secret twice", map[string]string{"ROSTER_SIDECAR_XMPP_SECRET_FILE": empty}, "not both"},
		{"empty secret file", map[string]string{"ROSTER_SIDECAR_XMPP_SECRET": "", "ROSTER_SIDECAR_XMPP_SECRET_FILE": empty}, "is empty"},
		{"missing secret file", map[string]string{"ROSTER_SIDECAR_XMPP_SECRET": "", "ROSTER_SIDECAR_XMPP_SECRET_FILE": filepath.Join(dir, "nope")}, "xmpp.secret_file"},
		{"bad duration", map[string]string{"ROSTER_SIDECAR_XMPP_IQ_TIMEOUT": "soon"}, "xmpp.iq_timeout must be a positive duration"},
		{"zero window", map[string]string{"ROSTER_SIDECAR_XMPP_WINDOW": "0"}, "xmpp.window must be at least 1"},
		{"domain with user", map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAIN": "a@example.test"}, "xmpp.user_domain must be a domain"},
		{"bad log level", map[string]string{"ROSTER_SIDECAR_LOG_LEVEL": "loud"}, "log.level"},
		{"bad log format", map[string]string{"ROSTER_SIDECAR_LOG_FORMAT": "xml"}, "log.format"},
		{"backoff order", map[string]string{"ROSTER_SIDECAR_XMPP_RECONNECT_MAX": "1ms"}, "xmpp.reconnect_max"},
		{"negative redirects", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_REDIRECTS": "-1"}, "backend.max_redirects must be 0 (follow none) or more"},
		{"bad redirects", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_REDIRECTS": "few"}, "backend.max_redirects must be 0 (follow none) or more"},
		{"zero name limit", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_NAME_BYTES": "0"}, "backend.max_name_bytes must be at least 1"},
		{"negative group limit", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_GROUP_BYTES": "-1"}, "backend.max_group_bytes must be at least 1"},
		{"bad groups limit", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_GROUPS": "many"}, "backend.max_groups must be at least 1"},
		{"zero items limit", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_ITEMS": "0"}, "backend.max_items must be at least 1"},
		{"zero item size limit", map[string]string{"ROSTER_SIDECAR_BACKEND_MAX_ITEM_BYTES": "0"}, "backend.max_item_bytes must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range required {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			_, err := load(t, env, "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the secret: %q", err)
			}
		})
	}
}

func TestSecretsHaveNoFlags(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	newViper(fs)
	for _, name := range []string{"xmpp.secret", "admin.token", "admin.hmac_secret", "backend.headers"} {
		if fs.Lookup(name) != nil {
			t.Errorf("secret %s can be given on the command line", name)
		}
	}
	if fs.Lookup("xmpp.secret_file") == nil || fs.Lookup("admin.hmac_secret_file") == nil || fs.Lookup("xmpp.address") == nil {
		t.Error("expected flags are missing")
	}
}

func TestConfigLoginAndEjabberdAPI(t *testing.T) {
	c, err := load(t, required, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.OnLogin || c.LoginMinInterval != 5*time.Minute || c.LoginRate != 20 || c.LoginQueue != 10000 ||
		c.EjabberdAPIURL != "" || c.EjabberdAPIUser != "" || c.EjabberdAPITime != 15*time.Second {
		t.Fatalf("defaults: %+v", c)
	}

	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("api-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"ROSTER_SIDECAR_SYNC_LOGIN_RATE":            "0.5",
		"ROSTER_SIDECAR_SYNC_LOGIN_MIN_INTERVAL":    "0",
		"ROSTER_SIDECAR_EJABBERD_API_URL":           "http://127.0.0.1:5281/api",
		"ROSTER_SIDECAR_EJABBERD_API_USER":          "roster-sidecar@example.test",
		"ROSTER_SIDECAR_EJABBERD_API_PASSWORD_FILE": pw,
	}
	for k, v := range required {
		env[k] = v
	}
	c, err = load(t, env, "", "--sync.on_login=false", "--sync.login_queue", "5")
	if err != nil {
		t.Fatal(err)
	}
	if c.OnLogin || c.LoginRate != 0.5 || c.LoginMinInterval != 0 || c.LoginQueue != 5 ||
		c.EjabberdAPIURL != "http://127.0.0.1:5281/api" || c.EjabberdAPIPass != "api-secret" {
		t.Fatalf("values: %+v", c)
	}

	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	newViper(fs)
	if fs.Lookup("ejabberd_api.password") != nil || fs.Lookup("ejabberd_api.password_file") == nil {
		t.Error("ejabberd_api.password must have no flag, its _file variant one")
	}
}

func TestConfigLoginAndEjabberdAPIErrors(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ROSTER_SIDECAR_SYNC_ON_LOGIN": "perhaps"}, "sync.on_login"},
		{map[string]string{"ROSTER_SIDECAR_SYNC_LOGIN_RATE": "0"}, "sync.login_rate"},
		{map[string]string{"ROSTER_SIDECAR_SYNC_LOGIN_RATE": "fast"}, "sync.login_rate"},
		{map[string]string{"ROSTER_SIDECAR_SYNC_LOGIN_MIN_INTERVAL": "-1s"}, "sync.login_min_interval"},
		{map[string]string{"ROSTER_SIDECAR_SYNC_LOGIN_MIN_INTERVAL": "often"}, "sync.login_min_interval"},
		{map[string]string{"ROSTER_SIDECAR_SYNC_LOGIN_QUEUE": "0"}, "sync.login_queue"},
		{map[string]string{"ROSTER_SIDECAR_EJABBERD_API_URL": "127.0.0.1:5281"}, "ejabberd_api.url"},
		{map[string]string{"ROSTER_SIDECAR_EJABBERD_API_URL": "http://u:p@127.0.0.1/api"}, "ejabberd_api.url"},
		{map[string]string{"ROSTER_SIDECAR_EJABBERD_API_USER": "roster-sidecar"}, "ejabberd_api.user"},
		{map[string]string{"ROSTER_SIDECAR_EJABBERD_API_USER": "roster-sidecar@example.test"}, "ejabberd_api.password"},
		{map[string]string{"ROSTER_SIDECAR_EJABBERD_API_TIMEOUT": "0"}, "ejabberd_api.timeout"},
	} {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			env := map[string]string{}
			for k, v := range required {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			if _, err := load(t, env, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to name %s", err, tt.want)
			}
		})
	}
}

func TestConfigBackendLimits(t *testing.T) {
	c, err := load(t, required, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.BackendMaxName != rosterhttp.DefaultMaxNameBytes || c.BackendMaxGroup != rosterhttp.DefaultMaxGroupBytes ||
		c.BackendMaxGroups != rosterhttp.DefaultMaxGroups || c.BackendMaxItems != rosterhttp.DefaultMaxItems ||
		c.BackendMaxItem != rosterhttp.DefaultMaxItemBytes {
		t.Fatalf("defaults: %+v", c)
	}

	var contacts atomic.Value
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, contacts.Load())
	}))
	defer backend.Close()
	env := map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": backend.URL + "/roster/%s", "ROSTER_SIDECAR_BACKEND_MAX_GROUP_BYTES": "4"}
	for k, v := range required {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	c, err = load(t, env, "", "--backend.max_name_bytes", "3", "--backend.max_groups=1", "--backend.max_items", "2", "--backend.max_item_bytes=90")
	if err != nil {
		t.Fatal(err)
	}
	if c.BackendMaxName != 3 || c.BackendMaxGroup != 4 || c.BackendMaxGroups != 1 || c.BackendMaxItems != 2 || c.BackendMaxItem != 90 {
		t.Fatalf("values: %+v", c)
	}
	// They reach the backend client.
	p, err := daemon.Build(c, slog.New(slog.DiscardHandler), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	owner := jid.MustParse("john@example.test")
	contacts.Store(`{"a@x": {"name": "Anna"}, "b@x": {"groups": ["Group"]}}`)
	r, err := p.Fetcher.Fetch(context.Background(), owner)
	if err != nil || len(r.Items) != 0 || len(r.Skipped) != 2 {
		t.Errorf("names and groups over the limits: %+v, %v", r, err)
	}
	contacts.Store(`{"a@x": {"groups": ["G", "H"]}, "b@x": {"name": "` + strings.Repeat("&", 3) + `"}}`)
	if r, err = p.Fetcher.Fetch(context.Background(), owner); err != nil || len(r.Items) != 0 || len(r.Skipped) != 2 {
		t.Errorf("groups and SET size over the limits: %+v, %v", r, err)
	}
	contacts.Store(`{"a@x": {}, "b@x": {}, "c@x": {}}`)
	if _, err = p.Fetcher.Fetch(context.Background(), owner); !errors.As(err, new(*rosterhttp.TooManyContactsError)) {
		t.Errorf("contacts over the limit: %v", err)
	}
}

// TestConfigMaxRedirectsZero: backend.max_redirects 0 follows no redirect
// (it used to follow the default 3); unset follows 3.
func TestConfigMaxRedirectsZero(t *testing.T) {
	var hops atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final/john" {
			fmt.Fprint(w, `{"a@x": {}}`)
			return
		}
		hops.Add(1)
		http.Redirect(w, r, "/final/john", http.StatusFound)
	}))
	defer backend.Close()
	owner := jid.MustParse("john@example.test")
	for _, tt := range []struct {
		name      string
		file, env string // backend.max_redirects in a file, in the environment
		args      []string
		want      int
	}{
		{name: "unset", want: rosterhttp.DefaultMaxRedirects},
		{name: "zero in the file", file: "0", want: 0},
		{name: "zero in the environment", env: "0", want: 0},
		{name: "zero as a flag", args: []string{"--backend.max_redirects=0"}, want: 0},
		{name: "one", env: "1", want: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": backend.URL + "/roster/%s"}
			for k, v := range required {
				if _, ok := env[k]; !ok {
					env[k] = v
				}
			}
			if tt.env != "" {
				env["ROSTER_SIDECAR_BACKEND_MAX_REDIRECTS"] = tt.env
			}
			file := ""
			if tt.file != "" {
				file = filepath.Join(t.TempDir(), "config.yaml")
				if err := os.WriteFile(file, []byte("backend:\n  max_redirects: "+tt.file+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := load(t, env, file, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if c.BackendRedirects != tt.want {
				t.Fatalf("BackendRedirects = %d, want %d", c.BackendRedirects, tt.want)
			}
			p, err := daemon.Build(c, slog.New(slog.DiscardHandler), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			hops.Store(0)
			_, err = p.Fetcher.Fetch(context.Background(), owner)
			if tt.want == 0 {
				if !errors.Is(err, rosterhttp.ErrTooManyRedirects) || hops.Load() != 1 {
					t.Fatalf("max_redirects 0: %d requests redirected, err %v; want the redirect refused", hops.Load(), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("one redirect with max_redirects %d: %v", tt.want, err)
			}
		})
	}
}

// TestConfigRosterURLFromFile: http_roster_url may come from a file (or the
// environment), like the secrets, and no error shows it.
func TestConfigRosterURLFromFile(t *testing.T) {
	const token = "url-t0ken-xyz"
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "roster-url")
	if err := os.WriteFile(urlFile, []byte("https://app.example.test/roster/%s?token="+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range required {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	c, err := load(t, env(map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": "", "ROSTER_SIDECAR_HTTP_ROSTER_URL_FILE": urlFile}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.RosterURL != "https://app.example.test/roster/%s?token="+token {
		t.Fatalf("RosterURL = %q", c.RosterURL)
	}
	c, err = load(t, env(map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": ""}), "", "--http_roster_url_file", urlFile)
	if err != nil || !strings.HasSuffix(c.RosterURL, token) {
		t.Fatalf("from the flag: %q, %v", c.RosterURL, err)
	}

	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"both", map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL_FILE": urlFile}, "set http_roster_url or http_roster_url_file, not both"},
		{"empty file", map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": "", "ROSTER_SIDECAR_HTTP_ROSTER_URL_FILE": empty}, "http_roster_url_file " + empty + " is empty"},
		{"missing file", map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": "", "ROSTER_SIDECAR_HTTP_ROSTER_URL_FILE": filepath.Join(dir, "nope")}, "http_roster_url_file"},
		{"neither", map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": "", "ROSTER_SIDECAR_HTTP_ROSTER_URL_FILE": ""}, "http_roster_url is required (config file, ROSTER_SIDECAR_HTTP_ROSTER_URL, or http_roster_url_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, env(tt.env), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), token) {
				t.Fatalf("error %v, want it to contain %q and not the token", err, tt.want)
			}
		})
	}
}

// TestConfigErrorsHideURLCredentials: a refused URL is shown without its
// user information and query values.
func TestConfigErrorsHideURLCredentials(t *testing.T) {
	env := map[string]string{}
	for k, v := range required {
		env[k] = v
	}
	env["ROSTER_SIDECAR_EJABBERD_API_URL"] = "http://admin:api-pa55word@127.0.0.1:5281/api?key=api-k3y"
	_, err := load(t, env, "")
	if err == nil || !strings.Contains(err.Error(), "ejabberd_api.url") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "api-pa55word") || strings.Contains(err.Error(), "api-k3y") {
		t.Fatalf("error shows the credentials: %v", err)
	}
}

func TestConfigHMACSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hmac")
	if err := os.WriteFile(file, []byte("0123456789abcdef-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string // the secret, or the error's text
		err  bool
	}{
		{"unset", nil, "", false},
		{"value", map[string]string{"ROSTER_SIDECAR_ADMIN_HMAC_SECRET": "0123456789abcdef"}, "0123456789abcdef", false},
		{"file", map[string]string{"ROSTER_SIDECAR_ADMIN_HMAC_SECRET_FILE": file}, "0123456789abcdef-from-file", false},
		{"too short", map[string]string{"ROSTER_SIDECAR_ADMIN_HMAC_SECRET": "0123456789abcde"}, "admin.hmac_secret must be at least 16 bytes", true},
		{"both", map[string]string{"ROSTER_SIDECAR_ADMIN_HMAC_SECRET": "0123456789abcdef", "ROSTER_SIDECAR_ADMIN_HMAC_SECRET_FILE": file},
			"set admin.hmac_secret or admin.hmac_secret_file, not both", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range required {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := load(t, env, "")
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				if strings.Contains(err.Error(), "0123456789abcde") {
					t.Fatalf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil || c.AdminHMACSecret != tt.want {
				t.Fatalf("secret %q, error %v; want %q", c.AdminHMACSecret, err, tt.want)
			}
		})
	}
}

func TestConfigUserDomains(t *testing.T) {
	const secret = "url-s3cret-key"
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	yaml := `xmpp:
  user_domains: [Other.Test, example.test, third.test.]
backend:
  domain_urls:
    other.test: https://other.example/roster/%s?key=` + secret + `
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		env         map[string]string
		file        string
		def         string
		domains     []string
		domainURLs  map[string]string
		wantInError string
	}{
		{name: "one domain", env: map[string]string{}, def: "example.test", domains: []string{"example.test"}},
		{name: "list from the environment, the first is the default",
			env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAIN": "", "ROSTER_SIDECAR_XMPP_USER_DOMAINS": "b.test, a.test,c.test",
				"ROSTER_SIDECAR_HTTP_ROSTER_URL": "http://127.0.0.1:8080/roster/{domain}/%s"},
			def: "b.test", domains: []string{"b.test", "a.test", "c.test"}},
		{name: "user_domain names the default",
			env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAINS": "other.test example.test",
				"ROSTER_SIDECAR_BACKEND_DOMAIN_URLS": `{"Other.Test": "http://other/%s"}`},
			def: "example.test", domains: []string{"example.test", "other.test"}, domainURLs: map[string]string{"other.test": "http://other/%s"}},
		{name: "file", env: map[string]string{}, file: file, def: "example.test", domains: []string{"example.test", "other.test", "third.test"},
			wantInError: "the user domains example.test and third.test would fetch the same backend URLs (http_roster_url has no {domain})"},
		{name: "file with {domain}", env: map[string]string{"ROSTER_SIDECAR_HTTP_ROSTER_URL": "http://127.0.0.1:8080/roster/%s?domain={domain}"}, file: file,
			def: "example.test", domains: []string{"example.test", "other.test", "third.test"},
			domainURLs: map[string]string{"other.test": "https://other.example/roster/%s?key=" + secret}},
		{name: "no domain", env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAIN": ""},
			wantInError: "xmpp.user_domain (or xmpp.user_domains, for several) is required"},
		{name: "user_domain not listed", env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAINS": "a.test,b.test"},
			wantInError: "xmpp.user_domain example.test is not one of xmpp.user_domains (a.test, b.test)"},
		{name: "bad list entry", env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAIN": "", "ROSTER_SIDECAR_XMPP_USER_DOMAINS": "a.test,x@b.test"},
			wantInError: `xmpp.user_domains must list domain names such as example.com, got "x@b.test"`},
		{name: "twice", env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAINS": "example.test,EXAMPLE.test"},
			wantInError: "xmpp.user_domains lists example.test twice"},
		{name: "domain URL of another domain", env: map[string]string{"ROSTER_SIDECAR_BACKEND_DOMAIN_URLS": `{"other.test": "http://other/%s"}`},
			wantInError: `backend.domain_urls names "other.test", which is not one of the user domains (example.test)`},
		{name: "domain URL not a map", env: map[string]string{"ROSTER_SIDECAR_BACKEND_DOMAIN_URLS": `["x"]`},
			wantInError: "backend.domain_urls must be a map"},
		{name: "two overrides alike", env: map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAINS": "example.test,a.test,b.test",
			"ROSTER_SIDECAR_HTTP_ROSTER_URL":     "http://127.0.0.1:8080/roster/{domain}/%s",
			"ROSTER_SIDECAR_BACKEND_DOMAIN_URLS": `{"a.test": "http://x/%s?k=` + secret + `", "b.test": "http://x/%s?k=` + secret + `"}`},
			wantInError: "the user domains a.test and b.test would fetch the same backend URLs (backend.domain_urls has no {domain})"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := maps.Clone(required)
			maps.Copy(env, tt.env)
			c, err := load(t, env, tt.file)
			if tt.wantInError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantInError) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantInError)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows a URL's secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.UserDomain != tt.def || !slices.Equal(c.UserDomains, tt.domains) || !maps.Equal(c.BackendDomainURLs, tt.domainURLs) {
				t.Errorf("user domain %q, domains %q, domain URLs %v; want %q, %q, %v", c.UserDomain, c.UserDomains, c.BackendDomainURLs, tt.def, tt.domains, tt.domainURLs)
			}
		})
	}
}

func TestConfigUserDomainsFlag(t *testing.T) {
	c, err := load(t, map[string]string{"ROSTER_SIDECAR_XMPP_USER_DOMAIN": "", "ROSTER_SIDECAR_XMPP_SECRET": "s3cret",
		"ROSTER_SIDECAR_XMPP_DOMAIN": "roster.example.test", "ROSTER_SIDECAR_HTTP_ROSTER_URL": "http://h/{domain}/%s"}, "",
		"--xmpp.user_domains", "a.test,b.test", "--xmpp.user_domains", "c.test")
	if err != nil {
		t.Fatal(err)
	}
	if c.UserDomain != "a.test" || !slices.Equal(c.UserDomains, []string{"a.test", "b.test", "c.test"}) {
		t.Errorf("%q %q", c.UserDomain, c.UserDomains)
	}
}
