"""ComfyUI's Flux.1 CLIP-L as core's TextEncoderAdapter (lora.train_text_encoder).

The run trains a private copy of `clip.cond_stage_model.clip_l` (ComfyUI's SDClipModel): peft injects
its LoRA in place, which must not rewire the user's CLIP (ComfyUI patches LoRAs into it by key, and the
dataset's cached encodings came from it). The copy is taken after `clip.load_model()`, so patches the
user applied to the CLIP (a LoraLoader before training) are in it, as they are in the cached encodings.

Captions go the way CLIPTextEncode sends them: `tokenizer.clip_l.tokenize_with_weights` (77-token
sections, prompt weights) and SDClipModel's `encode_token_weights`, whose pooled vector is Flux.1's
`y`. That path has no no_grad, so the LoRA gets gradients; the training thread runs outside
inference mode. But ComfyUI's CLIPLayer adds its residuals in place (`x += self.self_attn(...)`, both
hosts), which autograd refuses ("modified by an inplace operation"), the trap core/model/flux.py avoids
for Flux's blocks: the copy's layers get the same sum out of place (the user's CLIP keeps its own).
"""

from __future__ import annotations

import copy
import types
from typing import Sequence

import torch

from ...core.setting import ConfigError


class ComfyClipL:
    """core TextEncoderAdapter over a ComfyUI CLIP with a CLIP-L part (Flux.1's FluxClipModel)."""

    def __init__(self, clip, device: torch.device):
        clip_l = getattr(clip.cond_stage_model, "clip_l", None)
        tokenizer = getattr(clip.tokenizer, "clip_l", None)
        if clip_l is None or tokenizer is None:
            raise ConfigError("lora.train_text_encoder", f"the CLIP connected to DatasetFromFolder "
                              f"({type(clip.cond_stage_model).__name__}) has no CLIP-L; connect Flux.1's "
                              "DualCLIPLoader (clip_l + t5xxl) CLIP, or turn the setting off")
        clip.load_model()
        self.module = copy.deepcopy(clip_l).to(device)
        self.module.requires_grad_(False)
        _out_of_place_residuals(self.module)
        self.tokenizer = tokenizer

    @classmethod
    def for_run(cls, config, clip, adapter):
        """The run's CLIP-L when it trains one; None otherwise (and for Flux.2, which core refuses by name)."""
        if not config.lora.train_text_encoder or adapter.family != "flux1":
            return None
        return cls(clip, next(adapter.module.parameters()).device)

    def encode_pooled(self, captions: Sequence[str]) -> torch.Tensor:
        pooled = [self.module.encode_token_weights(self.tokenizer.tokenize_with_weights(c))[1] for c in captions]
        return torch.cat(pooled)


def _residuals_out_of_place(layer, x, mask=None, optimized_attention=None):
    """CLIPLayer.forward with `x = x + ...` for `x += ...`: the same sum, differentiable."""
    x = x + layer.self_attn(layer.layer_norm1(x), mask, optimized_attention)
    return x + layer.mlp(layer.layer_norm2(x))


def _out_of_place_residuals(module) -> None:
    import comfy.clip_model

    layers = [m for m in module.modules() if isinstance(m, comfy.clip_model.CLIPLayer)]
    if not layers:
        raise RuntimeError(f"{type(module).__name__} has no comfy.clip_model.CLIPLayer; this ComfyUI's CLIP-L "
                           "is built differently and lora.train_text_encoder cannot train it")
    for layer in layers:  # a bound method: a deepcopy of the module stays bound to its own layers
        layer.forward = types.MethodType(_residuals_out_of_place, layer)
