#!/usr/bin/env bash
# The test command: services first, then every unit and integration test
# against the real NATS and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-services.sh
./scripts/ensure-test-tools.sh
# No import cycle among src modules (the layers stay layers).
python3 scripts/check-layers.py
# No product function over 120 lines (each reads as a whole).
python3 scripts/check-fn-length.py
# No new Result<_, String> and no role or state as &'static str (meaning in types).
python3 scripts/check-typed.py
cargo test --locked --features testkit "$@"
