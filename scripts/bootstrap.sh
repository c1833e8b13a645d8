#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) from requirements.lock.
# Idempotent and quick when nothing changed: the installed set is keyed by a hash of the lock
# file and pyproject.toml.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

pick_python() {
    for candidate in "${FLOWBANK_PYTHON:-}" python3.11 python3.12 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'; then
            command -v "$candidate"; return 0
        fi
    done
    return 1
}

PYTHON=$(pick_python) || {
    # Debian bookworm's python3 is 3.11, which bytewax 0.21.1 supports.
    [ "$(id -u)" -eq 0 ] || die "Python 3.11 or 3.12 is required (bytewax 0.21.1 has no wheel past 3.12)"
    say "installing python3 and python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
    PYTHON=$(pick_python) || die "no Python 3.11/3.12 available after installing python3"
}

stamp=$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.flowbank-stamp" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV" || die "could not create the venv (on Debian: apt-get install python3-venv)"
fi
say "installing the locked packages"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.lock"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
echo "$stamp" > "$VENV/.flowbank-stamp"
say "ready: $VENV"
