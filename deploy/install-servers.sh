#!/usr/bin/env bash
# Installs the XMPP servers roster-sidecar is tested against (and can be
# deployed with) on Debian bookworm, as root:
#   prosody >= 13 and prosody-modules (mod_privilege)  from bookworm-backports
#   ejabberd >= 23.10 (24.12)                           from bookworm-backports
#   prosody 0.12.3 and prosody-modules hg20230223        bookworm's own, for the
#     e2e suite only: unpacked into /opt/roster-sidecar-e2e/prosody-0.12,
#     beside 13, which it leaves alone (see install_prosody012 below)
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
# Usage: install-servers.sh [prosody] [ejabberd] [prosody012]   (default: all three)
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

want_prosody= want_ejabberd= want_prosody012=
[ $# -gt 0 ] || set -- prosody ejabberd prosody012
for arg; do
	case $arg in
	prosody) want_prosody=1 ;;
	ejabberd) want_ejabberd=1 ;;
	prosody012) want_prosody012=1 ;;
	*) die "unknown server '$arg' (usage: $0 [prosody] [ejabberd] [prosody012])" ;;
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

# ---- Prosody 0.12 (e2e suite only) ----------------------------------------
# Debian bookworm's own prosody 0.12.3 and prosody-modules (with its older
# mod_privilege), unpacked with dpkg -x into PROSODY012_DIR beside the
# installed Prosody 13, which stays untouched: dpkg does not know about them.
# The launchers (usr/bin/prosody, prosodyctl, prosody-migrator) hard-code their
# directories (CFG_SOURCEDIR, CFG_PLUGINDIR, ...) as /usr/lib/prosody, 13's:
# they are rewritten to point inside PROSODY012_DIR. e2e/harness's
# "prosody012" runner starts PROSODY012_DIR/usr/bin/prosody.
readonly PROSODY012_DIR=/opt/roster-sidecar-e2e/prosody-0.12
readonly PROSODY012_PACKAGES=(prosody=0.12.3-1+deb12u1 prosody-modules=0.0~hg20230223.556bf57d6417+dfsg-1)
readonly PROSODY012_STAMP=$PROSODY012_DIR/.roster-sidecar-e2e

# prosody012_deps_ok succeeds when the unpacked Prosody finds its Lua
# libraries (its own dependency check: lxp, socket, lfs, ssl, bit ops).
prosody012_deps_ok() {
	local d=$1/usr/lib/prosody
	lua5.4 -e "package.path = '$d/?.lua;' .. package.path; package.cpath = '$d/?.so;' .. package.cpath
		os.exit(require 'util.dependencies'.check_dependencies() and 0 or 1)" >/dev/null 2>&1
}

prosody012_satisfied() {
	[ "$(cat "$PROSODY012_STAMP" 2>/dev/null)" = "${PROSODY012_PACKAGES[*]}" ] &&
		[ -x "$PROSODY012_DIR/usr/bin/prosody" ] && [ -x "$PROSODY012_DIR/usr/bin/prosodyctl" ] &&
		[ -f "$PROSODY012_DIR/usr/lib/prosody/modules/mod_privilege/mod_privilege.lua" ] &&
		command -v lua5.4 >/dev/null && prosody012_deps_ok "$PROSODY012_DIR"
}

install_prosody012() {
	if prosody012_satisfied; then
		log "prosody 0.12 already unpacked in $PROSODY012_DIR"
		return
	fi
	export DEBIAN_FRONTEND=noninteractive
	local tmp stage f
	tmp=$(mktemp -d)
	# apt-get downloads as the _apt user when that user may write there.
	chown _apt "$tmp" 2>/dev/null || true
	if ! (cd "$tmp" && apt-get download "${PROSODY012_PACKAGES[@]}"); then
		apt-get update
		(cd "$tmp" && apt-get download "${PROSODY012_PACKAGES[@]}") ||
			die "cannot download ${PROSODY012_PACKAGES[*]} (Debian bookworm's own packages)"
	fi
	# Their runtime dependencies, as apt-get install would take them
	# (Depends and Recommends; the same lua5.4 libraries as Prosody 13's).
	apt-get satisfy -y --no-install-recommends \
		"$(dpkg-deb -f "$tmp"/prosody_*.deb Depends), $(dpkg-deb -f "$tmp"/prosody_*.deb Recommends)"
	stage=$PROSODY012_DIR.new
	rm -rf "$stage"
	mkdir -p "$stage"
	for f in "$tmp"/*.deb; do
		dpkg -x "$f" "$stage"
	done
	rm -rf "$tmp"
	for f in prosody prosodyctl prosody-migrator; do
		sed -i -E \
			-e "s#^CFG_SOURCEDIR=.*#CFG_SOURCEDIR='$PROSODY012_DIR/usr/lib/prosody';#" \
			-e "s#^CFG_CONFIGDIR=.*#CFG_CONFIGDIR='$PROSODY012_DIR/etc/prosody';#" \
			-e "s#^CFG_PLUGINDIR=.*#CFG_PLUGINDIR='$PROSODY012_DIR/usr/lib/prosody/modules/';#" \
			-e "s#^CFG_DATADIR=.*#CFG_DATADIR='$PROSODY012_DIR/var/lib/prosody';#" \
			"$stage/usr/bin/$f"
		[ "$(grep -c "^CFG_[A-Z]*='$PROSODY012_DIR/" "$stage/usr/bin/$f")" -eq 4 ] ||
			die "$f: could not point CFG_SOURCEDIR, CFG_CONFIGDIR, CFG_PLUGINDIR, CFG_DATADIR to $PROSODY012_DIR"
	done
	prosody012_deps_ok "$stage" || die "prosody 0.12 in $stage misses Lua libraries"
	echo "${PROSODY012_PACKAGES[*]}" >"$stage/.roster-sidecar-e2e"
	rm -rf "$PROSODY012_DIR"
	mv "$stage" "$PROSODY012_DIR"
	prosody012_satisfied || die "prosody 0.12 in $PROSODY012_DIR is incomplete"
	log "prosody $(cat "$PROSODY012_DIR/usr/lib/prosody/prosody.version") unpacked in $PROSODY012_DIR"
}

if satisfied; then
	[ ${#PACKAGES[@]} -eq 0 ] || log "already installed, nothing to do"
	report
	[ -z "$want_prosody012" ] || install_prosody012
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
[ -z "$want_prosody012" ] || install_prosody012
