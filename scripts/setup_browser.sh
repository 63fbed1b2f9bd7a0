#!/usr/bin/env bash
# Idempotent set-up for the browser tests (tests/browser): Debian's chromium and the Python
# playwright package (which ships its own driver). Never runs `playwright install`: that downloads
# browser builds from outside the package registries; the tests launch /usr/bin/chromium instead.
# A second run returns at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_PY="$ROOT/.venv-${FLUXLAB_HOST:-0.33.0}/bin/python"
CHROMIUM="${FLUXLAB_CHROMIUM:-/usr/bin/chromium}"

log() { printf '[setup-browser] %s\n' "$*"; }

if [[ ! -x "$CHROMIUM" ]]; then
    if [[ "$(id -u)" != 0 ]] && ! command -v sudo >/dev/null; then
        echo "[setup-browser] $CHROMIUM is missing; install Debian's chromium (apt-get install chromium) as root" >&2
        exit 1
    fi
    SUDO=(); [[ "$(id -u)" != 0 ]] && SUDO=(sudo)
    log "installing Debian's chromium"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

if ! "$VENV_PY" -c 'import playwright.sync_api' 2>/dev/null; then
    log "installing the playwright Python package (its driver only; no browser download)"
    "$VENV_PY" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements-browser.txt" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
fi
