#!/usr/bin/env bash
# make demo: Prosody 13 on loopback + the example backend + roster-sidecar,
# one refresh through the admin API, then the roster as alice's client sees
# it. Stays up (alice's client prints roster pushes) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
demo=$root/deploy/demo
work=$(mktemp -d /tmp/roster-sidecar-demo.XXXXXX)
pids=()

cleanup() {
	trap - EXIT INT TERM
	echo
	echo "== stopping"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	rm -rf "$work"
	echo "== stopped"
}
trap cleanup EXIT INT TERM

wait_for() { # wait_for DESCRIPTION COMMAND...
	local what=$1; shift
	for _ in $(seq 1 100); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "demo: timed out waiting for $what; logs in $work" >&2
	tail -n 20 "$work"/*.log >&2 || true
	return 1
}

if ! prosody_version=$(prosodyctl about 2>/dev/null | sed -n 's/^Prosody \([0-9.]*\).*/\1/p' | head -1) ||
	[[ ${prosody_version%%.*} != 13 ]] || [[ ! -e /usr/lib/prosody/modules/mod_privilege/mod_privilege.lua ]]; then
	echo "== installing Prosody 13 and prosody-modules (mod_privilege) from Debian packages"
	bash deploy/install-servers.sh prosody
fi

echo "== building roster-sidecar, the example backend and the demo client"
go build -o "$work/roster-sidecar" ./cmd/roster-sidecar
go build -o "$work/backend" ./deploy/demo/backend
go build -o "$work/rosterclient" ./deploy/demo/rosterclient

echo "== starting Prosody on 127.0.0.1:15222 (clients) and 127.0.0.1:15347 (component)"
export PROSODY_DEPLOY_CONFIG=$root/deploy/prosody/prosody.cfg.lua PROSODY_FIREWALL_SCRIPT=$root/deploy/prosody/roster-sidecar.pfw
export PROSODY_PLUGIN_PATH=$root/deploy/prosody # mod_roster_sidecar, the helper
export PROSODY_USER_DOMAIN=example.test PROSODY_COMPONENT_DOMAIN=roster.example.test
export PROSODY_COMPONENT_SECRET=demo-secret PROSODY_C2S_INTERFACE=127.0.0.1
export PROSODY_C2S_PORT=15222 PROSODY_COMPONENT_PORT=15347
export PROSODY_DATA_DIR=$work/prosody PROSODY_PID_FILE=$work/prosody.pid PROSODY_LOG=$work/prosody.log
mkdir -p "$work/prosody"
for user in alice bob carol; do
	prosodyctl --config "$demo/prosody-demo.cfg.lua" register "$user" example.test demo >/dev/null
done
prosody --config "$demo/prosody-demo.cfg.lua" -F >>"$work/prosody.log" 2>&1 &
pids+=($!)
wait_for "Prosody" bash -c 'exec 3<>/dev/tcp/127.0.0.1/15222'

echo "== starting the example backend on 127.0.0.1:15381 (rosters from deploy/demo/rosters.json)"
"$work/backend" -listen 127.0.0.1:15381 -rosters "$demo/rosters.json" >>"$work/backend.log" 2>&1 &
pids+=($!)

echo "== alice's roster before roster-sidecar starts"
"$work/rosterclient" -addr 127.0.0.1:15222 -jid alice@example.test -password demo

echo "== starting roster-sidecar (admin API on 127.0.0.1:15380)"
ROSTER_SIDECAR_XMPP_ADDRESS=127.0.0.1:15347 \
	ROSTER_SIDECAR_XMPP_DOMAIN=roster.example.test \
	ROSTER_SIDECAR_XMPP_SECRET=demo-secret \
	ROSTER_SIDECAR_XMPP_USER_DOMAIN=example.test \
	ROSTER_SIDECAR_HTTP_ROSTER_URL='http://127.0.0.1:15381/roster/%s' \
	ROSTER_SIDECAR_ADMIN_LISTEN=127.0.0.1:15380 \
	"$work/roster-sidecar" serve >>"$work/sidecar.log" 2>&1 &
pids+=($!)
wait_for "roster-sidecar to be ready" curl -fsS http://127.0.0.1:15380/readyz

echo "== POST /roster_admin/refresh [\"alice\",\"bob\"]"
curl -sS -X POST -H 'Content-Type: application/json' -d '["alice","bob"]' \
	http://127.0.0.1:15380/roster_admin/refresh | python3 -m json.tool

echo "== alice's roster after the refresh"
"$work/rosterclient" -addr 127.0.0.1:15222 -jid alice@example.test -password demo

echo "== carol was not in the refresh: she logs in with an empty roster, and roster-sidecar"
echo "   refreshes it at her login (sync.on_login); her client gets the push"
timeout 3 "$work/rosterclient" -addr 127.0.0.1:15222 -jid carol@example.test -password demo -watch || true

cat <<MSG

Everything runs on loopback. Try it:
  edit $demo/rosters.json, then
  curl -X POST -d '["alice"]' http://127.0.0.1:15380/roster_admin/refresh
alice's client below prints the roster pushes. Logs: $work/*.log
Ctrl-C stops everything.
MSG
"$work/rosterclient" -addr 127.0.0.1:15222 -jid alice@example.test -password demo -watch &
pids+=($!)
wait "${pids[-1]}" || true
