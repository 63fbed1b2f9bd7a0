"""A LoRA on Flux.1's CLIP-L text encoder (kohya's `train_text_encoder`), saved under kohya's `lora_te1_` keys.

Flux.1's context is T5's; CLIP-L gives only the pooled vector (the transformer's `vector_in`), so a
CLIP-L LoRA shapes the global conditioning. The host hands the encoder in as a `TextEncoderAdapter`
(nodes/_comfy/text_encoder.py builds it from ComfyUI's CLIP), the same way the transformer comes in as
a TrainingAdapter. The layers trained are the attention and MLP linears of every encoder layer, the
six that ComfyUI's loader maps for `lora_te1_` keys (comfy/lora.py LORA_CLIP_MAP, both hosts).

With lora.train_t5 the encoder also carries T5-XXL (then `module` holds both, as `clip_l` and `t5xxl`),
whose attention and gated-MLP linears (kohya's T5Attention / T5DenseGatedActDense targets) are saved as
`lora_te3_encoder_block_N_...` keys: kohya's prefix for Flux's T5 (train_t5xxl), and one that
comfy/lora.py model_lora_keys_clip maps for a clip_l + t5xxl CLIP on both hosts (it maps every
`t5xxl.transformer.*` weight under lora_te3_, and under lora_te2_ for OneTrainer's Flux files).
"""

from __future__ import annotations

import re
from typing import Mapping, Protocol, Sequence

import torch
from torch import nn

from ..lora_settings import LoraSettings
from . import lora

CLIP_LINEARS = {
    "self_attn.q_proj": "self_attn_q_proj",
    "self_attn.k_proj": "self_attn_k_proj",
    "self_attn.v_proj": "self_attn_v_proj",
    "self_attn.out_proj": "self_attn_out_proj",
    "mlp.fc1": "mlp_fc1",
    "mlp.fc2": "mlp_fc2",
}
"""HF CLIP linear name -> kohya key part: ComfyUI's LORA_CLIP_MAP."""

_LAYER = re.compile(r"(?:.*\.)?text_model\.encoder\.layers\.(\d+)\.(" + "|".join(map(re.escape, CLIP_LINEARS)) + r")")
KEY_PREFIX = "lora_te1_text_model_encoder_layers_"

T5_LINEARS = ("layer.0.SelfAttention.q", "layer.0.SelfAttention.k", "layer.0.SelfAttention.v",
              "layer.0.SelfAttention.o", "layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1",
              "layer.1.DenseReluDense.wo")
"""The linears of one T5 block (ComfyUI's module names are HF's, so kohya's keys and ComfyUI's agree)."""

_T5_LAYER = re.compile(r"(?:.*\.)?transformer\.(encoder\.block\.\d+\.(?:" + "|".join(map(re.escape, T5_LINEARS)) + r"))")
T5_KEY_PREFIX = "lora_te3_"


class TextEncoderAdapter(Protocol):
    """The CLIP-L a run trains: `module` is private to the run (the LoRA is injected into it in place)."""

    module: nn.Module

    def encode_pooled(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, P) pooled vectors of the captions, differentiable with respect to `module`'s LoRA."""
        ...

    def encode_context(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, T, D) T5 contexts (zero-padded to the longest, as the dataset stacks them); only with lora.train_t5."""
        ...


def _linears(module: nn.Module, layer: re.Pattern, missing: str) -> list[str]:
    names = [name for name, sub in module.named_modules() if isinstance(sub, nn.Linear) and layer.fullmatch(name)]
    if not names:
        raise ValueError(f"{type(module).__name__} has no {missing}")
    return names


def clip_targets(module: nn.Module) -> list[str]:
    """Names of the CLIP encoder linears a `lora_te1_` file can address, in module order."""
    return _linears(module, _LAYER, "CLIP encoder layers (text_model.encoder.layers.N.self_attn.q_proj ...); "
                    "lora.train_text_encoder needs Flux.1's CLIP-L")


def t5_targets(module: nn.Module) -> list[str]:
    """Names of the T5 encoder linears a `lora_te3_` file can address, in module order."""
    return _linears(module, _T5_LAYER, "T5 encoder blocks (transformer.encoder.block.N.layer.0.SelfAttention.q ...); "
                    "lora.train_t5 needs Flux.1's T5-XXL")


def attach_text_lora(module: nn.Module, spec: LoraSettings, t5: bool = False) -> list[str]:
    """A LoRA of `spec`'s rank, alpha and dropout on every CLIP-L encoder linear of `module` (and with
    `t5` on every T5 block linear)."""
    return lora.attach_lora(module, spec, names=clip_targets(module) + (t5_targets(module) if t5 else []))


def kohya_key(name: str) -> str:
    """`...text_model.encoder.layers.3.self_attn.q_proj` -> `lora_te1_text_model_encoder_layers_3_self_attn_q_proj`;
    `...transformer.encoder.block.3.layer.0.SelfAttention.q` -> `lora_te3_encoder_block_3_layer_0_SelfAttention_q`."""
    match = _LAYER.fullmatch(name)
    if match is not None:
        return f"{KEY_PREFIX}{match.group(1)}_{CLIP_LINEARS[match.group(2)]}"
    match = _T5_LAYER.fullmatch(name)
    if match is not None:
        return T5_KEY_PREFIX + match.group(1).replace(".", "_")
    raise ValueError(f"{name!r} is neither a CLIP-L encoder linear (lora_te1_) nor a T5 block linear (lora_te3_)")


def text_tensors(weights: Mapping[str, lora.LoraWeights], dtype: torch.dtype | None = None) -> dict:
    """kohya tensors for the text LoRAs ({module name: LoraWeights}): lora_down / lora_up / alpha."""
    tensors = {}
    for name, w in weights.items():
        key = kohya_key(name)
        tensors[f"{key}.lora_down.weight"] = w.down.detach().to("cpu", dtype or w.down.dtype).contiguous()
        tensors[f"{key}.lora_up.weight"] = w.up.detach().to("cpu", dtype or w.up.dtype).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(w.alpha), dtype=torch.float32)
    return tensors
