"""A LoRA file checked against the MODEL it is about to patch, before ComfyUI applies it.

Why: ComfyUI's LoRA loading skips whatever does not fit with only a "lora key not loaded" line in
the server log, so a Flux.2 LoRA on Flux.1, a run's optimizer state, or a file that matches nothing
renders the base model's image as if it were the LoRA's. A truncated or empty file fails deep in
safetensors ("header too large") naming no file. Here each of these is an error that names the
file, what it is, and the model's family.
"""

from __future__ import annotations

from pathlib import Path

import comfy.lora
import comfy.utils
from safetensors import safe_open

from ...core.errors import FluxLabError
from ...core.model.adapter import detect_flux_family
from ...core.model.flux_family import FAMILIES

_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "te1", "te2", "lora_te1", "lora_te2")


def _display(name: str) -> str:
    """"Flux.2" for a family we know; the metadata's own words otherwise."""
    return FAMILIES[name].display_name if name in FAMILIES else name


class LoraFileError(FluxLabError, ValueError):
    """A LoRA file that cannot be read or does not fit the MODEL."""


def read_lora(path: Path) -> tuple[dict, dict]:
    """(tensors, safetensors metadata) of `path`, or LoraFileError saying what the file is instead."""
    size = path.stat().st_size
    if size == 0:
        raise LoraFileError(f"LoRA file {path} is empty (0 bytes): an interrupted copy or download; copy it again")
    try:
        tensors = comfy.utils.load_torch_file(str(path), safe_load=True)
        metadata = {}
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
    except Exception as err:  # safetensors, torch and pickle each raise their own
        with path.open("rb") as f:
            what = "a text file" if _is_text(f.read(64)) else "truncated or not a .safetensors file"
        raise LoraFileError(f"LoRA file {path} ({size} bytes) cannot be read: {what} "
                            f"({type(err).__name__}: {str(err)[:120]}); copy or download it again") from err
    return tensors, metadata


def _is_text(head: bytes) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length (NUL bytes), never text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


def checked_lora(model, path: Path) -> dict:
    """The tensors of LoRA `path`, after checking that they patch `model` (a ComfyUI MODEL):
    our own family metadata, then ComfyUI's own key map for this model and every matched layer's
    shape. LoraFileError names the file, its family and the model's."""
    tensors, metadata = read_lora(path)
    family = detect_flux_family(model.model.diffusion_model)
    written_for = metadata.get("fluxlab.family")
    if written_for and written_for != family:
        raise LoraFileError(f"LoRA file {path} was trained on {_display(written_for)} but the "
                            f"model is {_display(family)}; pick a LoRA of this model's family, or load the "
                            f"{_display(written_for)} model")
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    patches = comfy.lora.load_lora(tensors, key_map, log_missing=False)
    model_keys = [k for k in tensors if not k.startswith(_TEXT_ENCODER_PREFIXES)]
    if not patches:
        raise LoraFileError(f"LoRA file {path} patches nothing in this {_display(family)} model: none of its "
                            f"{len(model_keys)} model keys is a LoRA key for it (e.g. {sorted(model_keys)[:3]}); "
                            "it is not a LoRA for this model (a run's optimizer_state.safetensors is not a LoRA: use "
                            "the lora.safetensors beside it)")
    wrong = _shape_mismatches(model, patches)
    if wrong:
        raise LoraFileError(f"LoRA file {path} does not fit this {_display(family)} model: {len(wrong)} layers "
                            f"differ in shape, e.g. {wrong[0]}; it was trained on another model")
    return tensors


def _shape_mismatches(model, patches: dict) -> list[str]:
    """'<layer>: model (out, in), LoRA (out, in)' for each whole-weight LoRA or LoKr patch that does not
    fit (ComfyUI logs a LoKr that does not fit and renders the layer unpatched)."""
    state = model.model.state_dict()
    wrong = []
    for target, patch in patches.items():
        weights, kind = getattr(patch, "weights", None), getattr(patch, "name", "")
        if not isinstance(target, str) or target not in state or kind not in ("lora", "lokr") or not weights:
            continue  # slices of fused weights (kohya's split qkv) and other adapter kinds: ComfyUI checks those
        got = _lora_shape(weights) if kind == "lora" else _lokr_shape(weights)
        expected = tuple(state[target].shape)
        if got is not None and len(expected) == 2 and got != expected:
            wrong.append(f"{target}: model {expected}, {'LoRA' if kind == 'lora' else 'LoKr'} {got}")
    return wrong


def _lora_shape(weights) -> tuple | None:
    up, down = weights[0], weights[1]
    return (up.shape[0], down.shape[-1]) if up.ndim == 2 and down.ndim == 2 else None


def _lokr_shape(weights) -> tuple | None:
    """(out, in) of kron(w1, w2) from ComfyUI's LoKr weights (w1, w2, alpha, w1_a, w1_b, w2_a, w2_b, ...)."""
    w1, w2, _, w1_a, w1_b, w2_a, w2_b = weights[:7]
    sides = [(w.shape[0], w.shape[1]) if w is not None else (a.shape[0], b.shape[1]) if a is not None and b is not None else None
             for w, a, b in ((w1, w1_a, w1_b), (w2, w2_a, w2_b))]
    if None in sides or any(t is not None and t.ndim != 2 for t in (w1, w2)):
        return None
    return sides[0][0] * sides[1][0], sides[0][1] * sides[1][1]
