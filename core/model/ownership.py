"""A run's own references to the base weights it trains on.

`TrainFlux` adopts the owner's leaf modules (Linear layers, RMSNorm gains) by reference. The owner
is ComfyUI's shared MODEL, and ComfyUI changes those modules while it samples: LoRA patching
replaces a module's weight Parameter with a patched tensor made under inference mode and puts the
original back afterwards; offloading moves it; dynamic VRAM (0.16+) streams it. A run that reads the
owner's modules would then train on another prompt's LoRA, fail with "Inference tensors cannot be
saved for backward", or read a weight on the wrong device (measured: a LoRA sampling prompt beside a
background run killed it within one step).

`own_leaves` gives the run its own leaf modules that hold the owner's tensors themselves: ComfyUI
swapping its module's Parameter then leaves the run's untouched, with no copy of the weights
(`copy=False`, the tensors are already on the training device). `copy=True` copies each tensor to
`device` (one leaf at a time, so memory never holds a second model): for a MODEL whose weights are
not resident on the training device. In-place writes to the tensors themselves (a patcher built
with `weight_inplace_update=True`) would still reach a run that shares them; ComfyUI's Flux loaders
do not build such patchers.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .quant import float_weight, stored_in_float


def own_leaves(tree: nn.Module, owner: nn.Module, device, *, copy: bool) -> int:
    """Replace every leaf of `tree` that is one of `owner`'s modules by one of the run's own, holding
    the same tensors (`copy=False`) or copies on `device` (`copy=True`); returns how many."""
    shared = {id(m) for m in owner.modules()}
    replaced = 0
    for parent in list(tree.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in shared and next(child.children(), None) is None:
                parent.add_module(name, _own_leaf(child, device, copy))
                replaced += 1
    return replaced


def _own_leaf(leaf: nn.Module, device, copy: bool) -> nn.Module:
    """A plain torch module (no ComfyUI op hooks) with `leaf`'s parameters under the same names."""
    if isinstance(leaf, nn.Linear):
        kind = nn.Linear if stored_in_float(leaf) else StoredLinear
        own = kind(leaf.in_features, leaf.out_features, bias=leaf.bias is not None, device="meta")
        if isinstance(getattr(leaf, "scale_weight", None), Tensor):  # ComfyUI's scaled fp8: W = weight * scale
            own.scale_weight = _tensor(leaf.scale_weight, device, copy)
    else:  # a norm gain: read through its parameter and eps (core/model/flux_blocks.rms_norm_gain), never called
        own = nn.Module()
        if hasattr(leaf, "eps"):
            own.eps = leaf.eps
    for name, param in leaf.named_parameters(recurse=False):
        setattr(own, name, nn.Parameter(_tensor(param, device, copy), requires_grad=False))
    return own


class StoredLinear(nn.Linear):
    """A frozen linear over a weight kept as ComfyUI loaded it (fp8 from `weight_dtype fp8_e4m3fn`,
    scaled fp8, a dequantizing tensor subclass): dequantized into the input's dtype for each call
    and dropped after it, so a 12 GB fp8 MODEL trains without a second, wider copy of its weights.
    The gradient to the input is that of the dequantized weight (the weight itself is frozen)."""

    def forward(self, x: Tensor) -> Tensor:
        weight = float_weight(self).to(x.dtype)
        return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))


def _tensor(param: Tensor, device, copy: bool) -> Tensor:
    tensor = param.detach()
    return tensor.to(device, copy=True) if copy else tensor.to(device)
