"""Every difference between the ComfyUI hosts the pack supports, answered in one place.

Tested hosts: 0.33.0 (Aug 2026, what people run) and 0.3.75 (Nov 2025). The rest of the pack asks
this module and never compares versions. Each answer probes the feature itself, so a host between
the two gets the right answer too.

| what differs | since | answered by |
|---|---|---|
| Flux QK norm: own RMSNorm (`scale`, eps 1e-6) -> torch `nn.RMSNorm` (`weight`, eps None) | 0.14.0 | `core/model/flux_blocks.rms_norm_gain` (a question about the module, no host needed) |
| `FluxParams.txt_ids_dims` (required; Flux.1 `[]`, Flux.2 `[3]`) | 0.4.0 | `flux_params` |
| Flux class reused for Ovis-Image (`yak_mlp`, `txt_norm`) and LongCat-Image (text ids on axes 1, 2) | after 0.3.75 | `core.model.flux.FluxArch.of` refuses them |
| V3 combo values checked when a prompt is queued (HTTP 400 "Value not in list") | 0.8.0 | nothing to do: tests accept either |
| torchaudio imported unconditionally | 0.8.0 | scripts/hosts.py (torch 2.11 for that host) |
| `model_management.in_training` (autograd-safe kernels, e.g. Flux's fused RoPE) | after 0.3.75 | `training_mode` |
| no way to keep a model loaded while a run trains on it (both hosts) | - | `kept_loaded` (a `free_memory` shim) |
| Flux.2 klein (Qwen3 text encoder, `klein_te`) | 0.9.2 | `klein_available` |
| `ModelPatcherDynamic`, NVIDIA default: weights streamed per op | 0.16.0 | `is_dynamic`; runs copy the weights (`core.model.ownership.own_leaves`) |
| `TrainLoraNode`: 5 more required inputs, no MODEL output | after 0.3.75 | bench/native.py reads the schema's defaults |
| Flux checkpoints' `*_norm.scale` keys mapped to `.weight` on load | 0.14.0 | scripts/make_stock_flux_checkpoint.py writes BFL's `scale` |
| `SaveImage` lists an IMAGE output | after 0.3.75 | nothing (workflows are generated on the current host) |
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

_training_lock = threading.Lock()
_training_runs = 0
_in_training_found = False  # the host's flag as the first of the overlapping runs found it
_pin_lock = threading.Lock()
_pinned: dict[int, int] = {}  # id(BaseModel) -> how many live runs train on its loaded weights


def flux_params(config: dict) -> dict:
    """`config` (FluxParams fields, `txt_ids_dims` included) as this host's FluxParams accepts it.

    Hosts before `txt_ids_dims` existed derive text positions from the RoPE axis count (axis 3 when
    there are four), so the field is dropped there, and only when it says exactly that.
    """
    import comfy.ldm.flux.model

    fields = {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    if "txt_ids_dims" in fields or "txt_ids_dims" not in config:
        return dict(config)
    implied = [3] if len(config["axes_dim"]) == 4 else []
    if list(config["txt_ids_dims"]) != implied:
        raise ValueError(f"txt_ids_dims={config['txt_ids_dims']} needs ComfyUI >= 0.4 (this host places text ids at {implied})")
    return {key: value for key, value in config.items() if key != "txt_ids_dims"}


@contextlib.contextmanager
def training_mode():
    """Hold `comfy.model_management.in_training` True while any run of ours trains (hosts that have
    it: some kernels, e.g. Flux's fused RoPE, take their autograd-safe path only then), and put it
    back as it was found when the last run ends. A no-op on hosts without the flag."""
    import comfy.model_management as mm

    global _training_runs, _in_training_found
    if not hasattr(mm, "in_training"):
        yield
        return
    with _training_lock:
        if _training_runs == 0:
            _in_training_found = mm.in_training
        _training_runs += 1
        mm.in_training = True
    try:
        yield
    finally:
        with _training_lock:
            _training_runs -= 1
            if _training_runs == 0:
                mm.in_training = _in_training_found


def is_dynamic(patcher) -> bool:
    """True for ComfyUI's dynamic-VRAM patcher (0.16+, the default on NVIDIA), whose weights are not
    resident: they are streamed to the GPU per operation, so modules cannot be adopted as they are."""
    return bool(getattr(patcher, "is_dynamic", lambda: False)())


def resident_bytes(patcher) -> int:
    """Bytes of `patcher`'s weights ComfyUI holds loaded on its load device now (0 for a dynamic-VRAM
    patcher, which holds none for long). Both hosts: `ModelPatcher.loaded_size`."""
    return 0 if is_dynamic(patcher) else int(patcher.loaded_size())


def offload_frees_device(patcher) -> bool:
    """Whether `offload` gives the load device memory back (not when both devices are the CPU)."""
    import torch

    return torch.device(patcher.offload_device) != torch.device(patcher.load_device)


def offload(patcher) -> bool:
    """Take the model of `patcher` (and of every clone of it, which share its weights) off its load
    device the way ComfyUI does when it frees memory for another model: `LoadedModel.model_unload`,
    then out of `current_loaded_models`. True if it was loaded. The same calls on both hosts."""
    import comfy.model_management as mm

    unloaded = False
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        loaded = mm.current_loaded_models[i]
        if loaded.model is not None and loaded.model.model is patcher.model and loaded.model_unload():
            mm.current_loaded_models.pop(i)
            unloaded = True
    return unloaded


@contextlib.contextmanager
def kept_loaded(patcher):
    """While the block runs, ComfyUI's memory management keeps `patcher`'s model loaded: a run that
    trains on the loaded weights holds them, so unloading would free nothing on the device while
    ComfyUI counts the memory as free (and load the next model into memory that is not there).

    Neither host has an API for it (upstream's own trainer deep-copies the model instead; its
    `in_training` flag only switches kernels), so this is a targeted shim: `free_memory`, through which
    every unload for memory goes on both hosts, is wrapped once to add the pinned models to its
    `keep_loaded`. `unload_all_models` (the "free memory" button) still unloads them.
    """
    import comfy.model_management as mm

    key = id(patcher.model)
    with _pin_lock:
        _install_free_memory_guard(mm)
        _pinned[key] = _pinned.get(key, 0) + 1
    try:
        yield
    finally:
        with _pin_lock:
            _pinned[key] -= 1
            if not _pinned[key]:
                del _pinned[key]


def _install_free_memory_guard(mm) -> None:
    original = mm.free_memory
    if getattr(original, "fluxlab_guard", False):
        return

    def free_memory(memory_required, device, keep_loaded=[], *args, **kwargs):
        keep = list(keep_loaded) + [m for m in mm.current_loaded_models
                                    if m.model is not None and id(m.model.model) in _pinned and m not in keep_loaded]
        return original(memory_required, device, keep, *args, **kwargs)

    free_memory.fluxlab_guard = True
    mm.free_memory = free_memory


def klein_available() -> bool:
    """This host builds Flux.2 klein's Qwen3 text encoder (ComfyUI >= 0.9.2)."""
    import comfy.text_encoders.flux

    return hasattr(comfy.text_encoders.flux, "klein_te")


def prompt_server():
    """The running ComfyUI's PromptServer, or None outside a server (in-process tests): it exists only
    when ComfyUI imported `server` before loading custom nodes, and importing it here would start a
    second copy of the host's app."""
    import sys

    return getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
