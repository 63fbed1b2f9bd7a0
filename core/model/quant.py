"""Quantized base weights (optimum-quanto), built block by block on the training device.

The linears of the double and single blocks (over 99 % of Flux.1's 12B weights) are replaced, in the
tree we are given, by frozen quanto `QLinear`s holding int8 / float8 / int4 copies. The owner's
modules (ComfyUI's model, whose leaf linears our training tree shares by reference) are never
touched: each layer is quantized from its float weight moved to the training device (a transient
copy only when the device or dtype differs, dropped right after), one layer at a time, so device
memory peaks near one float layer above the quantized weights, and the owner's float weights can
stay offloaded on the CPU.
The embedders, the final layer and Flux.2's shared modulations stay in float: they are small and
the most precision-sensitive (timestep / guidance embeddings, the projection to latents).

LoRA goes on top: quanto's QLinear subclasses nn.Linear, so peft (which has no quanto-specific
layer) wraps it with its plain lora.Linear, whose forward is base(x) + LoRA(x): the quantized base
plus a float delta. peft's merge would add the delta to `weight.data`, a quanto tensor, and the
delta is lost; core/model/lora.py refuses merges on every layer it attaches.

qint4 needs quanto's compiled unpack kernel (C++ on the CPU, built with the system compiler, no
network, into optimum/quanto/library/extensions/cpp/build inside the venv; about 35 s once on two
cores, rebuilt if torch changes): set-up builds it, and core/model/quanto_kernel.py makes sure of it, never
waiting on a dead builder's lock.
"""

import torch
from torch import nn

from .quanto_kernel import ensure_built

MODES = ("none", "qint8", "qfloat8", "qint4")
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_BLOCK_LISTS = ("double_blocks", "single_blocks")


def _qtype(mode: str):
    # optimum.quanto takes seconds to import: load it on first use, not when the pack loads.
    from optimum.quanto import qfloat8_e4m3fn, qint4, qint8

    return {"qint8": qint8, "qfloat8": qfloat8_e4m3fn, "qint4": qint4}[mode]


def is_quantized(module: nn.Module) -> bool:
    """Whether `module` itself is a quanto quantized module."""
    from optimum.quanto.nn import QModuleMixin

    return isinstance(module, QModuleMixin)


def quantize_base(tree: nn.Module, mode: str, device=None, compute_dtype: torch.dtype = None) -> int:
    """Replace the block linears of `tree` with frozen quanto copies, one layer at a time.

    `device`: where the quantized weights live (default: where each weight is now).
    `compute_dtype`: dtype of the float copy quantized from and of the QLinear's activations
    (default: the weight's own dtype; bf16 for fp8-stored weights).
    Returns how many linears were quantized ('none' returns 0 and changes nothing).
    Call before core/lora.attach_lora: quanto would otherwise quantize the LoRA weights too.
    """
    if mode not in MODES:
        raise ValueError(f"quantization {mode!r} is not supported; choose one of {MODES}")
    if mode == "none":
        return 0
    from peft.tuners.lora import LoraLayer

    if any(isinstance(m, LoraLayer) for m in tree.modules()):
        raise ValueError("quantize the base before attaching LoRA (core/lora.attach_lora), not after")
    if mode == "qint4":  # int4 weights are unpacked by a compiled kernel: build it now, with a clear error
        ensure_built(torch.device(device).type if device is not None else next(tree.parameters()).device.type)
    qtype, count = _qtype(mode), 0
    for list_name in _BLOCK_LISTS:
        for block in getattr(tree, list_name, ()):
            for parent, child_name, linear in _plain_linears(block):
                setattr(parent, child_name, _quantized_copy(linear, qtype, device, compute_dtype))
                count += 1
    if count == 0:
        raise ValueError(f"found no linear layers under {_BLOCK_LISTS} to quantize; is this a Flux module tree?")
    return count


def _plain_linears(block: nn.Module) -> list:
    """(parent, child name, linear) for every not-yet-quantized nn.Linear inside `block`."""
    out = []
    for parent in block.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear) and not is_quantized(child):
                out.append((parent, child_name, child))
    return out


@torch.no_grad()
def _quantized_copy(linear: nn.Linear, qtype, device, compute_dtype) -> nn.Module:
    """A frozen QLinear made from a float copy of `linear`'s weights; `linear` is left as it was."""
    from optimum.quanto.nn import QLinear

    weight = float_weight(linear)
    device = torch.device(device) if device is not None else weight.device
    dtype = compute_dtype or (linear.weight.dtype if linear.weight.dtype in _FLOAT_DTYPES else torch.bfloat16)
    # A stand-in Linear over a detached tensor: quanto's from_module would otherwise adopt the
    # owner's Parameter and `.to(device)` would rewrite its `.data` in place. The tensor is a copy
    # only where the device or dtype differs (quanto reads it, never writes it); the bias is always
    # copied, as the QLinear keeps it.
    source = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta", dtype=dtype)
    source.weight = nn.Parameter(weight.to(device=device, dtype=dtype), requires_grad=False)
    if linear.bias is not None:
        source.bias = nn.Parameter(linear.bias.detach().to(device=device, dtype=dtype, copy=True), requires_grad=False)
    quantized = QLinear.from_module(source, weights=qtype)
    quantized.freeze()
    quantized.requires_grad_(False)
    return quantized


def stored_in_float(linear: nn.Module) -> bool:
    """Whether `linear` computes with its weight as stored (a plain float tensor, no scale)."""
    weight = linear.weight
    return type(weight.detach()) is torch.Tensor and weight.dtype in _FLOAT_DTYPES and getattr(linear, "scale_weight", None) is None


def float_weight(linear: nn.Module) -> torch.Tensor:
    """The weight `linear` computes with, as a plain tensor (not a copy when it already is one).

    Covers how ComfyUI stores Flux weights: float (fp32/bf16/fp16), fp8 with an optional
    `scale_weight` (its "scaled fp8" checkpoints: W = weight * scale_weight), and weight tensor
    subclasses that can `dequantize()` themselves.
    """
    weight = linear.weight.detach()
    if type(weight) is not torch.Tensor and hasattr(weight, "dequantize"):
        weight = weight.dequantize()
    if weight.dtype in _FLOAT_DTYPES:
        return weight
    if weight.dtype in _FP8_DTYPES:
        scale = getattr(linear, "scale_weight", None)
        weight = weight.to(torch.float32)
        return weight * scale.detach().to(weight) if scale is not None else weight
    raise ValueError(
        f"cannot quantize a linear whose weight is stored as {weight.dtype}: load the model with a float or fp8 weight dtype, "
        "or train with quantization 'none'"
    )
