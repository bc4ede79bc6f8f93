package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"roster-sidecar/rostersync"
)

func syncCmd() *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "sync [USER...] [--from-file FILE]",
		Short: "Sync users' rosters once, through a running serve or on its own",
		Long: `Syncs every user named (as arguments and/or one per line in --from-file) with
the same Syncer as serve (admin.concurrency users at once; sync.timeout bounds
each user's fetch and read, and each stall of its writes), and exits. Use it
for the first population of a whole user base.

When serve runs (its admin API answers at admin.listen of the same config,
with admin.token or admin.hmac_secret), the users are refreshed through it,
--batch-size at a time (POST /roster_admin/refresh): the one component
connection the server accepts stays serve's, and the backend's refreshes go
on meanwhile. Otherwise, or with --local, sync connects to the XMPP server as
the component itself and waits for the roster privilege. The first line says
which.

On a terminal a progress bar shows users done/total, errors, rate and time
left; otherwise a plain progress line is printed every --progress-interval.
At the end each failed user is printed with its error, then a summary.
A username is a localpart of the default user domain, or user@domain on any
of xmpp.user_domains. Usernames are validated before anything is synced
(a domain not served is invalid). Ctrl-C stops starting new users and lets
the running ones finish (through serve: the requests sent).

Exit status: 0 every user synced; 1 a user failed, the config is invalid or
the XMPP server is not usable (the message says what to fix); 2 bad arguments
such as an invalid username.`,
		Example: `  roster-sidecar sync --config /etc/roster-sidecar/config.yaml john aaron
  roster-sidecar sync -c config.yaml --from-file users.txt
  roster-sidecar sync -c config.yaml --from-file users.txt --local   # serve stopped, or not listening
  psql -Atc 'select username from users' | roster-sidecar sync -c config.yaml --from-file -`,
	}
	o := addOneShotFlags(cmd)
	from := addUsersFlag(cmd)
	batch := addBatchFlag(cmd)
	cmd.Flags().DurationVar(&interval, "progress-interval", 10*time.Second, "how often a progress line is printed when standard output is not a terminal")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := o.conf.load()
		if err != nil {
			return err
		}
		users, err := from.read(args, cmd.InOrStdin(), cfg.Domains())
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		d, why, err := o.findDaemon(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), describeDaemon(d, why))
		if d != nil {
			defer d.close()
			return syncThroughDaemon(ctx, d, users, cmd.OutOrStdout(), interval, *batch, o.wait)
		}
		p, err := o.connect(ctx, cfg, newLogger(cfg, cmd.ErrOrStderr()))
		if err != nil {
			return err
		}
		defer p.stop()
		return syncUsers(ctx, p, users, cmd.OutOrStdout(), interval)
	}
	return cmd
}

// syncUsers syncs users with the parts' Syncer, shows progress on out, and
// prints the failures and a summary.
func syncUsers(ctx context.Context, p *session, users []string, out io.Writer, interval time.Duration) error {
	fmt.Fprintf(out, "syncing %d users, %d at once\n", len(users), p.Config.AdminConcurrency)
	start := time.Now()
	results := make([]rostersync.Result, len(users))
	prog := newProgress(out, len(users), interval)
	each(ctx, p.Config.AdminConcurrency, users, func(i int, user string) {
		results[i] = p.Syncer.Sync(ctx, user)
		prog.done(results[i].Err != nil)
	})
	prog.finish()
	elapsed := time.Since(start)

	var synced, failed, notStarted, added, updated, removed, skipped int
	for i, r := range results {
		switch {
		case r.User == "":
			notStarted++
			continue
		case r.Err != nil:
			failed++
			fmt.Fprintf(out, "failed: %s: %v\n", users[i], r.Err)
		default:
			synced++
		}
		added, updated, removed = added+r.Added, updated+r.Updated, removed+r.Removed
		for _, s := range r.Skipped {
			skipped++
			fmt.Fprintf(out, "skipped: %s: contact %q: %s\n", users[i], s.JID, s.Reason)
		}
	}
	fmt.Fprintf(out, "synced %d of %d users in %s (%.1f users/s): %d failed", synced, len(users),
		elapsed.Round(time.Millisecond), float64(synced+failed)/elapsed.Seconds(), failed)
	if notStarted > 0 {
		fmt.Fprintf(out, ", %d not started (interrupted)", notStarted)
	}
	fmt.Fprintf(out, "\nroster items: %d added, %d updated, %d removed; %d contacts skipped\n", added, updated, removed, skipped)
	if failed > 0 || notStarted > 0 {
		return exitError(exitFailure)
	}
	return nil
}
