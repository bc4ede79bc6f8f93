package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"roster-sidecar/admin"
	"roster-sidecar/component"
)

// sync, diff and check through a running serve (findDaemon): sync sends
// the users to POST /roster_admin/refresh and diff to POST
// /roster_admin/diff, --batch-size users a request; check reports GET
// /roster_admin/status.

// defaultBatchSize is the default of --batch-size: small enough that
// progress moves every few seconds and that the answers stay small, large
// enough that the requests cost nothing next to the syncs.
const defaultBatchSize = 100

// addBatchFlag registers --batch-size on cmd.
func addBatchFlag(cmd *cobra.Command) *int {
	n := new(int)
	cmd.Flags().IntVar(n, "batch-size", defaultBatchSize, "users per request to a running serve (at most its admin.max_users, and admin.max_body_bytes of usernames)")
	return n
}

// batchOutcome is what one refresh request of sync came to.
type batchOutcome struct {
	synced, failed                   int
	added, updated, removed, skipped int
	// lines are the "failed:" and "skipped:" lines of its users, in order.
	lines []string
	// err is why the request failed as a whole; notSent, when the daemon
	// synced none of its users (it refused the request, or was not ready).
	err     error
	notSent bool
}

// notReadyError is the error of a request the daemon answered 503 to
// until wait ran out or the command was interrupted: nothing was done.
type notReadyError struct{ err error }

func (e *notReadyError) Error() string { return e.err.Error() }
func (e *notReadyError) Unwrap() error { return e.err }

// callReady POSTs body to path as call does, decoding into out() (a fresh
// value for each try), not cancelled by ctx once sent. A 503 (the daemon
// lost its XMPP link, and did nothing) is sent again once the daemon is
// ready, within wait; if it is not, the error is a *notReadyError.
func (d *daemonClient) callReady(ctx context.Context, wait time.Duration, path string, body []byte, out func() any) error {
	send := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.requestTimeout())
		defer cancel()
		return d.call(rctx, http.MethodPost, path, body, out())
	}
	err := send()
	var de *daemonError
	if !errors.As(err, &de) || de.Code != http.StatusServiceUnavailable {
		return err
	}
	if werr := d.waitReady(ctx, wait); werr != nil {
		return &notReadyError{werr}
	}
	if err = send(); errors.As(err, &de) && de.Code == http.StatusServiceUnavailable {
		return &notReadyError{err}
	}
	return err
}

// untouched reports whether the error of a request means that the daemon
// did nothing for it: it refused it (4xx, checked before anything runs) or
// was not ready.
func untouched(err error) bool {
	var nr *notReadyError
	var de *daemonError
	return errors.As(err, &nr) || errors.As(err, &de) && de.Code/100 == 4
}

// syncThroughDaemon syncs users through the daemon's refresh endpoint,
// batch users a request, one request at a time, shows progress on out as
// each answer arrives, and prints the failures and the same summary as
// syncUsers. A request the daemon answers 503 (it lost its XMPP link) is
// sent again once the daemon is ready, within wait; any other failure of a
// whole request stops the job.
//
// One request at a time leaves the daemon's sync slots idle while the last
// users of a request finish: about admin.concurrency/(2*batch) of the
// throughput (4% with the defaults). Two requests in flight would save it,
// but the daemon interleaves their users, so both answer at about the same
// time and the progress moves half as often.
func syncThroughDaemon(ctx context.Context, d *daemonClient, users []string, out io.Writer, interval time.Duration, batch int, wait time.Duration) error {
	size := d.batchSize(batch)
	fmt.Fprintf(out, "syncing %d users through the daemon, %d per request, %d at once\n", len(users), size, d.status.Limits.Concurrency)
	start := time.Now()
	prog := newProgress(out, len(users), interval)
	var outcomes []*batchOutcome
	var stopped error
	sent := 0
	for _, b := range batches(users, size, d.status.Limits.MaxBodyBytes) {
		if ctx.Err() != nil {
			break
		}
		o := d.syncBatch(ctx, b, wait, prog)
		outcomes = append(outcomes, o)
		if !o.notSent {
			sent += len(b)
		}
		if o.err != nil {
			stopped = o.err
			break
		}
	}
	prog.finish()
	elapsed := time.Since(start)

	var total batchOutcome
	for _, o := range outcomes {
		for _, l := range o.lines {
			fmt.Fprintln(out, l)
		}
		total.synced, total.failed = total.synced+o.synced, total.failed+o.failed
		total.added, total.updated, total.removed = total.added+o.added, total.updated+o.updated, total.removed+o.removed
		total.skipped += o.skipped
	}
	fmt.Fprintf(out, "synced %d of %d users in %s (%.1f users/s): %d failed", total.synced, len(users),
		elapsed.Round(time.Millisecond), float64(total.synced+total.failed)/elapsed.Seconds(), total.failed)
	if notStarted := len(users) - sent; notStarted > 0 {
		why := "interrupted"
		if stopped != nil && ctx.Err() == nil {
			why = "stopped: " + stopped.Error()
		}
		fmt.Fprintf(out, ", %d not started (%s)", notStarted, why)
	}
	fmt.Fprintf(out, "\nroster items: %d added, %d updated, %d removed; %d contacts skipped\n", total.added, total.updated, total.removed, total.skipped)
	if total.failed > 0 || sent < len(users) {
		return exitError(exitFailure)
	}
	return nil
}

// syncBatch refreshes users in one request and counts them on prog. Once
// sent, a request is not cancelled with ctx (Ctrl-C): the daemon syncs its
// users anyway, and the answer says how that went.
func (d *daemonClient) syncBatch(ctx context.Context, users []string, wait time.Duration, prog progress) *batchOutcome {
	body, _ := json.Marshal(users)
	var resp admin.RefreshResponse
	err := d.callReady(ctx, wait, "/roster_admin/refresh", body, func() any {
		resp = admin.RefreshResponse{}
		return &resp
	})
	o := &batchOutcome{}
	if err != nil {
		o.err = err
		if o.notSent = untouched(err); o.notSent {
			return o
		}
		// The answer is lost: the daemon may have synced them, or not.
		o.failed = len(users)
		who := users[0]
		if len(users) > 1 {
			who = fmt.Sprintf("%d users (%s ... %s)", len(users), users[0], users[len(users)-1])
		}
		o.lines = append(o.lines, fmt.Sprintf("failed: %s: %v", who, err))
		for range users {
			prog.done(true)
		}
		return o
	}
	for _, r := range resp.Results {
		if r.Status == "ok" {
			o.synced++
		} else {
			o.failed++
			o.lines = append(o.lines, fmt.Sprintf("failed: %s: %s", r.User, r.Error))
		}
		o.added, o.updated, o.removed = o.added+r.Added, o.updated+r.Updated, o.removed+r.Removed
		for _, s := range r.Skipped {
			o.skipped++
			o.lines = append(o.lines, fmt.Sprintf("skipped: %s: contact %q: %s", r.User, s.JID, s.Reason))
		}
		prog.done(r.Status != "ok")
	}
	// The daemon answers one result per distinct user; users are.
	if missing := len(users) - len(resp.Results); missing > 0 {
		o.failed += missing
		o.lines = append(o.lines, fmt.Sprintf("failed: %d users of a request have no result in the daemon's answer", missing))
		for range missing {
			prog.done(true)
		}
	}
	return o
}

// diffThroughDaemon previews users through the daemon's diff endpoint,
// batch users a request, one request at a time, prints the previews in
// the order of users as diffUsers does, and returns the exit status. A 503
// is asked again once the daemon is ready, within wait; any other failure
// of a request stops the dry run.
func diffThroughDaemon(ctx context.Context, d *daemonClient, users []string, out, stderr io.Writer, batch int, compare string, wait time.Duration) int {
	size := d.batchSize(batch)
	if link := d.status.Link; link != nil && link.CompareSubscription != compare {
		fmt.Fprintf(out, "note: the daemon compares subscriptions as its xmpp.compare_subscription says (%s), not %s: pass --local for another setting\n",
			link.CompareSubscription, compare)
	}
	var changed, same, failed, read int
	var stopped error
	for _, b := range batches(users, size, d.status.Limits.MaxBodyBytes) {
		if ctx.Err() != nil {
			break
		}
		body, _ := json.Marshal(b)
		var resp admin.DiffResponse
		err := d.callReady(ctx, wait, "/roster_admin/diff", body, func() any {
			resp = admin.DiffResponse{}
			return &resp
		})
		if err != nil {
			if ctx.Err() == nil {
				stopped = err
			}
			break
		}
		for _, r := range resp.Results {
			read++
			switch p := r.Preview(); {
			case r.Status != "ok":
				failed++
				fmt.Fprintf(out, "%s: error: %s\n", r.User, r.Error)
			case p.Changes() == 0:
				same++
				printPreview(out, r.User, p)
			default:
				changed++
				printPreview(out, r.User, p)
			}
		}
	}
	notRead := len(users) - read
	fmt.Fprintf(out, "%d users: %d would change, %d up to date, %d could not be read", len(users), changed, same, failed+notRead)
	switch {
	case stopped != nil:
		fmt.Fprintf(out, " (%d not asked: %v)", notRead, stopped)
		fmt.Fprintln(stderr, "roster-sidecar:", stopped)
	case notRead > 0:
		fmt.Fprintf(out, " (%d interrupted)", notRead)
	}
	fmt.Fprintln(out)
	switch {
	case failed+notRead > 0:
		return diffTrouble
	case changed > 0:
		return diffChanges
	}
	return diffSame
}

// checkThroughDaemon reports the daemon's link, privileges, readiness and
// server helper, as runCheck reports its own connection's.
func checkThroughDaemon(r *checkReport, d *daemonClient, userDomain string) {
	st, link := d.status, d.status.Link
	if link == nil {
		r.fail("xmpp", "the daemon does not report its XMPP link", "upgrade serve to this version")
		return
	}
	problem := func(label string) {
		if p := link.Problem; p != nil {
			r.fail(label, p.What, p.Fix)
			return
		}
		what := st.Reason
		if what == "" {
			what = link.Error
		}
		r.fail(label, what, "")
	}
	if !link.Connected {
		problem("xmpp")
		return
	}
	r.line("xmpp", "ok: serve is connected to %s as %s", link.Address, link.Component)
	if len(link.Privileges) == 0 {
		r.line("privileges", "none received")
	}
	for i, p := range link.Privileges {
		label := "privileges"
		if i > 0 {
			label = ""
		}
		roster := p.Roster
		if roster == "none" {
			roster = ""
		}
		r.line(label, "%s: %s", p.Domain, component.Grants{Roster: roster, Message: p.Message, Presence: p.Presence})
	}
	if !st.Ready {
		problem("ready")
		return
	}
	r.line("ready", "ok: the component may read and write the rosters of %s", userDomain)
	switch link.Helper {
	case admin.HelperFound:
		helperLine(r, "helper", userDomain, component.ServerInfo{Helper: true})
	case admin.HelperMissing:
		helperLine(r, "helper", userDomain, component.ServerInfo{})
	case admin.HelperSilent:
		helperLine(r, "helper", userDomain, component.ServerInfo{Silent: true})
	case admin.HelperUnknown:
		r.line("helper", "unknown: serve has not finished looking for it; check again in a moment")
	}
}

// settleWait bounds the wait for the daemon's server helper lookup.
const settleWait = 3 * time.Second

// settle gives a daemon that is still connecting for the first time (not
// connected, no failed attempt yet) up to wait to become ready, and one
// that is ready up to settleWait to learn whether the server helper
// answers, as check waits for a connection of its own; then it asks the
// status again. A daemon that failed to connect, or lacks the privilege,
// is reported as it is.
func (d *daemonClient) settle(ctx context.Context, wait time.Duration) {
	link := d.status.Link
	if link == nil {
		return
	}
	switch {
	case !d.status.Ready && !link.Connected && link.Error == "":
		_ = d.waitReady(ctx, wait)
	case d.status.Ready && link.Helper == admin.HelperUnknown:
	default:
		return
	}
	deadline := time.Now().Add(min(wait, settleWait))
	for {
		var st admin.ServerStatus
		if err := d.call(ctx, http.MethodGet, "/roster_admin/status", nil, &st); err != nil {
			return
		}
		d.status = st
		if st.Link == nil || !st.Ready || st.Link.Helper != admin.HelperUnknown || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(readyPoll / 2):
		}
	}
}

// describeDaemon is the line that says whether a command works through a
// daemon: via daemon, or via its own connection, and why.
func describeDaemon(d *daemonClient, why string) string {
	if d != nil {
		return "via daemon: " + why + ", sharing its XMPP connection"
	}
	return "via own connection: " + why
}
