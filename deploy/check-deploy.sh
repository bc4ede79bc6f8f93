#!/usr/bin/env bash
# make check-deploy: validates what deploy/ ships, without a cluster, a
# container engine or a running systemd:
#
#   container   the Containerfile's build command, run here: a static
#               (no ELF interpreter), trimmed binary that runs; the
#               Containerfile's base images and user are checked by grep.
#               The image itself is not built (no engine, no registry access).
#   systemd     systemd-analyze verify on deploy/systemd/roster-sidecar.service
#               (pointed at that binary); any warning fails. Then
#               systemd-analyze security --offline: exposure at most 2.0.
#   kubernetes  deploy/kubernetes/validate (its own Go module): every manifest
#               decoded strictly into the k8s.io/api types, names and labels
#               validated with apimachinery, and the cross references checked.
#               kubectl kustomize too when kubectl is installed.
#   monitoring  deploy/monitoring: promtool check rules and promtool test
#               rules on the Prometheus alerting rules, and the Go test of that
#               directory (the Grafana dashboard loads, every metric the
#               dashboard and the rules name is one the sidecar exports).
#
# deploy/config.example.yaml and admin/openapi.yaml are checked by the unit
# tests (make unit).
#
# Needs systemd-analyze (Debian package systemd) and promtool (Debian package
# prometheus), both installed when missing and running as root, and readelf
# (binutils, which the Go toolchain's gcc brings).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}

log() { echo "check-deploy: $*"; }
die() { echo "check-deploy: FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- tools ----
if ! command -v systemd-analyze >/dev/null; then
	[ "$(id -u)" -eq 0 ] || die "systemd-analyze is missing: apt-get install systemd"
	log "installing systemd (for systemd-analyze)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd; }
fi
if ! command -v promtool >/dev/null; then
	[ "$(id -u)" -eq 0 ] || die "promtool is missing: apt-get install prometheus"
	log "installing prometheus (for promtool)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
fi
command -v readelf >/dev/null || die "readelf is missing: apt-get install binutils"

# ---- container: the build stage, run here ----
cf=deploy/container/Containerfile
grep -q 'CGO_ENABLED=0' "$cf" || die "$cf: the build must set CGO_ENABLED=0"
grep -q -- '-trimpath' "$cf" || die "$cf: the build must use -trimpath"
grep -Eq '^FROM \$\{GO_IMAGE\} AS build' "$cf" || die "$cf: no build stage"
grep -Eq '^ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot$' "$cf" || die "$cf: the runtime base must be distroless static nonroot"
grep -Eq '^USER 65532:65532$' "$cf" || die "$cf: must run as the non-root user 65532"
if grep -Eq '^HEALTHCHECK' "$cf"; then die "$cf: distroless has no shell or curl for a HEALTHCHECK"; fi
bin=$tmp/roster-sidecar
CGO_ENABLED=0 GOOS=linux "$GO" build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=check-deploy" -o "$bin" ./cmd/roster-sidecar
if readelf -lW "$bin" | grep -q 'INTERP'; then die "the binary is dynamically linked"; fi
"$GO" version -m "$bin" | grep -q 'CGO_ENABLED=0' || die "the binary was not built with CGO_ENABLED=0"
"$GO" version -m "$bin" | grep -q -- '-trimpath=true' || die "the binary was not built with -trimpath"
if strings -a "$bin" 2>/dev/null | grep -q "$PWD/"; then die "the binary contains the build directory"; fi
got=$("$bin" version)
case $got in "roster-sidecar check-deploy (go"*) ;; *) die "version printed '$got'" ;; esac
log "container: static binary ok ($(du -h "$bin" | cut -f1), '$got')"

# ---- systemd ----
unit=deploy/systemd/roster-sidecar.service
grep -q '^ExecStart=/usr/local/bin/roster-sidecar ' "$unit" || die "$unit: ExecStart must run /usr/local/bin/roster-sidecar"
sed "s#/usr/local/bin/roster-sidecar#$bin#" "$unit" >"$tmp/roster-sidecar.service"
out=$(systemd-analyze verify "$tmp/roster-sidecar.service" 2>&1) || die "systemd-analyze verify failed:
$out"
[ -z "$out" ] || die "systemd-analyze verify warned:
$out"
log "systemd: systemd-analyze verify ok"
out=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/roster-sidecar.service" 2>&1) ||
	die "systemd-analyze security: exposure above 2.0:
$out"
log "systemd: $(grep -o 'Overall exposure level.*' <<<"$out")"

# ---- kubernetes ----
(cd deploy/kubernetes/validate && "$GO" vet ./... && "$GO" test -count=1 ./...) ||
	die "the Kubernetes manifests did not validate"
if command -v kubectl >/dev/null; then
	kubectl kustomize deploy/kubernetes >/dev/null || die "kubectl kustomize deploy/kubernetes failed"
	log "kubernetes: kubectl kustomize ok"
fi
log "kubernetes: manifests ok"

# ---- monitoring: Prometheus rules and the Grafana dashboard ----
(cd deploy/monitoring && promtool check rules alerts.yaml && promtool test rules alerts_test.yaml) ||
	die "deploy/monitoring/alerts.yaml: promtool check rules or test rules failed"
"$GO" test -count=1 ./deploy/monitoring/ || die "deploy/monitoring: the dashboard or the rules name metrics the sidecar does not export"
log "monitoring: alerting rules and dashboard ok"
log "ok"
