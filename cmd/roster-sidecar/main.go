// Command roster-sidecar keeps XMPP users' rosters equal to what an
// application backend says. It connects to Prosody or ejabberd as an
// external component (XEP-0114) with privileged roster access (XEP-0356)
// and serves an HTTP API that backends call when rosters change.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version names a release when the build sets it (-ldflags
// "-X main.version=v1.2.3", as the container build does); otherwise the
// module version from the build info is shown.
var version string

// versionString is the version, the VCS revision and the Go release the
// binary was built from, as its build info records them.
func versionString() string {
	v, revision, modified := version, "", false
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	details := []string{}
	if revision != "" {
		if modified {
			revision += "+modified"
		}
		details = append(details, "revision "+revision)
	}
	details = append(details, runtime.Version())
	return v + " (" + strings.Join(details, ", ") + ")"
}

// main runs the command line; SIGINT or SIGTERM ends the context of the
// command, which stops gracefully.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // a failed run, a failed user, a failed check
	exitUsage   = 2 // bad flags or arguments (diff: also "could not compare")
)

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var exit exitError
	if errors.As(err, &exit) {
		return int(exit) // the command has said why
	}
	fmt.Fprintln(stderr, "roster-sidecar:", err)
	var usage usageError
	if errors.As(err, &usage) {
		return exitUsage
	}
	return exitFailure
}

// exitError ends the program with this status; the command has already
// printed why.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "roster-sidecar",
		Short: "Keep XMPP rosters equal to your application's contact lists",
		Long: `roster-sidecar connects to Prosody or ejabberd as an external component
(XEP-0114) with privileged roster access (XEP-0356) and makes users' rosters
equal to what your application's backend says.

  serve   run the daemon: the XMPP link and the admin API your backend calls
  sync    sync some users (or a whole user base from a file) once, and exit
  diff    show what a sync would change, changing nothing
  check   check the config, the backend and the XMPP server's privileges

Servers accept one connection per component: while serve runs, sync, diff and
check work through its admin API (found at admin.listen of the same config)
and share its connection; otherwise they open their own (--local forces it).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(serveCmd(), syncCmd(), diffCmd(), checkCmd(), versionCmd())
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  roster-sidecar version",
		Args:    usageArgs(cobra.NoArgs),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "roster-sidecar", versionString())
		},
	}
}
