#!/usr/bin/env bash
# Installs the XMPP servers roster-sidecar is tested against (and can be
# deployed with) on Debian bookworm, as root:
#   prosody >= 13 and prosody-modules (mod_privilege)  from bookworm-backports
#   ejabberd >= 23.10 (24.12)                           from bookworm-backports
# bookworm itself ships ejabberd 23.01, whose privileged roster SETs all fail,
# and prosody 0.12.
#
# Idempotent: when suitable versions are installed it changes nothing (and
# needs no network). Otherwise it adds a bookworm-backports apt source
# derived from the machine's own Debian source -- the main archive entry only,
# with its suite replaced, so the machine's mirror is reused and no host name
# is written here -- runs apt-get update and installs the packages. Both apt
# source formats are handled: deb822 (/etc/apt/sources.list.d/debian.sources)
# and one-line (/etc/apt/sources.list).
#
# The packages are installed but not started: the tests start their own
# server instances on random loopback ports.
#
# Usage: install-servers.sh [prosody] [ejabberd]   (default: both)
set -euo pipefail

readonly PROSODY_MIN=13.0
readonly PROSODY_MODULES_MIN=0.0~hg20240101
readonly EJABBERD_MIN=23.10
readonly MOD_PRIVILEGE=/usr/lib/prosody/modules/mod_privilege/mod_privilege.lua
# lua-unbound: Prosody's asynchronous DNS resolver; lua-event: libevent
# backend. Both are Recommends of prosody, listed so --no-install-recommends
# setups get them too.
readonly PROSODY_PACKAGES=(prosody prosody-modules lua-unbound lua-event)
readonly EJABBERD_PACKAGES=(ejabberd)
readonly BACKPORTS_FILE_DEB822=/etc/apt/sources.list.d/roster-sidecar-backports.sources
readonly BACKPORTS_FILE_LIST=/etc/apt/sources.list.d/roster-sidecar-backports.list

log() { echo "install-servers: $*" >&2; }
die() { log "error: $*"; exit 1; }

want_prosody= want_ejabberd=
[ $# -gt 0 ] || set -- prosody ejabberd
for arg; do
	case $arg in
	prosody) want_prosody=1 ;;
	ejabberd) want_ejabberd=1 ;;
	*) die "unknown server '$arg' (usage: $0 [prosody] [ejabberd])" ;;
	esac
done
PACKAGES=()
[ -z "$want_prosody" ] || PACKAGES+=("${PROSODY_PACKAGES[@]}")
[ -z "$want_ejabberd" ] || PACKAGES+=("${EJABBERD_PACKAGES[@]}")

[ "$(id -u)" -eq 0 ] || die "must run as root"

# installed_version PKG prints the installed version, or nothing.
installed_version() {
	dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null |
		awk '$1 == "installed" { print $2 }'
}

# at_least PKG MIN succeeds when PKG is installed at version >= MIN.
at_least() {
	local v
	v=$(installed_version "$1")
	[ -n "$v" ] && dpkg --compare-versions "$v" ge "$2"
}

satisfied() {
	if [ -n "$want_prosody" ]; then
		at_least prosody "$PROSODY_MIN" &&
			at_least prosody-modules "$PROSODY_MODULES_MIN" &&
			[ -f "$MOD_PRIVILEGE" ] &&
			[ -n "$(installed_version lua-unbound)" ] &&
			[ -n "$(installed_version lua-event)" ] || return 1
	fi
	if [ -n "$want_ejabberd" ]; then
		at_least ejabberd "$EJABBERD_MIN" || return 1
	fi
}

report() {
	local p
	for p in "${PACKAGES[@]}"; do
		log "$p $(installed_version "$p")"
	done
}

if satisfied; then
	log "already installed, nothing to do"
	report
	exit 0
fi

# shellcheck disable=SC1091
. /etc/os-release
codename=${VERSION_CODENAME:-}
[ "${ID:-}" = debian ] || die "not Debian (ID=${ID:-unknown})"

# has_backports succeeds when some apt source already lists bookworm-backports.
has_backports() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# One-line: "deb [opts] URI bookworm-backports ..."; deb822: "Suites: ... bookworm-backports ...".
		if grep -Eq '^[[:space:]]*deb[[:space:]].*[[:space:]]bookworm-backports([[:space:]]|$)' "$f" ||
			grep -Eiq '^Suites:.*[[:space:]]bookworm-backports([[:space:]]|$)' "$f"; then
			return 0
		fi
	done
	return 1
}

# add_backports_deb822 SRC writes the stanzas of SRC whose Suites contain
# "bookworm" (the main archive, not bookworm-security) with Suites replaced.
add_backports_deb822() {
	local tmp
	tmp=$(mktemp)
	awk 'BEGIN { RS = ""; ORS = "\n\n" }
		{
			n = split($0, lines, "\n"); main = 0
			for (i = 1; i <= n; i++) {
				if (lines[i] ~ /^[Ss]uites:/) {
					m = split(lines[i], w, /[ \t]+/)
					for (j = 2; j <= m; j++) if (w[j] == "bookworm") main = 1
				}
			}
			if (!main) next
			out = ""
			for (i = 1; i <= n; i++) {
				l = lines[i]
				if (l ~ /^[Ss]uites:/) l = "Suites: bookworm-backports"
				out = out l "\n"
			}
			printf "%s\n", out
		}' "$1" >"$tmp"
	grep -q '^Suites: bookworm-backports' "$tmp" || { rm -f "$tmp"; return 1; }
	{
		echo "# bookworm-backports, derived from $1 by roster-sidecar's deploy/install-servers.sh"
		cat "$tmp"
	} >"$BACKPORTS_FILE_DEB822"
	rm -f "$tmp"
	log "wrote $BACKPORTS_FILE_DEB822 from $1"
}

# add_backports_list SRC writes the "deb" lines of SRC for suite bookworm
# with the suite replaced.
add_backports_list() {
	local tmp
	tmp=$(mktemp)
	sed -nE 's/^([[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+)bookworm([[:space:]].*)$/\1bookworm-backports\3/p' "$1" >"$tmp"
	[ -s "$tmp" ] || { rm -f "$tmp"; return 1; }
	{
		echo "# bookworm-backports, derived from $1 by roster-sidecar's deploy/install-servers.sh"
		cat "$tmp"
	} >"$BACKPORTS_FILE_LIST"
	rm -f "$tmp"
	log "wrote $BACKPORTS_FILE_LIST from $1"
}

target=()
if [ "$codename" = bookworm ]; then
	target=(-t bookworm-backports)
	if has_backports; then
		log "bookworm-backports is already an apt source"
	elif [ -f /etc/apt/sources.list.d/debian.sources ] &&
		add_backports_deb822 /etc/apt/sources.list.d/debian.sources; then
		:
	elif [ -f /etc/apt/sources.list ] && add_backports_list /etc/apt/sources.list; then
		:
	else
		found=
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] && add_backports_deb822 "$f" && { found=1; break; }
		done
		for f in /etc/apt/sources.list.d/*.list; do
			[ -z "$found" ] && [ -f "$f" ] && add_backports_list "$f" && { found=1; break; }
		done
		[ -n "$found" ] || die "no Debian bookworm apt source found to derive bookworm-backports from"
	fi
else
	# trixie and later ship prosody 13 and ejabberd 24.12 in the main suite.
	log "Debian ${codename:-unknown}: installing from the default suites"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update

# Without systemd (containers, CI) keep the packages' maintainer scripts from
# starting the services; the tests run their own instances.
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -d /run/systemd/system ] && [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	added_policy=1
fi
cleanup() { if [ -n "$added_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get install -y "${target[@]}" \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${PACKAGES[@]}"

satisfied || {
	report
	die "installed versions are too old: need prosody >= $PROSODY_MIN, ejabberd >= $EJABBERD_MIN, prosody-modules with mod_privilege"
}
log "done"
report
