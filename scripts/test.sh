#!/usr/bin/env bash
# The whole test suite, from nothing: venv and packages, local services, lint, type check, tests.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -m "not integration"   pure tests only (no services needed)
# Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/services.sh
.venv/bin/flowbank services --check
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] mypy"
.venv/bin/mypy
echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
