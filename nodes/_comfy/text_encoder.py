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

With lora.train_t5 the run also copies `clip.cond_stage_model.t5xxl` (ComfyUI's T5XXLModel, identical
on both hosts), whose T5LayerSelfAttention / T5LayerFF add their residuals in place too, and the copy's
`module` is then {clip_l, t5xxl}. The context goes as CLIPTextEncode's: `tokenizer.t5xxl` (256-token
minimum) and T5's `encode_token_weights`. T5-XXL is 4.7B parameters: the copy doubles its memory
while the user's CLIP stays loaded, and nodes/_comfy/memory.py's plan counts neither text encoder.
"""

from __future__ import annotations

import copy
import types
from typing import Sequence

import torch

from ...core.setting import ConfigError


class ComfyClipL:
    """core TextEncoderAdapter over a ComfyUI CLIP with a CLIP-L part (Flux.1's FluxClipModel)."""

    def __init__(self, clip, device: torch.device, t5: bool = False):
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
        if t5:
            self.t5, self.t5_tokenizer = _private_t5(clip, device)
            self.module = torch.nn.ModuleDict({"clip_l": self.module, "t5xxl": self.t5})

    @classmethod
    def for_run(cls, config, clip, adapter):
        """The run's CLIP-L when it trains one; None otherwise (and for Flux.2, which core refuses by name)."""
        if not config.lora.train_text_encoder or adapter.family != "flux1":
            return None
        return cls(clip, next(adapter.module.parameters()).device, t5=config.lora.train_t5)

    @property
    def clip_l(self):
        return self.module["clip_l"] if isinstance(self.module, torch.nn.ModuleDict) else self.module

    def encode_pooled(self, captions: Sequence[str]) -> torch.Tensor:
        pooled = [self.clip_l.encode_token_weights(self.tokenizer.tokenize_with_weights(c))[1] for c in captions]
        return torch.cat(pooled)

    def encode_context(self, captions: Sequence[str]) -> torch.Tensor:
        contexts = [self.t5.encode_token_weights(self.t5_tokenizer.tokenize_with_weights(c))[0][0] for c in captions]
        longest = max(c.shape[0] for c in contexts)
        return torch.stack([torch.nn.functional.pad(c, (0, 0, 0, longest - c.shape[0])) for c in contexts])


def _private_t5(clip, device):
    t5, tokenizer = getattr(clip.cond_stage_model, "t5xxl", None), getattr(clip.tokenizer, "t5xxl", None)
    if t5 is None or tokenizer is None:
        raise ConfigError("lora.train_t5", f"the CLIP connected to DatasetFromFolder "
                          f"({type(clip.cond_stage_model).__name__}) has no T5-XXL; connect Flux.1's "
                          "DualCLIPLoader (clip_l + t5xxl) CLIP, or turn the setting off")
    t5 = copy.deepcopy(t5).to(device)
    t5.requires_grad_(False)
    _out_of_place_t5_residuals(t5)
    return t5, tokenizer


def _residuals_out_of_place(layer, x, mask=None, optimized_attention=None):
    """CLIPLayer.forward with `x = x + ...` for `x += ...`: the same sum, differentiable."""
    x = x + layer.self_attn(layer.layer_norm1(x), mask, optimized_attention)
    return x + layer.mlp(layer.layer_norm2(x))


def _attention_out_of_place(layer, x, mask=None, past_bias=None, optimized_attention=None):
    """T5LayerSelfAttention.forward with `x = x + output` for `x += output`."""
    output, past_bias = layer.SelfAttention(layer.layer_norm(x), mask=mask, past_bias=past_bias,
                                            optimized_attention=optimized_attention)
    return x + output, past_bias


def _ff_out_of_place(layer, x):
    """T5LayerFF.forward with `x + ...` for `x += ...`."""
    return x + layer.DenseReluDense(layer.layer_norm(x))


def _out_of_place_t5_residuals(module) -> None:
    import comfy.text_encoders.t5

    patches = {comfy.text_encoders.t5.T5LayerSelfAttention: _attention_out_of_place,
               comfy.text_encoders.t5.T5LayerFF: _ff_out_of_place}
    layers = [m for m in module.modules() if type(m) in patches]
    if not layers:
        raise RuntimeError(f"{type(module).__name__} has no comfy.text_encoders.t5 layers; this ComfyUI's T5 is "
                           "built differently and lora.train_t5 cannot train it")
    for layer in layers:
        layer.forward = types.MethodType(patches[type(layer)], layer)


def _out_of_place_residuals(module) -> None:
    import comfy.clip_model

    layers = [m for m in module.modules() if isinstance(m, comfy.clip_model.CLIPLayer)]
    if not layers:
        raise RuntimeError(f"{type(module).__name__} has no comfy.clip_model.CLIPLayer; this ComfyUI's CLIP-L "
                           "is built differently and lora.train_text_encoder cannot train it")
    for layer in layers:  # a bound method: a deepcopy of the module stays bound to its own layers
        layer.forward = types.MethodType(_residuals_out_of_place, layer)
