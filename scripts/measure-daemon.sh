#!/usr/bin/env bash
# Measures the watch daemon over a long compressed run on a local replica:
# resident memory and CPU time sampled every STEP seconds, cycles done, state
# database size. Usage: scripts/measure-daemon.sh [MINUTES] [INTERVAL] [STEP]
# (defaults: 10 minutes at a 200ms interval, sampled every 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}; interval=${2:-200ms}; step=${3:-30}
./scripts/ensure-services.sh
cargo build --release --locked --quiet --features testkit --bins
bin=target/release/soakwatch
kit=target/release/soakwatch-testkit
tag="perf$(date +%s | tail -c 5)$$"
tag=$(echo "$tag" | tr -dc 'a-z0-9' | cut -c1-12)
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${watch_pid:-}" ] && kill -TERM "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null || true
  [ -n "${standin_pid:-}" ] && kill "$standin_pid" 2>/dev/null || true
  "$kit" replica down --tag "$tag" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$kit" replica up --tag "$tag" --dir "$dir" --metrics-url "http://127.0.0.1:$port/metrics" >/dev/null
db_url=$(grep -m1 '^url = "postgres' "$dir/checks.toml" | cut -d'"' -f2)
"$kit" standin --tag "$tag" --database-url "$db_url" --env-file "$dir/normalize-service.env" \
  --log-file "$dir/normalize-service.log" --listen "127.0.0.1:$port" 2>/dev/null &
standin_pid=$!
cat >> "$dir/checks.toml" <<TOML

[watch]
interval = "$interval"
max_gap = "2s"
state = "$dir/state.sqlite"
reports_dir = "$dir/reports"
checkpoints = []
listen = ""
TOML
sleep 1
SOAKWATCH_LOG=warn "$bin" watch --config "$dir/checks.toml" 2>"$dir/watch.err" &
watch_pid=$!
hz=$(getconf CLK_TCK)
echo "| t (s) | RSS (MB) | CPU (s) | state db (MB) |"
echo "|------:|---------:|--------:|--------------:|"
end=$(( $(date +%s) + minutes * 60 ))
start=$(date +%s)
while [ "$(date +%s)" -le "$end" ]; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$watch_pid/status")
  cpu=$(awk -v hz="$hz" '{print ($14 + $15) / hz}' "/proc/$watch_pid/stat")
  size=$(du -cb "$dir"/state.sqlite* 2>/dev/null | tail -n1 | cut -f1)
  printf '| %5d | %8.1f | %7.2f | %13.2f |\n' $(( $(date +%s) - start )) "$(echo "$rss/1024" | bc -l)" "$cpu" "$(echo "${size:-0}/1048576" | bc -l)"
  sleep "$step"
done
kill -TERM "$watch_pid"; wait "$watch_pid" || true
watch_pid=""
echo
tail -n 1 "$dir/watch.err" || true
ls "$dir/reports" | head
