//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// bulkUsers is how many users TestBulkThroughDaemon syncs with sync
// --from-file, and bulkDelay how long the backend takes for each of them,
// so that the job lasts a few seconds (admin.concurrency 8: at least
// bulkUsers*bulkDelay/8) and a refresh can run meanwhile.
const (
	bulkUsers = 300
	bulkDelay = 100 * time.Millisecond
)

// Series TestBulkThroughDaemon reads in the daemon's metrics.
const (
	syncsOK         = `roster_sidecar_user_syncs_total{domain="example.test",result="ok"}`
	bulkRequests    = `roster_sidecar_refresh_requests_total{code="200",route="/roster_admin/refresh"}`
	xmppReconnects  = `roster_sidecar_xmpp_reconnects_total`
	xmppConnected   = `roster_sidecar_xmpp_connected`
	privilegeOnUser = `roster_sidecar_roster_privilege_granted{domain="example.test"}`
)

// TestBulkThroughDaemon runs the one-shot commands beside a running serve
// on each server. sync --from-file of bulkUsers users goes through serve's
// admin API, with progress, while a refresh the backend asks for meanwhile
// is answered; check and diff report through it too. The component
// connection stays serve's only one: the commands open none (Prosody would
// refuse a second one with conflict, ejabberd would drop the privileges of
// both), which the daemon's metrics show: not one reconnection, the
// privilege granted throughout, and every sync counted by it.
func TestBulkThroughDaemon(t *testing.T) {
	runPerServer(t, servers{}, testBulkThroughDaemon)
}

func testBulkThroughDaemon(t *testing.T, e *Env) {
	requireSidecar(t)
	const other = "bulk_other"
	users := make([]string, bulkUsers)
	for i := range users {
		users[i] = fmt.Sprintf("bulk_%03d", i)
	}
	e.Users(t, append([]string{other}, users...)...)
	friend := harness.Contact{JID: other + "@example.test", Name: "Other", Groups: []string{"Bulk"}}
	for _, u := range users {
		e.Backend.Set(u, harness.Reply{Contacts: []harness.Contact{friend}, Delay: bulkDelay})
	}
	first := harness.Contact{JID: users[0] + "@example.test", Name: "First"}
	e.Backend.SetRoster(other, first)
	file := filepath.Join(harness.TempDir(t, "bulk-"), "users.txt")
	if err := os.WriteFile(file, []byte(strings.Join(users, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	sc := e.StartSidecar(t, sidecarOptions(mainPing))
	logOnFailure(t, sc.Process)
	env := append(harness.SidecarEnv(e.Server, e.Backend),
		"ROSTER_SIDECAR_ADMIN_LISTEN="+strings.TrimPrefix(e.Admin.BaseURL, "http://"),
		"ROSTER_SIDECAR_ADMIN_TOKEN="+adminToken)
	via := "via daemon: roster-sidecar serve at " + e.Admin.BaseURL + " (version "
	before := metricsOf(t, e)

	// sync --from-file, and a refresh while it runs.
	start := time.Now()
	syncDone := make(chan commandResult, 1)
	go func() {
		syncDone <- startCommand(env, 10*time.Minute, "sync", "--from-file", file, "--progress-interval", "500ms")
	}()
	waitForFetches(t, e, users, 30, 2*time.Minute)
	refresh := e.Admin.RefreshOK(t, other)
	expectCounts(t, refresh, other, 1, 0, 0)
	refreshed := time.Since(start)
	select {
	case r := <-syncDone:
		t.Errorf("sync ended (after %v) before the refresh was answered (after %v): they did not overlap", r.elapsed, refreshed)
		syncDone <- r
	default:
		t.Logf("%s: a refresh of %s answered 200 after %v, while sync was running", e.Server.Name, other, refreshed.Round(time.Millisecond))
	}
	var r commandResult
	select {
	case r = <-syncDone:
	case <-time.After(11 * time.Minute):
		t.Fatal("sync did not end")
	}
	r.expect(t, 0, via, ", sharing its XMPP connection\n",
		fmt.Sprintf("syncing %d users through the daemon, 100 per request, 8 at once\n", bulkUsers),
		fmt.Sprintf("synced %d of %d users in ", bulkUsers, bulkUsers), ": 0 failed\n",
		fmt.Sprintf("roster items: %d added, 0 updated, 0 removed; 0 contacts skipped\n", bulkUsers))
	progress := regexp.MustCompile(fmt.Sprintf(`(?m)^progress: \d+/%d users, 0 errors, `, bulkUsers)).FindAllString(r.stdout, -1)
	if len(progress) == 0 {
		t.Errorf("sync printed no progress line:\n%s", r.stdout)
	}
	t.Logf("%s: sync of %d users through the daemon took %v, %d progress lines:\n%s", e.Server.Name, bulkUsers, r.elapsed.Round(time.Millisecond), len(progress), r.stdout)

	// check and diff through the daemon.
	helper := "helper:     missing on example.test (optional; "
	switch {
	case e.Server.PresenceHelper:
		helper = "helper:     ok: example.test answers urn:xmpp:roster-sidecar:0 (mod_roster_sidecar)"
	case e.Server.Kind == "ejabberd": // it answers no disco#info of a component
		helper = "helper:     missing on example.test, and example.test did not answer disco#info, as ejabberd does\n" +
			"presence:   on ejabberd in XEP-0356 mode contacts NEVER see each other's presence"
	}
	check := startCommand(env, time.Minute, "check", "--user", other)
	check.expect(t, 0, "daemon:     ok: roster-sidecar serve at "+e.Admin.BaseURL,
		"backend:    ok: roster of bulk_other: 1 contacts, 0 skipped",
		"xmpp:       ok: serve is connected to "+e.Server.ComponentAddr+" as "+e.Server.ComponentDomain+"\n",
		"privileges: example.test: roster=both",
		"ready:      ok: the component may read and write the rosters of example.test\n",
		helper)
	diff := startCommand(env, 5*time.Minute, "diff", "--from-file", file, other)
	diff.expect(t, 0, via, fmt.Sprintf("%d users: 0 would change, %d up to date, 0 could not be read\n", bulkUsers+1, bulkUsers+1))

	// The rosters are on the server, as a client fetches them.
	for _, u := range []string{users[0], users[bulkUsers/2], users[bulkUsers-1]} {
		c := Login(t, e.Server, u)
		if d := DiffRoster([]harness.Contact{friend}, c.FetchRoster(t), e.Server.HonoursSubscription); d != "" {
			t.Errorf("%s: %s", u, d)
		}
		c.Close()
	}

	// One component connection throughout: serve's.
	after := metricsOf(t, e)
	expectDelta(t, before, after, map[string]float64{
		syncsOK:        bulkUsers + 1,
		bulkRequests:   bulkUsers/100 + 1, // sync's, and the backend's refresh
		xmppReconnects: 0,
	})
	if after[xmppConnected] != 1 || after[privilegeOnUser] != 1 {
		t.Errorf("after the commands: %s %v, %s %v", xmppConnected, after[xmppConnected], privilegeOnUser, after[privilegeOnUser])
	}
}

// waitForFetches waits until the backend has been asked for at least n of
// users.
func waitForFetches(t *testing.T, e *Env, users []string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		asked := 0
		for _, u := range users {
			if len(e.Backend.Requests(u)) > 0 {
				asked++
			}
		}
		if asked >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the backend was asked for %d users, want %d", timeout, asked, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// commandResult is how a run of the binary ended.
type commandResult struct {
	args           []string
	code           int
	err            error
	stdout, stderr string
	elapsed        time.Duration
}

// startCommand runs the binary with args and env, within timeout, and
// returns how it ended; it may run on another goroutine than the test's.
func startCommand(env []string, timeout time.Duration, args ...string) commandResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sidecarBinary, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := commandResult{args: args, err: err, stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code, r.err = exit.ExitCode(), nil
	}
	return r
}

// expect checks the exit status and that standard output holds every
// want, logging the output on a mismatch.
func (r commandResult) expect(t *testing.T, code int, wants ...string) {
	t.Helper()
	name := "roster-sidecar " + strings.Join(r.args, " ")
	failed := false
	if r.err != nil {
		t.Errorf("%s: %v", name, r.err)
		failed = true
	} else if r.code != code {
		t.Errorf("%s: exit %d, want %d", name, r.code, code)
		failed = true
	}
	for _, want := range wants {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("%s: output lacks %q", name, want)
			failed = true
		}
	}
	if failed {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}
