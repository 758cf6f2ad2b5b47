#!/usr/bin/env bash
# Real peers the tests use besides the servers: promtool (Debian package
# prometheus) validates the daemon's own /metrics. Installed when missing;
# the Prometheus server it comes with is not started.
set -euo pipefail
log() { printf 'ensure-test-tools: %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if command -v promtool >/dev/null 2>&1; then
  log "promtool present"
  exit 0
fi
log "installing prometheus (for promtool)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Keep the package's service from starting: only the promtool binary is wanted.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
status=0
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
if [ "$created_policy" -eq 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
[ "$status" -eq 0 ] || { log "apt-get install prometheus failed ($status)"; exit "$status"; }
command -v promtool >/dev/null 2>&1 || { log "promtool still missing after install"; exit 1; }
log "promtool installed"
