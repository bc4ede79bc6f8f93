package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"roster-sidecar/roster"
	"roster-sidecar/rostersync"
)

// Exit statuses of diff, as diff(1): no difference, differences, trouble.
const (
	diffSame    = 0
	diffChanges = 1
	diffTrouble = 2
)

func diffCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff [USER...] [--from-file FILE]",
		Short: "Show what a sync would change, changing nothing",
		Long: `A dry run: for each user, fetches the roster from the backend and the current
roster from the XMPP server, and prints what a sync would add (+), change (~,
with the fields that differ) and remove (-), and the backend contacts it would
skip (!). It only reads: it never sends a roster SET. Users are named as for
sync: a localpart of the default user domain, or user@domain.

Subscriptions: with xmpp.compare_subscription always or never the answer is
exact. With auto (the default) a sync learns from a read-back of its own first
write whether the server stores subscriptions (Prosody does, ejabberd does
not); a dry run writes nothing, so it cannot learn. It therefore lists items
that differ only in subscription apart, marked "~?": a sync rewrites them on
Prosody, and on ejabberd only until its first read-back. They do not count
as changes for the exit status. Pass --xmpp.compare_subscription always
(Prosody) or never (ejabberd) for an exact answer.

When serve runs (its admin API answers at admin.listen of the same config,
with admin.token or admin.hmac_secret), the previews are made by it,
--batch-size users a request (POST /roster_admin/diff), on its connection and
with its subscription setting and what it has learnt; otherwise, or with
--local, diff connects as the component itself. The first line says which.

Exit status, as diff(1): 0 no user would change, 1 some would, 2 trouble
(a user's roster could not be read, bad arguments or config, no usable XMPP
connection).`,
		Example: `  roster-sidecar diff --config /etc/roster-sidecar/config.yaml john aaron
  roster-sidecar diff -c config.yaml --from-file users.txt --xmpp.compare_subscription never`,
	}
	o := addOneShotFlags(cmd)
	from := addUsersFlag(cmd)
	batch := addBatchFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		stderr := cmd.ErrOrStderr()
		trouble := func(err error) error {
			fmt.Fprintln(stderr, "roster-sidecar:", err)
			return exitError(diffTrouble)
		}
		cfg, err := o.conf.load()
		if err != nil {
			return trouble(err)
		}
		users, err := from.read(args, cmd.InOrStdin(), cfg.Domains())
		if err != nil {
			return trouble(err)
		}
		ctx := cmd.Context()
		d, why, err := o.findDaemon(ctx, cfg)
		if err != nil {
			return trouble(err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), describeDaemon(d, why))
		if d != nil {
			defer d.close()
			compare := cfg.CompareSub
			if cfg.EjabberdAPIURL != "" && compare == rostersync.CompareAuto {
				compare = rostersync.CompareAlways // as serve sets it in API mode
			}
			if status := diffThroughDaemon(ctx, d, users, cmd.OutOrStdout(), stderr, *batch, compare, o.wait); status != diffSame {
				return exitError(status)
			}
			return nil
		}
		p, err := o.connect(ctx, cfg, newLogger(cfg, stderr))
		if err != nil {
			return trouble(err)
		}
		defer p.stop()
		if status := diffUsers(ctx, p, users, cmd.OutOrStdout()); status != diffSame {
			return exitError(status)
		}
		return nil
	}
	return cmd
}

// diffUsers previews every user, admin.concurrency at once, prints the
// previews in the order of users and returns the exit status.
func diffUsers(ctx context.Context, p *session, users []string, out io.Writer) int {
	type preview struct {
		rostersync.Preview
		err  error
		done chan struct{}
	}
	previews := make([]preview, len(users))
	for i := range previews {
		previews[i].done = make(chan struct{})
	}
	printed := make(chan struct{})
	var changed, same, failed int
	go func() { // prints in order as soon as each preview is there
		defer close(printed)
		for i := range previews {
			select {
			case <-previews[i].done:
			case <-ctx.Done():
				return
			}
			pv := &previews[i]
			switch {
			case pv.err != nil:
				failed++
				fmt.Fprintf(out, "%s: error: %v\n", users[i], pv.err)
			case pv.Changes() == 0:
				same++
				printPreview(out, users[i], pv.Preview)
			default:
				changed++
				printPreview(out, users[i], pv.Preview)
			}
		}
	}()
	each(ctx, p.Config.AdminConcurrency, users, func(i int, user string) {
		previews[i].Preview, previews[i].err = p.Syncer.Preview(ctx, user)
		close(previews[i].done)
	})
	<-printed
	notRead := len(users) - changed - same - failed
	fmt.Fprintf(out, "%d users: %d would change, %d up to date, %d could not be read", len(users), changed, same, failed+notRead)
	if notRead > 0 {
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

func printPreview(out io.Writer, user string, p rostersync.Preview) {
	if p.Changes() == 0 && len(p.SubscriptionOnly) == 0 && len(p.Skipped) == 0 {
		fmt.Fprintf(out, "%s: up to date\n", user)
		return
	}
	fmt.Fprintf(out, "%s: %d to add, %d to change, %d to remove", user, len(p.Add), len(p.Update), len(p.Remove))
	if n := len(p.SubscriptionOnly); n > 0 {
		fmt.Fprintf(out, ", %d differ only in subscription", n)
	}
	if n := len(p.Skipped); n > 0 {
		fmt.Fprintf(out, ", %d skipped", n)
	}
	fmt.Fprintln(out)
	for _, c := range p.Add {
		fmt.Fprintf(out, "  + %s  %s\n", c.JID, describeItem(c.Want))
	}
	for _, c := range p.Update {
		fmt.Fprintf(out, "  ~ %s  %s\n", c.JID, describeChange(c))
	}
	for _, c := range p.SubscriptionOnly {
		fmt.Fprintf(out, "  ~? %s  %s (only where the server stores subscriptions: see diff --help)\n", c.JID, describeChange(c))
	}
	for _, c := range p.Remove {
		fmt.Fprintf(out, "  - %s  (was %s)\n", c.JID, describeItem(c.Have))
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(out, "  ! %q skipped: %s\n", s.JID, s.Reason)
	}
}

// describeItem shows an item's fields: name "Marie", groups [Friends], subscription both.
func describeItem(it roster.Item) string {
	return fmt.Sprintf("name %q, groups %s, subscription %s", it.Name, groupList(it.Groups), it.SubscriptionOrNone())
}

// describeChange shows the fields that differ: name "Mike" -> "Michael".
func describeChange(c rostersync.Change) string {
	var parts []string
	for _, f := range c.Fields {
		switch f {
		case rostersync.FieldName:
			parts = append(parts, fmt.Sprintf("name %q -> %q", c.Have.Name, c.Want.Name))
		case rostersync.FieldGroups:
			parts = append(parts, fmt.Sprintf("groups %s -> %s", groupList(c.Have.Groups), groupList(c.Want.Groups)))
		case rostersync.FieldSubscription:
			parts = append(parts, fmt.Sprintf("subscription %s -> %s", c.Have.SubscriptionOrNone(), c.Want.SubscriptionOrNone()))
		}
	}
	return strings.Join(parts, "; ")
}

func groupList(groups []string) string {
	g := slices.Clone(groups)
	slices.Sort(g)
	g = slices.DeleteFunc(slices.Compact(g), func(s string) bool { return s == "" })
	return "[" + strings.Join(g, ", ") + "]"
}
