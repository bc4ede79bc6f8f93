package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"roster-sidecar/daemon"
	"roster-sidecar/rosterhttp"
)

// oneShot is what sync, diff and check share: the config flags (with
// log.level warn by default, as they print their own report), --wait and
// --local.
type oneShot struct {
	conf *commandConfig
	wait time.Duration
	// local: connect as the component, without looking for a running
	// serve (findDaemon).
	local bool
}

func addOneShotFlags(cmd *cobra.Command) *oneShot {
	o := &oneShot{conf: addConfigFlags(cmd, "warn")}
	cmd.Flags().DurationVar(&o.wait, "wait", 15*time.Second, "how long to wait for the XMPP connection and the roster privilege (through a daemon: for it to be ready again)")
	cmd.Flags().BoolVar(&o.local, "local", false, "connect as the component with a connection of its own, without looking for a running serve at admin.listen (never while serve runs: the server refuses a second connection, or on ejabberd drops the privileges of both)")
	return o
}

// connect builds the parts, runs them and waits for the roster
// privilege. The caller stops the session it gets.
func (o *oneShot) connect(ctx context.Context, cfg daemon.Config, log *slog.Logger) (*session, error) {
	p, err := daemon.Build(cfg, log, nil, false)
	if err != nil {
		return nil, err
	}
	s := start(ctx, p)
	if err := p.WaitReady(ctx, o.wait); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// session is the parts of a one-shot command, running.
type session struct {
	*daemon.Parts
	cancel context.CancelFunc
	done   chan error
}

// start runs p until stop.
func start(ctx context.Context, p *daemon.Parts) *session {
	ctx, cancel := context.WithCancel(ctx)
	s := &session{Parts: p, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- p.Run(ctx) }()
	return s
}

// stop ends the syncs and closes the XMPP stream, and waits for both.
func (s *session) stop() {
	s.cancel()
	<-s.done
}

// usersFlag is --from-file of sync and diff.
type usersFlag struct{ file string }

func addUsersFlag(cmd *cobra.Command) *usersFlag {
	u := &usersFlag{}
	cmd.Flags().StringVarP(&u.file, "from-file", "f", "", `file of usernames, one a line; blank lines and lines starting with # are ignored ("-": standard input)`)
	return u
}

// maxListedInvalid bounds the invalid usernames listed in one error.
const maxListedInvalid = 20

// read returns the distinct normalised usernames of args and then of the
// file, in order: localparts of the default domain (the first of domains),
// bare JIDs on the others. Every name is validated first; the error lists
// the invalid ones, with their line numbers in the file (a user of a
// domain not served is invalid).
func (u *usersFlag) read(args []string, stdin io.Reader, domains []string) ([]string, error) {
	type name struct{ where, text string }
	var names []name
	for _, a := range args {
		names = append(names, name{"argument", a})
	}
	if u.file != "" {
		r := stdin
		if u.file != "-" {
			f, err := os.Open(u.file)
			if err != nil {
				return nil, usageError{fmt.Errorf("--from-file: %w", err)}
			}
			defer f.Close()
			r = f
		}
		sc := bufio.NewScanner(r)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			names = append(names, name{fmt.Sprintf("%s line %d", u.file, n), line})
		}
		if err := sc.Err(); err != nil {
			return nil, usageError{fmt.Errorf("--from-file %s: %w", u.file, err)}
		}
	}
	if len(names) == 0 {
		return nil, usageError{errors.New("no users: name them as arguments or in --from-file")}
	}
	var users, invalid []string
	seen := map[string]bool{}
	for _, n := range names {
		user, domain, err := rosterhttp.ParseUser(n.text, domains)
		if err != nil {
			invalid = append(invalid, fmt.Sprintf("%s: %v", n.where, err))
			continue
		}
		if domain != domains[0] {
			user += "@" + domain
		}
		if !seen[user] {
			seen[user] = true
			users = append(users, user)
		}
	}
	if count := len(invalid); count > 0 {
		more := ""
		if len(invalid) > maxListedInvalid {
			more = fmt.Sprintf("\n  ... and %d more", len(invalid)-maxListedInvalid)
			invalid = invalid[:maxListedInvalid]
		}
		return nil, usageError{fmt.Errorf("%d invalid username(s), nothing done:\n  %s%s", count, strings.Join(invalid, "\n  "), more)}
	}
	return users, nil
}

// each calls fn for every user, n at once, and returns when all calls
// have returned. Users not yet started when ctx ends are left out; each
// returns how many were started.
func each(ctx context.Context, n int, users []string, fn func(i int, user string)) int {
	var g errgroup.Group
	g.SetLimit(max(1, n))
	var started atomic.Int64
	for i, user := range users {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { // waits for a free slot
			if ctx.Err() == nil {
				started.Add(1)
				fn(i, user)
			}
			return nil
		})
	}
	_ = g.Wait()
	return int(started.Load())
}
