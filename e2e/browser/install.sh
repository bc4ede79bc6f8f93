#!/usr/bin/env bash
# Installs what the browser test (make browser-test) needs, on Debian as root:
#   chromium            Debian's package (/usr/bin/chromium)
#   node_modules/       converse.js and playwright-core, exactly as locked in
#                       package-lock.json (npm ci, from the npm registry)
# Idempotent: with both present it changes nothing and needs no network.
# Node.js (>= 18) and npm must already be installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo "browser/install: $*" >&2; }
die() { log "error: $*"; exit 1; }

# chromium, and a font for legible screenshots (dpkg-query: installed?).
missing=()
for pkg in chromium fonts-dejavu-core; do
	dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]} and this is not root: apt-get install ${missing[*]}"
	log "installing ${missing[*]} from Debian"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
fi
[ -x /usr/bin/chromium ] || die "chromium did not install"
log "$(/usr/bin/chromium --version 2>/dev/null || echo chromium)"

command -v node >/dev/null || die "node is missing: install Node.js >= 18"
command -v npm >/dev/null || die "npm is missing"

# npm ci unless node_modules was installed from the current lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] ||
	[ ! -f node_modules/converse.js/dist/converse.min.js ] || [ ! -f node_modules/playwright-core/package.json ]; then
	log "npm ci"
	npm ci --no-audit --no-fund --ignore-scripts
fi
[ -f node_modules/converse.js/dist/converse.min.js ] || die "converse.js is missing after npm ci"
[ -f node_modules/playwright-core/package.json ] || die "playwright-core is missing after npm ci"
log "node $(node --version), converse.js $(node -p 'require("./node_modules/converse.js/package.json").version'), playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version')"
