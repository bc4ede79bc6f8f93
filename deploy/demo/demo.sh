#!/usr/bin/env bash
# make demo: Prosody 13 on loopback (with roster-sidecar's helper) + the
# example backend + roster-sidecar; alice and bob online, the login refresh,
# then one refresh through the admin API that makes them friends: each
# client gets the other as a contact and sees it online at once; carol
# gets her roster at login. Stays up (alice's client prints roster pushes
# and presence) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
demo=$root/deploy/demo
work=$(mktemp -d /tmp/roster-sidecar-demo.XXXXXX)
pids=()

cleanup() {
	# Once: a second signal (make and timeout may both send one) must not
	# cut the clean-up short.
	trap - EXIT
	trap '' INT TERM
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

# The backend's rosters: deploy/demo/rosters.json, except that alice and bob
# are not friends yet; the demo makes them friends later by pointing the
# backend at deploy/demo/rosters.json itself.
python3 - "$demo/rosters.json" "$work/rosters.json" <<'PY'
import json, sys
rosters = json.load(open(sys.argv[1]))
del rosters["alice"]["bob@example.test"], rosters["bob"]["alice@example.test"]
json.dump(rosters, open(sys.argv[2], "w"), indent=2)
PY
echo "== starting the example backend on 127.0.0.1:15381 (rosters from deploy/demo/rosters.json;"
echo "   alice and bob are not friends yet)"
"$work/backend" -listen 127.0.0.1:15381 -rosters "$work/rosters.json" >>"$work/backend.log" 2>&1 &
pids+=($!)

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
grep -o 'server helper found[^"]*' "$work/sidecar.log" | sed 's/^/   (sidecar log: /; s/$/)/' || true

# Clients that stay online write to $work/NAME.out; show NAME prints, as
# "  NAME | ...", what NAME's client printed since the last show.
declare -A shown client
online() { # online NAME: NAME's client comes online (rosterclient -watch)
	"$work/rosterclient" -addr 127.0.0.1:15222 -jid "$1@example.test" -password demo -watch >"$work/$1.out" 2>&1 &
	pids+=($!)
	client[$1]=$!
	shown[$1]=0
}
show() {
	local n
	n=$(wc -l <"$work/$1.out")
	sed -n "$((shown[$1] + 1)),${n}p" "$work/$1.out" | sed "s/^/  $(printf '%-5s' "$1") | /"
	shown[$1]=$n
}
printed() { grep -q -- "$2" "$work/$1.out"; } # printed NAME TEXT

echo "== alice and bob come online; their clients stay online and print what they receive"
echo "   (each fetches its roster, then sends its presence: roster-sidecar refreshes each at"
echo "   login, sync.on_login; the backend lists carol for alice, nobody for bob)"
online alice
wait_for "alice's login refresh" printed alice 'push: carol@example.test'
show alice
online bob
wait_for "bob to come online" printed bob 'watching'
wait_for "bob's login refresh" grep -q 'roster requested user=bob' "$work/backend.log"
show bob

echo "== in the app, alice and bob become friends: the backend lists them as friends"
echo "   (deploy/demo/rosters.json) and the app asks roster-sidecar to refresh both"
ln -sf "$demo/rosters.json" "$work/rosters.json"
echo "== POST /roster_admin/refresh [\"alice\",\"bob\"]"
curl -sS -X POST -H 'Content-Type: application/json' -d '["alice","bob"]' \
	http://127.0.0.1:15380/roster_admin/refresh | python3 -m json.tool
wait_for "alice to see bob online" printed alice 'presence: bob@example.test/.* available'
wait_for "bob to see alice online" printed bob 'presence: alice@example.test/.* available'
echo "== each client got the other as a contact, and at once the other's presence: online"
show alice
show bob

echo "== carol was not in the refresh: she logs in with an empty roster, roster-sidecar"
echo "   refreshes it at her login (sync.on_login), her client gets the push and alice's"
echo "   presence; she stays 3 s"
timeout 3 "$work/rosterclient" -addr 127.0.0.1:15222 -jid carol@example.test -password demo -watch | sed 's/^/  carol | /' || true
wait_for "alice to see carol leave" printed alice 'presence: carol@example.test/.* unavailable'
echo "== meanwhile alice's client saw carol come and go"
show alice

cat <<MSG

Everything runs on loopback. Try it:
  edit $demo/rosters.json, then
  curl -X POST -d '["alice"]' http://127.0.0.1:15380/roster_admin/refresh
alice's client below prints the roster pushes and presence. Logs: $work/*.log
Ctrl-C stops everything.
MSG
tail -n +"$((shown[alice] + 1))" -f --pid="${client[alice]}" "$work/alice.out" | sed -u 's/^/  alice | /' &
wait $! || true
