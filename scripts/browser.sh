#!/usr/bin/env bash
# System packages for the browser tests and for rendering PDFs to images, from Debian:
#   chromium           headless browser driven over the DevTools protocol (tests/browser.py)
#   poppler-utils      pdftoppm, to look at generated PDF reports
#   fonts-dejavu-core  a font with wide coverage, so screenshots and PDFs render text the same
# Idempotent: does nothing when all three are present. Installing needs root (apt-get); without
# root and with something missing it names the command to run and exits 1.
set -euo pipefail
say() { printf '[browser] %s\n' "$*" >&2; }

PACKAGES=(chromium poppler-utils fonts-dejavu-core)
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}"
    say "install them as root: apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
fi
command -v apt-get >/dev/null 2>&1 || { say "no apt-get here; install ${missing[*]} with this system's package manager"; exit 1; }
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v chromium >/dev/null 2>&1 || { say "chromium is still not on PATH after the install"; exit 1; }
say "ready: $(chromium --version 2>/dev/null || echo chromium)"
