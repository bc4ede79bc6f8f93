package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// ejabberdInetrc keeps Erlang's resolver from reading /etc/hosts variants
// it cannot find in the temporary configuration directory.
const ejabberdInetrc = `{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost","hostalias"]}.
{file, resolv, "/etc/resolv.conf"}.
`

// startEjabberd runs `ejabberdctl ... foreground` with
// deploy/ejabberd/ejabberd.yml unchanged: per-run values are passed as
// EJABBERD_MACRO_<NAME> environment variables, which ejabberd (>= 23.10)
// substitutes for the file's define_macro defaults. ejabberdctl's own
// settings come from e2e/testdata/ejabberdctl.cfg, also driven by the
// environment.
func startEjabberd(t TB, o ServerOptions) *Server {
	t.Helper()
	dir := TempDir(t, "e2e-ejabberd-")
	for _, d := range []string{"spool", "logs", "modules.d"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "inetrc"), []byte(ejabberdInetrc), 0o600); err != nil {
		t.Fatal(err)
	}
	cookie := make([]byte, 16)
	_, _ = rand.Read(cookie)

	ports := FreePorts(t, 4)
	c2s, comp, api, dist := ports[0], ports[1], ports[2], ports[3]
	logLevel := "info"
	if Debug() {
		logLevel = "debug"
	}
	node := fmt.Sprintf("e2e%d_%d@localhost", os.Getpid(), dist)
	env := append(os.Environ(),
		// ejabberdctl.cfg
		"E2E_EJABBERD_DIR="+dir,
		"E2E_EJABBERD_NODE="+node,
		"E2E_EJABBERD_DIST_PORT="+strconv.Itoa(dist),
		"E2E_EJABBERD_COOKIE="+hex.EncodeToString(cookie),
		"E2E_EJABBERD_ERL_OPTIONS="+o.ErlOptions,
		"E2E_EJABBERD_PID_PATH="+filepath.Join(dir, "ejabberd.pid"),
		// macros of ejabberd.yml; values are YAML: quote strings that
		// could read as something else.
		"EJABBERD_MACRO_XMPP_DOMAIN="+UserDomain,
		"EJABBERD_MACRO_XMPP_DOMAINS="+yamlList(o.domains()),
		"EJABBERD_MACRO_COMPONENT_DOMAIN="+componentDomain,
		"EJABBERD_MACRO_COMPONENT_SECRET="+strconv.Quote(componentSecret),
		`EJABBERD_MACRO_COMPONENT_IP="127.0.0.1"`,
		"EJABBERD_MACRO_COMPONENT_PORT="+strconv.Itoa(comp),
		`EJABBERD_MACRO_C2S_IP="127.0.0.1"`,
		"EJABBERD_MACRO_C2S_PORT="+strconv.Itoa(c2s),
		"EJABBERD_MACRO_C2S_STARTTLS_REQUIRED=false",
		"EJABBERD_MACRO_CERTFILES=[]",
		`EJABBERD_MACRO_HTTP_API_IP="127.0.0.1"`,
		"EJABBERD_MACRO_HTTP_API_PORT="+strconv.Itoa(api),
		"EJABBERD_MACRO_LOGLEVEL="+logLevel,
	)
	env = append(env, o.Env...)

	cmd := serverCommand(o, "ejabberdctl",
		"--config-dir", dir,
		"--config", RepoFile(t, "deploy", "ejabberd", "ejabberd.yml"),
		"--ctl-config", RepoFile(t, "e2e", "testdata", "ejabberdctl.cfg"),
		"--spool", filepath.Join(dir, "spool"),
		"--logs", filepath.Join(dir, "logs"),
		"foreground")
	cmd.Dir = dir
	cmd.Env = env
	start := time.Now()
	p := startProcess(t, "ejabberd", cmd)

	s := &Server{
		Name:            "ejabberd",
		Kind:            "ejabberd",
		Domain:          UserDomain,
		Domains:         o.domains(),
		C2SAddr:         "127.0.0.1:" + strconv.Itoa(c2s),
		ComponentAddr:   "127.0.0.1:" + strconv.Itoa(comp),
		ComponentDomain: componentDomain,
		ComponentSecret: componentSecret,
		Process:         p,
		Erlang:          &ErlangNode{Name: node, Cookie: hex.EncodeToString(cookie), DistPort: dist},
		owner:           t,
	}
	apiURL := "http://127.0.0.1:" + strconv.Itoa(api) + "/api/"
	s.APIURL = apiURL
	client := &http.Client{Timeout: 10 * time.Second}
	s.createUsers = func(ctx context.Context, domain, password string, names []string) error {
		g, ctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, name := range names {
			g.Go(func() error {
				return ejabberdAPI(ctx, client, apiURL+"register", map[string]string{
					"user": name, "host": domain, "password": password,
				})
			})
		}
		return g.Wait()
	}

	s.waitReady = func(ctx context.Context, p *Process) error {
		ready := func() error {
			return ejabberdAPI(ctx, client, apiURL+"registered_users", map[string]string{"host": UserDomain})
		}
		if err := WaitFor(ctx, p, 60*time.Second, "ejabberd's HTTP API", ready); err != nil {
			return err
		}
		for _, addr := range []string{s.C2SAddr, s.ComponentAddr} {
			if err := WaitFor(ctx, p, 20*time.Second, "ejabberd to listen on "+addr, DialCheck(addr)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.waitReady(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "logs", "error.log")); err == nil && len(b) > 0 {
				t.Logf("---- ejabberd error.log ----\n%s", b)
			}
		}
	})
	t.Logf("ejabberd ready in %v: c2s %s, component %s", time.Since(start).Round(time.Millisecond), s.C2SAddr, s.ComponentAddr)
	return s
}

// yamlList is a YAML flow sequence of strings, e.g. ["a.test", "b.test"].
func yamlList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// ejabberdAPI calls one mod_http_api command and expects 200.
func ejabberdAPI(ctx context.Context, client *http.Client, url string, args any) error {
	body, err := json.Marshal(args)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// Name the virtual host, or ejabberd warns that mod_http_api is not
	// configured for host 127.0.0.1.
	req.Host = UserDomain
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s %s: %s: %s", url, body, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
