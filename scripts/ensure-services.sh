#!/usr/bin/env bash
# Makes sure what soakwatch's demo and tests need is installed and running:
# NATS with JetStream on 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432
# (user postgres, trust auth on loopback). Idempotent: servers that already
# answer are left alone; only what is missing is installed or started.
set -euo pipefail

log() { printf 'ensure-services: %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is not installed: install a Rust toolchain (https://rustup.rs) first"
  exit 1
fi

# --- NATS with JetStream ----------------------------------------------------
if port_open 4222; then
  log "NATS answers on 127.0.0.1:4222 (left alone)"
else
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
  store=/var/lib/nats-server
  $SUDO mkdir -p "$store"
  log "starting $NATS_BIN -js on 127.0.0.1:4222 (store $store)"
  $SUDO start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
    -a 127.0.0.1 -p 4222 -js -sd "$store" -l /var/log/nats-server.log
  for _ in $(seq 1 50); do port_open 4222 && break; sleep 0.2; done
  port_open 4222 || { log "NATS did not start; see /var/log/nats-server.log"; exit 1; }
fi

# --- PostgreSQL ---------------------------------------------------------------
if port_open 5432; then
  log "PostgreSQL answers on 127.0.0.1:5432 (left alone)"
else
  installed_now=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    installed_now=1
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if [ "$installed_now" -eq 1 ] || ! grep -q "soakwatch-trust" "$hba"; then
    # A fresh local cluster: let user postgres in over loopback without a password,
    # as the machines this project runs on are set up.
    if ! grep -q "soakwatch-trust" "$hba"; then
      log "allowing trust auth for postgres on loopback in $hba"
      tmp=$(mktemp)
      { echo "# soakwatch-trust: local development cluster"
        echo "host all postgres 127.0.0.1/32 trust"
        echo "host all postgres ::1/128 trust"
        cat "$hba"; } > "$tmp"
      $SUDO cp "$tmp" "$hba"; rm -f "$tmp"
    fi
  fi
  log "starting PostgreSQL $ver"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
  for _ in $(seq 1 50); do port_open 5432 && break; sleep 0.2; done
  port_open 5432 || { log "PostgreSQL did not start"; exit 1; }
fi
log "services ready"
