package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// exampleConfig is the documented example configuration.
const exampleConfig = "../../deploy/config.example.yaml"

// commentedKey matches a commented-out setting such as "  # iq_timeout: 15s".
// Explanatory comments never start with a lower-case word and a colon.
var commentedKey = regexp.MustCompile(`^(\s*)# ([a-z_]+:(\s.*)?)$`)

// uncomment returns the example with every commented-out setting enabled.
func uncomment(t *testing.T, example []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	for line := range strings.Lines(string(example)) {
		line = strings.TrimRight(line, "\n")
		if m := commentedKey.FindStringSubmatch(line); m != nil {
			line = m[1] + m[2]
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes()
}

// leafKeys returns the dotted keys of a decoded YAML document. A key that
// is a setting is a leaf even when its value is a map (backend.headers).
func leafKeys(prefix string, m map[string]any, isSetting func(string) bool, out *[]string) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && !isSetting(key) {
			leafKeys(key, sub, isSetting, out)
			continue
		}
		*out = append(*out, key)
	}
}

// TestExampleConfigHasEveryKey fails when a key of settings is missing from
// deploy/config.example.yaml (as a setting or a commented-out setting), or
// the example has a key that is not a setting.
func TestExampleConfigHasEveryKey(t *testing.T) {
	example, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(uncomment(t, example), &doc); err != nil {
		t.Fatalf("the example with every setting uncommented is not valid YAML: %v", err)
	}
	var want []string
	for _, s := range settings {
		want = append(want, s.key)
	}
	isSetting := func(k string) bool { return slices.Contains(want, k) }
	var got []string
	leafKeys("", doc, isSetting, &got)
	sort.Strings(want)
	sort.Strings(got)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("%s is missing from %s: add it, commented out with its default and a comment", k, exampleConfig)
		}
	}
	for _, k := range got {
		if !isSetting(k) {
			t.Errorf("%s in %s is not a setting (a typo, or a key that was removed?)", k, exampleConfig)
		}
	}
}

// TestExampleConfigShowsDefaults checks that every value the example shows
// for a key with a non-empty default is that default.
func TestExampleConfigShowsDefaults(t *testing.T) {
	example, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(uncomment(t, example))); err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !v.InConfig(s.key) {
			continue // reported by TestExampleConfigHasEveryKey
		}
		var got any
		switch d := s.def.(type) {
		case string:
			if d == "" {
				continue // the example shows a sample value
			}
			got = v.GetString(s.key)
		case int:
			got = v.GetInt(s.key)
		case int64:
			got = v.GetInt64(s.key)
		case time.Duration:
			got = v.GetDuration(s.key)
		case float64:
			got = v.GetFloat64(s.key)
		case bool:
			got = v.GetBool(s.key)
		default:
			continue
		}
		if got != s.def {
			t.Errorf("%s: the example shows %v, the default is %v", s.key, got, s.def)
		}
	}
}

// TestExampleConfigLoads loads the example as shipped, given the secret in
// the environment as the systemd unit and the Kubernetes manifests do, and
// with every commented-out setting enabled.
func TestExampleConfigLoads(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "xmpp-secret")
	tokenFile := filepath.Join(dir, "admin-token")
	for _, f := range []string{secretFile, tokenFile} {
		if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hmacFile := filepath.Join(dir, "admin-hmac-secret")
	if err := os.WriteFile(hmacFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("as shipped", func(t *testing.T) {
		c, err := load(t, map[string]string{"ROSTER_SIDECAR_XMPP_SECRET_FILE": secretFile}, exampleConfig)
		if err != nil {
			t.Fatal(err)
		}
		if c.XMPPDomain != "roster.example.com" || c.UserDomain != "example.com" || c.XMPPSecret != "s3cret" ||
			c.RosterURL != "https://app.example.com/api/roster/%s" || c.AdminListen != "127.0.0.1:5380" {
			t.Fatalf("unexpected config: %+v", c)
		}
	})

	t.Run("everything uncommented", func(t *testing.T) {
		example, err := os.ReadFile(exampleConfig)
		if err != nil {
			t.Fatal(err)
		}
		// http_roster_url and http_roster_url_file exclude each other: the
		// example sets the first and shows the second commented out.
		var config []string
		for line := range strings.Lines(string(uncomment(t, example))) {
			if !strings.HasPrefix(line, "http_roster_url:") {
				config = append(config, line)
			}
		}
		file := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(file, []byte(strings.Join(config, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		urlFile := filepath.Join(dir, "roster-url")
		// The example's user_domains lists two domains: the URL carries
		// {domain}.
		if err := os.WriteFile(urlFile, []byte("https://app.example.com/api/roster/%s?token=t&domain={domain}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The environment beats the file: the sample paths are replaced by
		// real files, as the systemd unit does with its credentials.
		c, err := load(t, map[string]string{
			"ROSTER_SIDECAR_XMPP_SECRET_FILE":           secretFile,
			"ROSTER_SIDECAR_ADMIN_TOKEN_FILE":           tokenFile,
			"ROSTER_SIDECAR_ADMIN_HMAC_SECRET_FILE":     hmacFile,
			"ROSTER_SIDECAR_EJABBERD_API_PASSWORD_FILE": tokenFile,
			"ROSTER_SIDECAR_HTTP_ROSTER_URL_FILE":       urlFile,
		}, file)
		if err != nil {
			t.Fatal(err)
		}
		if c.XMPPSecret != "s3cret" || c.AdminToken != "s3cret" || c.EjabberdAPIPass != "s3cret" ||
			c.AdminHMACSecret != "0123456789abcdef0123456789abcdef" ||
			c.RosterURL != "https://app.example.com/api/roster/%s?token=t&domain={domain}" ||
			!slices.Equal(c.UserDomains, []string{"example.com", "example.net"}) {
			t.Fatalf("secrets not read from the files: %+v", c)
		}
	})
}

// TestDeployFilesUseSettings checks that every ROSTER_SIDECAR_* variable
// that the files in deploy/ set names a setting.
func TestDeployFilesUseSettings(t *testing.T) {
	known := map[string]bool{}
	for _, s := range settings {
		known[envName(s.key)] = true
	}
	envVar := regexp.MustCompile(envPrefix + `_[A-Z0-9_]+`)
	for _, f := range []string{
		"../../deploy/systemd/roster-sidecar.service",
		"../../deploy/kubernetes/deployment.yaml",
		"../../deploy/container/Containerfile",
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := envVar.FindAllString(string(b), -1)
		if len(names) == 0 && !strings.HasSuffix(f, "Containerfile") {
			t.Errorf("%s sets no %s_* variable", f, envPrefix)
		}
		for _, n := range names {
			if !known[n] {
				t.Errorf("%s uses %s, which is not a setting", f, n)
			}
		}
	}
}

// TestKubernetesConfigLoads loads the config.yaml of the Kubernetes
// ConfigMap with the secrets as deployment.yaml passes them.
func TestKubernetesConfigLoads(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	secret := filepath.Join(dir, "secret")
	for name, content := range map[string]string{file: cm.Data["config.yaml"], secret: "s3cret"} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := load(t, map[string]string{
		"ROSTER_SIDECAR_XMPP_SECRET_FILE": secret,
		"ROSTER_SIDECAR_ADMIN_TOKEN_FILE": secret,
	}, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminListen != "0.0.0.0:5380" || c.AdminToken == "" || !c.LogJSON {
		t.Fatalf("unexpected config: %+v", c)
	}
}
