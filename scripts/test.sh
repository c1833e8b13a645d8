#!/usr/bin/env bash
# The whole test suite, from nothing: venv and packages, local services, lint, type check, tests.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -m "not integration"   pure tests only (no services needed)
#   ./scripts/test.sh -m "not browser"       everything but the headless-Chromium tests
# With arguments, exactly `pytest ARGS` (one process); without, the whole suite on two workers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/bootstrap.sh
# Chromium (browser tests), poppler-utils, fonts from Debian. Without root and with something
# missing this only warns: `-m "not browser"` still runs; the browser tests fail and say why.
bash scripts/browser.sh || echo "[test] warning: browser packages missing; the browser tests will fail" >&2
# Provisions (scripts/services.sh) unless FLOWBANK_PG_DSN/FLOWBANK_MQTT_URL name the user's own
# services, applies migrations, and fails if anything is unhealthy.
.venv/bin/flowbank services
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] mypy"
.venv/bin/mypy
if [ $# -gt 0 ]; then
    echo "[test] pytest $*"
    exec .venv/bin/python -m pytest "$@"
fi
# The whole suite: two workers, one test file each at a time (the end-to-end tests mostly wait
# on real time, so they overlap with the rest); then, alone, the tests that stop the shared
# services (marker `serial`). Both parts always run; the exit code fails if either failed.
echo "[test] pytest, two workers"
status=0
.venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not serial" || status=$?
echo "[test] pytest, the tests that stop the shared services"
.venv/bin/python -m pytest -m serial || status=$((status ? status : $?))
exit "$status"
