"""LoKr layers in LyCORIS' file keys, the ones ComfyUI's loader reads (comfy/weight_adapter/lokr.py):
`<stem>.lokr_w1` or `.lokr_w1_a` + `.lokr_w1_b`, `<stem>.lokr_w2` or `.lokr_w2_a` + `.lokr_w2_b`, and
`<stem>.alpha`. The stem is the family's, as for LoRA (core/model/lora_format.py: kohya
`lora_unet_<name with _>` for Flux.1, `diffusion_model.<BFL name>` for Flux.2).

ComfyUI applies delta W = s * kron(w1, w2) with s = alpha / rank when a part is a product and
1 when both are full or the file has no alpha. Families with an explicit alpha (kohya) store the
trained alpha (rank where both parts are full, as LyCORIS does); the others fold s into w2 (or
w2_b) and store no alpha, so every reader applies scale 1 to the same delta, as their LoRA files do.
"""

from __future__ import annotations

import torch

from .lokr import LokrWeights

SUFFIXES = {part: f"lokr_{part}" for part in ("w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b")}
PART_OF = {suffix: part for part, suffix in SUFFIXES.items()}


def to_tensors(stem: str, w: LokrWeights, *, explicit_alpha: bool, dtype) -> dict:
    """{file key: tensor} of one layer under `stem`."""
    out = {}
    for part, tensor in w.tensors().items():
        tensor = tensor.detach().to("cpu")
        if not explicit_alpha and part in ("w2", "w2_b"):
            tensor = tensor.to(torch.float64) * w.scale
        out[f"{stem}.{SUFFIXES[part]}"] = tensor.to(dtype or w.tensors()[part].dtype).contiguous()
    if explicit_alpha:
        out[f"{stem}.alpha"] = torch.tensor(float(w.alpha), dtype=torch.float32)  # all full: read as scale 1
    return out


def from_parts(parts: dict, name: str, path) -> LokrWeights:
    """LokrWeights of one layer's {part: tensor} (+ optional "alpha"); a missing alpha reads as scale 1."""
    alpha = parts.pop("alpha", None)
    for one, pair in (("w1", ("w1_a", "w1_b")), ("w2", ("w2_a", "w2_b"))):
        has_pair = [p in parts for p in pair]
        if (one in parts) == any(has_pair) or (any(has_pair) and not all(has_pair)):
            found = sorted(SUFFIXES[p] for p in parts)
            raise ValueError(f"{path}: LoKr layer {name} needs lokr_{one} or both lokr_{pair[0]} and lokr_{pair[1]}; "
                             f"it has {found}")
    weights = LokrWeights(**parts)
    if any(t.ndim != 2 for t in parts.values()):
        raise ValueError(f"{path}: LoKr layer {name} has a factor that is not a matrix (conv LoKr is not a Flux linear)")
    for a, b in (("w1_a", "w1_b"), ("w2_a", "w2_b")):
        if a in parts and parts[a].shape[1] != parts[b].shape[0]:
            raise ValueError(f"{path}: LoKr layer {name}: lokr_{a} {tuple(parts[a].shape)} and lokr_{b} "
                             f"{tuple(parts[b].shape)} disagree on rank")
    if alpha is None:
        return LokrWeights(**parts, alpha=float(weights.rank or 1))
    return LokrWeights(**parts, alpha=float(alpha.item()))
