#!/usr/bin/env bash
# Real peers the tests use besides the servers, from Debian's packages:
# promtool (package prometheus) validates the daemon's own /metrics and the
# exported rules, and the prometheus server of that package evaluates them; an SMTP
# server (python3-aiosmtpd) and Alertmanager (prometheus-alertmanager) receive
# alerts; Python's prometheus_client (python3-prometheus-client) serves a real
# client library's /metrics (tests/exporters/); headless Chromium (chromium, with fonts-dejavu-core for legible
# screenshots) loads the daemon's status page. Installed when missing; the
# services they come with are not started.
set -euo pipefail
log() { printf 'ensure-test-tools: %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The Node.js stand-in (tests/node-standin: npm packages nats, pg, prom-client), installed
# from its committed package-lock.json; skipped when the lock file has not changed since.
ensure_node_standin() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/node-standin"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  local want stamp="$dir/node_modules/.soakwatch-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "node stand-in packages present"
    return 0
  fi
  log "npm ci in tests/node-standin"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  printf '%s\n' "$want" >"$stamp"
}
ensure_node_standin

missing=()
{ command -v promtool >/dev/null 2>&1 && [ -x /usr/bin/prometheus ]; } || missing+=(prometheus)
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || missing+=(python3-prometheus-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# libfaketime: a watcher under a skewed clock (tests/e2e/ha.rs).
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(libfaketime)
if [ "${#missing[@]}" -eq 0 ]; then
  log "promtool, prometheus, prometheus-alertmanager, python3-aiosmtpd, python3-prometheus-client, chromium and libfaketime present"
  exit 0
fi
log "installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Keep the packages' services from starting: the tests start their own servers.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
status=0
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
if [ "$created_policy" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
[ "$status" -eq 0 ] || { log "apt-get install ${missing[*]} failed ($status)"; exit "$status"; }
command -v promtool >/dev/null 2>&1 || { log "promtool still missing after install"; exit 1; }
[ -x /usr/bin/prometheus ] || { log "prometheus still missing after install"; exit 1; }
[ -x /usr/bin/prometheus-alertmanager ] || { log "prometheus-alertmanager still missing"; exit 1; }
/usr/bin/python3 -c 'import aiosmtpd' || { log "python3-aiosmtpd still missing"; exit 1; }
/usr/bin/python3 -c 'import prometheus_client' || { log "python3-prometheus-client still missing"; exit 1; }
command -v chromium >/dev/null 2>&1 || { log "chromium still missing after install"; exit 1; }
log "installed ${missing[*]}"
