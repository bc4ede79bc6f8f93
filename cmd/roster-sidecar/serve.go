package main

import (
	"github.com/spf13/cobra"

	"roster-sidecar/daemon"
)

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the component and the admin API",
		Long: `Connects to the XMPP server as an external component, waits for the roster
privilege, and serves the admin API (refresh, /healthz, /readyz, /metrics).
Stops gracefully on SIGINT or SIGTERM.

Every setting comes from the config file, ROSTER_SIDECAR_* environment
variables or flags (secrets only from the file, the environment or *_file).`,
		Example: `  roster-sidecar serve --config /etc/roster-sidecar/config.yaml
  ROSTER_SIDECAR_XMPP_SECRET_FILE=/run/secrets/xmpp roster-sidecar serve \
    --xmpp.domain roster.example.com --xmpp.user_domain example.com \
    --http_roster_url 'https://app.example.com/roster/%s'`,
		Args: usageArgs(cobra.NoArgs),
	}
	conf := addConfigFlags(cmd, "")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := conf.load()
		if err != nil {
			return err
		}
		return daemon.Serve(cmd.Context(), cfg, newLogger(cfg, cmd.ErrOrStderr()), versionString())
	}
	return cmd
}
