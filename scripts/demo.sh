#!/usr/bin/env bash
# The demo: services first, then a disposable replica of the Phase B topology
# with a stand-in normalize-service, checked healthy and after a DLQ fault.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-services.sh
cargo run --locked --quiet -- demo "$@"
