#!/usr/bin/env bash
# The demo: services first, then a disposable replica of the Phase B topology
# with a stand-in normalize-service, checked healthy and after a DLQ fault.
# The demo lives in the test kit (`soakwatch-testkit`), not in the shipped
# `soakwatch` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-services.sh
echo "demo: building soakwatch and soakwatch-testkit (a first build takes about 6 minutes on 2 cores; cargo shows its progress)" >&2
cargo build --locked --features testkit --bins
exec "${CARGO_TARGET_DIR:-target}/debug/soakwatch-testkit" demo "$@"
