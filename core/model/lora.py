"""LoRA adapters on the Flux linear layers, injected with peft, addressed by BFL module names.

Works on any nn.Module whose submodules carry the BFL names (`double_blocks.0.img_attn.qkv`,
`single_blocks.3.linear1`, ...): ComfyUI's Flux and our training tree (core/model/flux.py) alike; which
of them a LoRA trains is core/model/lora_targets.py's, from the run's `lora` settings. peft's
layers are injected in place (`peft.inject_adapter_in_model`), so the module keeps its class and
its forward; no PeftModel wrapper appears. The scale is peft's `alpha / rank`, exactly what
ComfyUI's loader applies (delta W = alpha / rank * up @ down), so a saved file reproduces training.

Merging a LoRA into the base weights is refused on every layer we attach: the base weights are
shared by reference with ComfyUI's model (a merge would change the user's model), and on quanto
weights peft's merge silently drops the delta. Saved files carry the LoRA to every loader instead.
"""

import contextlib
import math
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from ..lora_selection import TARGET_PRESETS, parse_blocks
from ..lora_settings import LoraSettings
from . import lokr, lora_fused
from .lora_targets import target_names

__all__ = ["ADAPTER", "TARGET_PRESETS", "LoraWeights", "attach_lora", "load_lora_state_dict", "lora_disabled",
           "lora_layers", "lora_state_dict", "parameter_count", "parse_blocks", "target_names", "trainable_parameters"]

ADAPTER = "default"


@dataclass(frozen=True)
class LoraWeights:
    """One LoRA pair in ComfyUI's convention: delta W = alpha / rank * up @ down."""

    down: torch.Tensor  # (rank, in_features)  = peft lora_A = kohya lora_down
    up: torch.Tensor  # (out_features, rank)  = peft lora_B = kohya lora_up
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def tensors(self) -> dict:
        return {"down": self.down, "up": self.up}

    def clone(self) -> "LoraWeights":
        return LoraWeights(self.down.clone(), self.up.clone(), self.alpha)

    def delta(self) -> torch.Tensor:
        """The change this pair makes to its layer's weight, in float64: alpha / rank * up @ down."""
        return (self.up.double() @ self.down.double()) * (float(self.alpha) / self.rank)


def attach_lora(module: nn.Module, spec: LoraSettings, dtype: torch.dtype = torch.float32, *,
                under_autocast: bool = False, names: list | None = None) -> list:
    """Attach `spec.network`'s adapter (peft LoRA, or our LoKr: core/model/lokr.py) on `spec`'s
    targets of `module` (or on `names`) in place; return their names.

    Everything else in `module` is frozen (requires_grad=False, peft's rule; that includes base
    weights shared with the owner). LoRA weights are kept in `dtype` (float32 by default, also
    under a bf16 base): peft casts the input to the LoRA dtype and the result back. Quantize the
    base (core/model/quant.py) before attaching, never after.

    `under_autocast`: the module will only run inside `torch.autocast` (bf16 training). Autocast
    computes the LoRA's matmuls in bf16 whatever peft does, so peft's cast of every bf16 input to
    the fp32 LoRA dtype is a round trip: an fp32 copy of the activation that autocast casts straight
    back, and both again in backward (the largest casts of a bf16 step: its wide MLP inputs). It is
    turned off; autocast casts the fp32 LoRA weights once per forward (cached) and the
    activations stay bf16. Outside autocast the inputs would then meet fp32 weights: leave it off.
    """
    if lora_layers(module) or lokr.lokr_layers(module):
        raise ValueError("this module already carries LoRA layers; attach once per training tree")
    names = target_names(module, spec) if names is None else names
    if spec.network == "lokr":
        lokr.attach_lokr(module, names, rank=spec.rank, alpha=spec.effective_alpha, factor=spec.lokr_factor,
                         full_matrix=spec.lokr_full_matrix, decompose_both=spec.lokr_decompose_both, dtype=dtype)
        return names
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.effective_alpha,
        lora_dropout=spec.dropout,
        init_lora_weights=True if spec.init == "default" else spec.init,
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
        bias="none",
    )
    inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    # peft leaves its config on the module it was handed; nothing reads it, so keep the module clean.
    module.__dict__.pop("peft_config", None)
    for name, layer in lora_layers(module).items():
        layer.lora_A[ADAPTER].to(dtype)
        layer.lora_B[ADAPTER].to(dtype)
        layer.cast_input_dtype_enabled = not under_autocast
        object.__setattr__(layer, "merge", _refuse_merge(name))
        lora_fused.install(layer, ADAPTER)
    attached = list(lora_layers(module))
    if attached != names:
        raise RuntimeError(f"peft attached LoRA to {attached}, expected {names}")
    return names


def parameter_count(module: nn.Module, names: list, spec: LoraSettings) -> int:
    """The trainable weights `spec` would put on the linears `names` of `module` (memory plans; attaches nothing)."""
    linears = [module.get_submodule(name) for name in names]
    if spec.network == "lokr":
        return sum(math.prod(shape) for m in linears for shape in lokr.part_shapes(
            m.in_features, m.out_features, rank=spec.rank, factor=spec.lokr_factor, full_matrix=spec.lokr_full_matrix,
            decompose_both=spec.lokr_decompose_both).values())
    return sum(spec.rank * (m.in_features + m.out_features) for m in linears)


def _refuse_merge(name: str):
    def merge(*args, **kwargs):
        raise RuntimeError(
            f"refusing to merge the LoRA into {name}: its base weight is shared with ComfyUI's model and may be "
            "quanto-quantized (peft's merge silently drops the delta there). Save the LoRA (core/model/lora_format.py) and apply "
            "it with ComfyUI's loader."
        )

    return merge


def lora_layers(module: nn.Module) -> dict:
    """{BFL name: peft LoraLayer} for every LoRA layer attached to `module`, in module order."""
    return {name: sub for name, sub in module.named_modules() if isinstance(sub, LoraLayer)}


def trainable_parameters(module: nn.Module) -> list:
    """[(name, parameter)] of the LoRA (or LoKr) weights, in a fixed order (optimizer and checkpoint order)."""
    out = []
    for name, layer in lora_layers(module).items():
        out.append((f"{name}.lora_down", layer.lora_A[ADAPTER].weight))
        out.append((f"{name}.lora_up", layer.lora_B[ADAPTER].weight))
    return out + lokr.lokr_parameters(module)


@contextlib.contextmanager
def lora_disabled(module: nn.Module) -> Iterator[None]:
    """Run `module` as the bare base model inside the block (DOP's prior, baselines).

    Flips peft's per-layer switch directly instead of `enable_adapters`, which would also toggle
    requires_grad on the LoRA weights and disturb an optimizer step in flight.
    """
    layers = list(lora_layers(module).values())
    previous = [layer._disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        with lokr.lokr_disabled(module):
            yield
    finally:
        for layer, was in zip(layers, previous):
            layer._disable_adapters = was


def lora_state_dict(module: nn.Module) -> dict:
    """{BFL name: LoraWeights (or lokr.LokrWeights)} of the attached adapter (detached tensors sharing
    storage: clone to keep)."""
    weights = {
        name: LoraWeights(
            down=layer.lora_A[ADAPTER].weight.detach(),
            up=layer.lora_B[ADAPTER].weight.detach(),
            alpha=float(layer.lora_alpha[ADAPTER]),
        )
        for name, layer in lora_layers(module).items()
    }
    return weights | {name: layer.weights() for name, layer in lokr.lokr_layers(module).items()}


def load_lora_state_dict(module: nn.Module, weights: Mapping, source: str = "the given weights", strict: bool = True) -> list:
    """Copy `weights` ({BFL name: LoraWeights}) into the attached LoRA (resume, init_lora); return the names loaded.

    Names must match the attached targets exactly (`strict=False`, for init_lora into a wider
    target set: attached layers absent from `weights` keep their fresh init) and ranks must agree.
    A different alpha is absorbed by rescaling `up` so the delta (alpha / rank * up @ down) is
    exactly the file's while the run keeps its own alpha. LoKr weights go to core/model/lokr.py.
    """
    kinds = {type(w) for w in weights.values()}
    if lokr.lokr_layers(module) or lokr.LokrWeights in kinds:
        if kinds != {lokr.LokrWeights} or lora_layers(module):
            what = "a LoKr" if lokr.LokrWeights in kinds else "a LoRA"
            raise ValueError(f"{source} holds {what} but this run trains the other kind; set lora.network to "
                             f"{'lokr' if what == 'a LoKr' else 'lora'} or pick a file of this network")
        return lokr.load_lokr_state_dict(module, weights, source, strict)
    layers = lora_layers(module)
    missing, unexpected = sorted(set(layers) - set(weights)), sorted(set(weights) - set(layers))
    if unexpected or (missing and strict):
        raise ValueError(
            f"{source} does not fit this LoRA: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; use the same targets and blocks it was trained with"
        )
    loaded = [name for name in layers if name in weights]
    with torch.no_grad():
        for name in loaded:
            layer = layers[name]
            w, down, up = weights[name], layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if w.down.shape != down.shape or w.up.shape != up.shape:
                raise ValueError(
                    f"{source}: {name} has rank {w.rank} (down {tuple(w.down.shape)}, up {tuple(w.up.shape)}) but this run "
                    f"uses rank {layer.r[ADAPTER]} (down {tuple(down.shape)}, up {tuple(up.shape)}); set rank to {w.rank}"
                )
            down.copy_(w.down)
            up.copy_(w.up.to(torch.float64) * (w.alpha / float(layer.lora_alpha[ADAPTER])))
    return loaded

