#!/usr/bin/env bash
# Run the whole platform locally: services, bridge, pipeline, dashboard and simulated chargers.
# Prints the OCPP endpoint and the dashboard URL; Ctrl-C stops everything cleanly.
# Extra arguments go to `flowbank run` (see `flowbank run --help`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
exec .venv/bin/flowbank run "$@"
