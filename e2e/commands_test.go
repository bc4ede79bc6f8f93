//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"roster-sidecar/e2e/harness"
)

// runCommand runs the binary with args and env, checks its exit status and
// that its standard output holds every want, and returns that output.
func runCommand(t *testing.T, env []string, wantCode int, args []string, wants ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sidecarBinary, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("roster-sidecar %s: %v", strings.Join(args, " "), err)
	}
	out := stdout.String()
	failed := code != wantCode
	if failed {
		t.Errorf("roster-sidecar %s: exit %d, want %d", strings.Join(args, " "), code, wantCode)
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			failed = true
			t.Errorf("roster-sidecar %s: output lacks %q", strings.Join(args, " "), want)
		}
	}
	if failed {
		t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	}
	return out
}

// TestCommands runs the one-shot commands of the real binary against each
// real server, with no serve running (nothing listens at admin.listen, so
// they connect as the component themselves; TestBulkThroughDaemon runs them
// beside serve): check passes, diff shows the first population and writes
// nothing, sync applies it, and diff then finds nothing to change. On
// ejabberd, which stores no subscription, diff in auto mode lists the items
// apart as "~?" and still exits 0.
func TestCommands(t *testing.T) {
	runPerServer(t, servers{}, testCommands)
}

func testCommands(t *testing.T, e *Env) {
	srv, backend := e.Server, e.Backend
	requireSidecar(t)
	srv.CreateUsers(t, "cmd_ann", "cmd_bob")
	backend.SetRoster("cmd_ann", harness.Contact{JID: "cmd_bob@example.test", Name: "Bob", Groups: []string{"Friends"}})
	backend.SetRoster("cmd_bob", harness.Contact{JID: "cmd_ann@example.test", Name: "Ann"})
	adminURL := "http://127.0.0.1:" + strconv.Itoa(harness.FreePorts(t, 1)[0])
	env := append(harness.SidecarEnv(srv, backend), "ROSTER_SIDECAR_ADMIN_LISTEN="+strings.TrimPrefix(adminURL, "http://"))
	own := "via own connection: no daemon answers at " + adminURL + " (connection refused)\n"
	helper := "helper:     missing on example.test (optional; "
	switch {
	case srv.PresenceHelper:
		helper = "helper:     ok: example.test answers urn:xmpp:roster-sidecar:0 (mod_roster_sidecar)"
	case srv.Kind == "ejabberd": // it answers no disco#info of a component: the check says what that means
		helper = "helper:     missing on example.test, and example.test did not answer disco#info, as ejabberd does\n" +
			"presence:   on ejabberd in XEP-0356 mode contacts NEVER see each other's presence"
	}
	start := time.Now()
	runCommand(t, env, 0, []string{"check", "--user", "cmd_ann"},
		"daemon:     none: no daemon answers at "+adminURL+" (connection refused): check connects as the component itself\n",
		"backend:    ok: roster of cmd_ann: 1 contacts, 0 skipped",
		"privileges: example.test: roster=both",
		"ready:      ok: the component may read and write the rosters of example.test\n",
		helper)
	t.Logf("%s: check took %v", srv.Name, time.Since(start).Round(time.Millisecond))
	runCommand(t, env, 1, []string{"diff", "cmd_ann", "cmd_bob"}, own,
		"cmd_ann: 1 to add, 0 to change, 0 to remove\n",
		`  + cmd_bob@example.test  name "Bob", groups [Friends], subscription both`+"\n",
		"2 users: 2 would change, 0 up to date, 0 could not be read\n")
	runCommand(t, env, 0, []string{"sync", "cmd_ann", "cmd_bob"}, own,
		"synced 2 of 2 users in ", "roster items: 2 added, 0 updated, 0 removed; 0 contacts skipped\n")
	out := runCommand(t, env, 0, []string{"diff", "cmd_ann", "cmd_bob"}, "2 users: 0 would change, 2 up to date, 0 could not be read\n")
	if srv.HonoursSubscription {
		if !strings.Contains(out, "cmd_ann: up to date\n") {
			t.Errorf("diff after sync on %s:\n%s", srv.Name, out)
		}
	} else if !strings.Contains(out, "  ~? cmd_bob@example.test  subscription none -> both") {
		t.Errorf("diff after sync on %s does not list the subscription apart:\n%s", srv.Name, out)
	}
	runCommand(t, env, 0, []string{"diff", "cmd_ann", "cmd_bob", "--xmpp.compare_subscription", "never", "--local"},
		"via own connection: --local\n", "cmd_ann: up to date\n", "cmd_bob: up to date\n")
}
