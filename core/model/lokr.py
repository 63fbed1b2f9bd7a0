"""LoKr (LyCORIS' Kronecker-product adapter) on the Flux linear layers, our own small module.

A LoKr layer changes its linear's weight (out x in) by delta W = scale * kron(w1, w2), where
out = out_l * out_k and in = in_m * in_n are split by `factorization` (LyCORIS' `factor`):
w1 is the small (out_l, in_m) block, w2 the large (out_k, in_n) one. w2 is a rank-`rank` product
w2_a @ w2_b unless `full_matrix` is set or the rank is at least half its larger side (LyCORIS then
uses the full matrix too); w1 is full unless `decompose_both` (w1_a @ w1_b, same rank rule).
scale is alpha / rank when some part is a product and 1 when both are full: the rule of ComfyUI's
loader (comfy/weight_adapter/lokr.py, calculate_weight), which LyCORIS follows by saving alpha =
rank there. A file written from these weights (core/model/lokr_format.py) reproduces training.
Initialised as LyCORIS does: w2 (or w2_b) zero, so training starts from the base model.

Why not peft's LoKr (0.21.2, the version both hosts pin): it has no `full_matrix`, applies
alpha / r also when both parts are full (ComfyUI applies 1), draws rank and module dropout from
torch's global generator (two runs in one process would race on it, core/model/lora_random.py)
and materialises the whole out x in delta on every forward. Here the delta is applied as two
small matmuls over the input reshaped to (in_m, in_n), never built as a matrix, and the backward
keeps only the input (`_KronApply`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Iterator, Mapping

import torch
from torch import nn

__all__ = ["LokrLinear", "LokrWeights", "PARTS", "attach_lokr", "factorization", "load_lokr_state_dict",
           "lokr_disabled", "lokr_layers", "lokr_parameters", "part_shapes"]

PARTS = ("w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b")


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """(m, n) with m * n = dimension, m <= n, m the largest divisor not above `factor` (-1: no bound)
    nor sqrt(dimension): LyCORIS' split (1024 -> (32, 32); factor 8: 1024 -> (8, 128))."""
    limit = math.isqrt(dimension) if factor < 0 else min(factor, math.isqrt(dimension))
    m = max(d for d in range(1, max(limit, 1) + 1) if dimension % d == 0)
    return m, dimension // m


def part_shapes(in_features: int, out_features: int, *, rank: int, factor: int, full_matrix: bool,
                decompose_both: bool) -> dict:
    """{part: shape} of the LoKr factors of an in -> out linear, by LyCORIS' rules (module docstring)."""
    out_l, out_k = factorization(out_features, factor)
    in_m, in_n = factorization(in_features, factor)
    if decompose_both and not full_matrix and rank < max(out_l, in_m) / 2:
        shapes = {"w1_a": (out_l, rank), "w1_b": (rank, in_m)}
    else:
        shapes = {"w1": (out_l, in_m)}
    if not full_matrix and rank < max(out_k, in_n) / 2:
        return shapes | {"w2_a": (out_k, rank), "w2_b": (rank, in_n)}
    return shapes | {"w2": (out_k, in_n)}


@dataclass(frozen=True)
class LokrWeights:
    """One LoKr layer's factors (the absent ones None): delta W = scale * kron(w1, w2)."""

    w1: torch.Tensor | None = None  # (out_l, in_m), or w1_a (out_l, rank) @ w1_b (rank, in_m)
    w1_a: torch.Tensor | None = None
    w1_b: torch.Tensor | None = None
    w2: torch.Tensor | None = None  # (out_k, in_n), or w2_a (out_k, rank) @ w2_b (rank, in_n)
    w2_a: torch.Tensor | None = None
    w2_b: torch.Tensor | None = None
    alpha: float = 1.0

    @property
    def rank(self) -> int | None:
        """The rank of the decomposed parts; None when w1 and w2 are both full matrices."""
        b = self.w2_b if self.w2_b is not None else self.w1_b
        return None if b is None else b.shape[0]

    @property
    def scale(self) -> float:
        return 1.0 if self.rank is None else float(self.alpha) / self.rank

    def tensors(self) -> dict:
        """{part: tensor} of the parts present ("w1", "w2_a", ...)."""
        return {p: getattr(self, p) for p in PARTS if getattr(self, p) is not None}

    def clone(self) -> "LokrWeights":
        return replace(self, **{p: t.clone() for p, t in self.tensors().items()})

    def w1_matrix(self) -> torch.Tensor:
        return self.w1 if self.w1 is not None else self.w1_a @ self.w1_b

    def w2_matrix(self) -> torch.Tensor:
        return self.w2 if self.w2 is not None else self.w2_a @ self.w2_b

    def delta(self) -> torch.Tensor:
        """The change to the layer's weight, in float64: scale * kron(w1, w2)."""
        double = replace(self, **{p: t.double() for p, t in self.tensors().items()})
        return torch.kron(double.w1_matrix(), double.w2_matrix()) * self.scale


class LokrLinear(nn.Module):
    """`base_layer(x) + scale * kron(w1, w2) x`, the factors trainable, the base untouched."""

    def __init__(self, base_layer: nn.Linear, *, rank: int, alpha: float, factor: int, full_matrix: bool,
                 decompose_both: bool, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features  # as peft's layers
        self.out_l, self.out_k = factorization(base_layer.out_features, factor)
        self.in_m, self.in_n = factorization(base_layer.in_features, factor)
        device = base_layer.weight.device
        shapes = part_shapes(base_layer.in_features, base_layer.out_features, rank=rank, factor=factor,
                             full_matrix=full_matrix, decompose_both=decompose_both)
        for part, shape in shapes.items():
            setattr(self, part, nn.Parameter(torch.zeros(shape, dtype=dtype, device=device)))
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.weights().scale  # alpha / rank, or 1 when w1 and w2 are both full
        self.dropout: nn.Module = nn.Identity()  # core/model/lora_random.use_seeded_dropout sets it
        self.disabled = False

    def parts(self) -> dict:
        """{part: Parameter} of this layer, in PARTS order."""
        return {p: param for p in PARTS if (param := self._parameters.get(p)) is not None}

    def weights(self) -> LokrWeights:
        return LokrWeights(**{p: t.detach() for p, t in self.parts().items()}, alpha=self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.disabled:
            return out
        p = self.parts()
        w1 = p["w1"] if "w1" in p else p["w1_a"] @ p["w1_b"]
        w2 = p["w2"] if "w2" in p else p["w2_a"] @ p["w2_b"]  # small: out_k x in_n
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else w1.dtype
        h = self.dropout(x).to(dtype)
        h = h.reshape(*h.shape[:-1], self.in_m, self.in_n)  # input index c * in_n + d -> [c, d]
        h = _KronApply.apply(h, w1.to(dtype), w2.to(dtype))  # (..., out_l, out_k): index a * out_k + b, kron's
        return out + (h.reshape(*h.shape[:-2], -1) * self.scale).to(out.dtype)


class _KronApply(torch.autograd.Function):
    """y = w1 @ x @ w2.T over x (..., in_m, in_n), i.e. kron(w1, w2) applied to x flattened.

    Plain autograd would keep the middle product w1 @ x (or x @ w2.T) for the backward: at Flux.1's
    width (3072, factor -1) about 40k values per token for the eight linears of a double block,
    beside the ~62k the block itself keeps (core/train/memory_plan.ACTIVATION_BYTES). This keeps only
    x and the two small factors and recomputes the middle product in the backward (a few % of the
    base linear's compute)."""

    @staticmethod
    def forward(ctx, x, w1, w2):
        ctx.save_for_backward(x, w1, w2)
        return (w1 @ x) @ w2.T

    @staticmethod
    def backward(ctx, grad):
        x, w1, w2 = ctx.saved_tensors
        through_w2 = grad @ w2  # (..., out_l, in_n)
        dx = w1.T @ through_w2 if ctx.needs_input_grad[0] else None
        flat = lambda t: t.reshape(-1, *t.shape[-2:])  # noqa: E731  (batch and tokens in one axis)
        dw1 = torch.einsum("bon,bmn->om", flat(through_w2), flat(x)) if ctx.needs_input_grad[1] else None
        dw2 = torch.einsum("bok,bon->kn", flat(grad), flat(w1 @ x)) if ctx.needs_input_grad[2] else None
        return dx, dw1, dw2


def lokr_layers(module: nn.Module) -> dict:
    """{BFL name: LokrLinear} for every LoKr layer attached to `module`, in module order."""
    return {name: sub for name, sub in module.named_modules() if isinstance(sub, LokrLinear)}


def attach_lokr(module: nn.Module, names: list, *, rank: int, alpha: float, factor: int, full_matrix: bool,
                decompose_both: bool, dtype: torch.dtype = torch.float32) -> None:
    """Wrap the linears `names` of `module` in LokrLinear, in place (the base modules are kept, frozen)."""
    module.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        layer = LokrLinear(getattr(parent, child), rank=rank, alpha=alpha, factor=factor, full_matrix=full_matrix,
                           decompose_both=decompose_both, dtype=dtype)
        setattr(parent, child, layer)


def lokr_parameters(module: nn.Module) -> list:
    """[(f"{name}.lokr_{part}", Parameter)] in module order, then PARTS order."""
    return [(f"{name}.lokr_{part}", param) for name, layer in lokr_layers(module).items()
            for part, param in layer.parts().items()]


@contextlib.contextmanager
def lokr_disabled(module: nn.Module) -> Iterator[None]:
    """Run `module` without its LoKr inside the block (core/model/lora.lora_disabled's LoKr half)."""
    layers = list(lokr_layers(module).values())
    previous = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield
    finally:
        for layer, was in zip(layers, previous):
            layer.disabled = was


def load_lokr_state_dict(module: nn.Module, weights: Mapping, source: str, strict: bool = True) -> list:
    """Copy `weights` ({BFL name: LokrWeights}) into the attached LoKr layers; return the names loaded.

    Every layer must have the same parts and shapes as the file's (same factor, rank, full_matrix,
    decompose_both); a different scale is absorbed into w2 (or w2_b) so the delta is the file's.
    """
    layers = lokr_layers(module)
    missing, unexpected = sorted(set(layers) - set(weights)), sorted(set(weights) - set(layers))
    if unexpected or (missing and strict):
        raise ValueError(f"{source} does not fit this LoKr: missing {missing[:5]}, unexpected {unexpected[:5]}; "
                         "use the same targets and blocks it was trained with")
    loaded = [name for name in layers if name in weights]
    with torch.no_grad():
        for name in loaded:
            layer, w = layers[name], weights[name]
            ours = {p: tuple(t.shape) for p, t in layer.parts().items()}
            theirs = {p: tuple(t.shape) for p, t in w.tensors().items()}
            if ours != theirs:
                raise ValueError(f"{source}: {name} has LoKr factors {theirs} but this run builds {ours}; set lora.rank, "
                                 "lora.lokr_factor, lora.lokr_full_matrix and lora.lokr_decompose_both as it was trained")
            ratio = w.scale / layer.scale
            for part, param in layer.parts().items():
                value = w.tensors()[part].to(torch.float64)
                param.copy_(value * ratio if part in ("w2", "w2_b") else value)
    return loaded


