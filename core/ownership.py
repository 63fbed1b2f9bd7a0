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

from torch import Tensor, nn


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
        own = nn.Linear(leaf.in_features, leaf.out_features, bias=leaf.bias is not None, device="meta")
    else:  # a norm gain: read through its parameter and eps (core.flux.rms_norm_gain), never called
        own = nn.Module()
        if hasattr(leaf, "eps"):
            own.eps = leaf.eps
    for name, param in leaf.named_parameters(recurse=False):
        setattr(own, name, nn.Parameter(_tensor(param, device, copy), requires_grad=False))
    return own


def _tensor(param: Tensor, device, copy: bool) -> Tensor:
    tensor = param.detach()
    return tensor.to(device, copy=True) if copy else tensor.to(device)
