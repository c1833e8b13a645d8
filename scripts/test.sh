#!/usr/bin/env bash
# The whole test suite, from nothing: venv and packages, local services, lint, type check, tests.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -m "not integration"   pure tests only (no services needed)
#   ./scripts/test.sh -m "not browser"       everything but the headless-Chromium tests
# Extra arguments go to pytest.
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
echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
