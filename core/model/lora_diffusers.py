"""Flux.1 LoRA pairs in diffusers' layout (`transformer.<diffusers module>.lora_A/lora_B.weight`).

Why a second layout: diffusers reads kohya Flux.1 files, but its kohya converter names `txt_in`
(and the other top-level embedders) without the `transformer.` prefix its loader then filters on,
so it silently drops them (measured with diffusers 0.36 and 0.42.1: the `context` preset lost 52 %
of its effect). This layout is the one ai-toolkit writes for Flux.1; diffusers loads it as is and
ComfyUI maps it onto its fused layers (comfy.utils.flux_to_diffusers), so both apply every pair.

BFL trains fused linears: one `qkv` (and, in single blocks, `linear1` = q, k, v and the MLP input).
diffusers splits them into to_q / to_k / to_v (/ proj_mlp). A fused pair (down D, up U) becomes one
pair per part, each with the same D and its rows of U: the sum of the parts is exactly U @ D.
No `.alpha` is written; alpha / rank is folded into lora_B, and every reader then applies scale 1.
"""

from __future__ import annotations

import re

import torch

from .lora import LoraWeights

PREFIX = "transformer."
_DOUBLE = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn.proj": ("attn.to_out.0",),
    "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.net.0.proj",),
    "img_mlp.2": ("ff.net.2",),
    "txt_mlp.0": ("ff_context.net.0.proj",),
    "txt_mlp.2": ("ff_context.net.2",),
    "img_mod.lin": ("norm1.linear",),
    "txt_mod.lin": ("norm1_context.linear",),
}
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": ("proj_out",),
    "modulation.lin": ("norm.linear",),
}
_TOP_LEVEL = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",
}
# diffusers stores the final adaLN's (shift, scale) halves as (scale, shift): the same swap on up's rows.
_SWAPPED = "final_layer.adaLN_modulation.1"
_KEY = re.compile(re.escape(PREFIX) + r"(.+)\.(lora_A|lora_B)\.weight")


def parts(name: str) -> tuple[str, ...]:
    """The diffusers modules (without the prefix) that BFL linear `name` is split into."""
    if name in _TOP_LEVEL:
        return (_TOP_LEVEL[name],)
    m = re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", name)
    table, section = (_DOUBLE, "transformer_blocks") if m and m.group(1) == "double_blocks" else (_SINGLE, "single_transformer_blocks")
    if not m or m.group(3) not in table:
        raise ValueError(f"{name!r} has no diffusers Flux.1 name; save it in the 'kohya' layout")
    return tuple(f"{section}.{m.group(2)}.{p}" for p in table[m.group(3)])


def _row_splits(name: str, w: LoraWeights) -> list[int]:
    """Rows of `up` per diffusers part: equal thirds of qkv; linear1 is q, k, v (hidden each) + MLP."""
    count, rows, hidden = len(parts(name)), w.up.shape[0], w.down.shape[1]
    if count == 1:
        return [rows]
    if name.endswith("linear1"):
        return [hidden, hidden, hidden, rows - 3 * hidden]
    return [rows // count] * count


def _swap_halves(up: torch.Tensor) -> torch.Tensor:
    half = up.shape[0] // 2
    return torch.cat([up[half:], up[:half]])


def to_tensors(weights: dict, dtype: torch.dtype | None) -> dict:
    """{diffusers key: tensor} of {BFL name: LoraWeights}, alpha / rank folded into lora_B."""
    tensors = {}
    for name, w in weights.items():
        up = w.up.detach().to("cpu", torch.float64) * (float(w.alpha) / w.rank)
        if name == _SWAPPED:
            up = _swap_halves(up)
        down = w.down.detach().to("cpu")
        for part, rows in zip(parts(name), up.split(_row_splits(name, w))):
            tensors[f"{PREFIX}{part}.lora_A.weight"] = down.to(dtype or down.dtype, copy=True).contiguous()  # one copy per part: safetensors refuses shared storage
            tensors[f"{PREFIX}{part}.lora_B.weight"] = rows.to(dtype or w.up.dtype).contiguous()
    return tensors


def is_layout(keys) -> bool:
    keys = list(keys)
    return bool(keys) and all(_KEY.fullmatch(k) for k in keys)


def _owner(part: str) -> str | None:
    """The BFL linear a diffusers module belongs to (None: not one this pack trains)."""
    top = {v: k for k, v in _TOP_LEVEL.items()}
    if part in top:
        return top[part]
    m = re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", part)
    if not m:
        return None
    section, table = ("double_blocks", _DOUBLE) if m.group(1) == "transformer_blocks" else ("single_blocks", _SINGLE)
    tail = next((bfl for bfl, split in table.items() if m.group(3) in split), None)
    return f"{section}.{m.group(2)}.{tail}" if tail else None


def from_tensors(tensors: dict, path) -> dict:
    """{BFL name: LoraWeights} (alpha = rank: it is folded in) of a diffusers-layout Flux.1 file.

    A key of no Flux.1 linear, a missing part, or parts with different lora_A matrices (a LoRA
    trained on the split projections, which a fused layer cannot continue from) is an error naming the file.
    """
    found: dict[str, dict] = {}
    for key, tensor in tensors.items():
        part, ab = _KEY.fullmatch(key).groups()
        name = _owner(part)
        if name is None:
            raise ValueError(f"{path}: key {key!r} names no Flux.1 linear this pack trains")
        found.setdefault(name, {}).setdefault(part, {})[ab] = tensor
    weights = {}
    for name, got in found.items():
        expected = parts(name)
        lacking = [f"{PREFIX}{p}.{ab}.weight" for p in expected for ab in ("lora_A", "lora_B") if ab not in got.get(p, {})]
        if lacking:
            raise ValueError(f"{path}: {name} lacks {', '.join(lacking[:4])}")
        downs = [got[p]["lora_A"] for p in expected]
        if any(not torch.equal(d, downs[0]) for d in downs[1:]):
            raise ValueError(f"{path}: {', '.join(expected)} have different lora_A matrices (a LoRA trained on split "
                             f"projections); this pack trains the fused {name} and cannot continue from it")
        up = torch.cat([got[p]["lora_B"] for p in expected])
        weights[name] = LoraWeights(down=downs[0], up=_swap_halves(up) if name == _SWAPPED else up, alpha=float(downs[0].shape[0]))
    return weights
