"""A training-safe Flux forward over the weight modules of ComfyUI's Flux transformer.

Why this exists: ComfyUI's Flux blocks add residuals in place (`img += ...`). Under plain autograd
that raises "modified by an inplace operation"; under gradient checkpointing the recomputation runs
on the already-updated input and returns silently wrong gradients. This module computes the same
function (parity with ComfyUI's forward is a test) with out-of-place residuals, SDPA attention and
optional per-block checkpointing.

Adoption, not copying: `TrainFlux(owner)` builds its own container modules whose LEAF modules
(Linear layers, RMSNorm scales) are the owner's objects, shared by reference. peft swaps a Linear by
`setattr` on its parent; because every parent here is ours, ComfyUI's module tree is never touched,
while the weights are never copied. Module names are the BFL names (`double_blocks.0.img_attn.qkv`,
`single_blocks.1.linear1`, ...), which LoRA saving relies on. Trap: `optimum.quanto.quantize()` on
this tree would also set the replaced leaf's parameters to None, i.e. empty ComfyUI's weights;
core/model/quant.py swaps in quantized copies instead.

Duck typing only: nothing here imports comfy; the owner is read by attribute.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .flux_arch import SUPPORTED, FluxArch, UnsupportedModelError
from .flux_blocks import DoubleBlock, FinalLayer, MLPEmbedder, Modulation, SingleBlock, rms_norm_gain

__all__ = ["SUPPORTED", "FluxArch", "TrainFlux", "UnsupportedModelError", "rms_norm_gain"]


class TrainFlux(nn.Module):
    """The whole transformer as a tree of our containers over the owner's leaves (BFL names).

    `forward(latents, timesteps, context, pooled, guidance)` equals ComfyUI's
    `Flux.forward(x, timestep, context, y=pooled, guidance=guidance)` (no reference latents,
    no ControlNet, no attention mask). `checkpoint_every`: 0 = no checkpointing, k = checkpoint
    every k-th block (double and single blocks counted together, from the first).
    """

    def __init__(self, owner: nn.Module, checkpoint_every: int = 0):
        super().__init__()
        arch = FluxArch.of(owner)
        self.arch = arch
        self.checkpoint_every = checkpoint_every
        self.swap = None
        """A core.model.block_swap.BlockSwap when some blocks' weights live in system memory."""
        self.img_in = owner.img_in
        self.txt_in = owner.txt_in
        self.time_in = MLPEmbedder(owner.time_in)
        self.vector_in = MLPEmbedder(owner.vector_in) if arch.pooled_dim is not None else None
        self.guidance_in = MLPEmbedder(owner.guidance_in) if arch.has_guidance else None
        self.double_blocks = nn.ModuleList(DoubleBlock(b, arch) for b in owner.double_blocks)
        self.single_blocks = nn.ModuleList(SingleBlock(b, arch) for b in owner.single_blocks)
        self.final_layer = FinalLayer(owner.final_layer)
        if arch.global_modulation:
            self.double_stream_modulation_img = Modulation(owner.double_stream_modulation_img)
            self.double_stream_modulation_txt = Modulation(owner.double_stream_modulation_txt)
            self.single_stream_modulation = Modulation(owner.single_stream_modulation)

    @property
    def checkpoint_every(self) -> int:
        return self._checkpoint_every

    @checkpoint_every.setter
    def checkpoint_every(self, every: int) -> None:
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint_every must be an int >= 0 (0 = off, 1 = every block), got {every!r}")
        self._checkpoint_every = every

    def forward(self, latents: Tensor, timesteps: Tensor, context: Tensor, pooled: Tensor | None = None, guidance: Tensor | None = None) -> Tensor:
        arch, p = self.arch, self.arch.patch_size
        b, c, h, w = latents.shape
        x = _pad_to_patch(latents, p)
        hp, wp = x.shape[-2] // p, x.shape[-1] // p
        img = self.img_in(x.view(b, c, hp, p, wp, p).permute(0, 2, 4, 1, 3, 5).reshape(b, hp * wp, c * p * p))
        vec = self.time_in(_timestep_embedding(timesteps).to(img.dtype))
        if self.guidance_in is not None and guidance is not None:
            vec = vec + self.guidance_in(_timestep_embedding(guidance).to(img.dtype))
        if self.vector_in is not None:
            pooled = torch.zeros(b, arch.pooled_dim, device=img.device, dtype=img.dtype) if pooled is None else pooled
            vec = vec + self.vector_in(pooled[:, : arch.pooled_dim])
        txt = self.txt_in(context)
        pe = _positions(arch, context.shape[1], hp, wp, img.device, img.dtype)
        double_vec, single_vec = self._block_conditioning(vec)

        for i, block in enumerate(self.double_blocks):
            img, txt = self._call(i, block, img, txt, double_vec, pe)
        n_txt = txt.shape[1]
        x = torch.cat((txt, img), 1)
        for j, block in enumerate(self.single_blocks):
            x = self._call(len(self.double_blocks) + j, block, x, single_vec, pe)
        out = self.final_layer(x[:, n_txt:], vec)
        out = out.view(b, hp, wp, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hp * p, wp * p)
        return out[:, :, :h, :w]

    def _block_conditioning(self, vec: Tensor) -> tuple:
        """What double and single blocks receive: the vector itself, or Flux.2's shared modulations."""
        if not self.arch.global_modulation:
            return vec, vec
        shared_double = (self.double_stream_modulation_img(vec), self.double_stream_modulation_txt(vec))
        return shared_double, self.single_stream_modulation(vec)[0]

    def _call(self, index: int, block: nn.Module, *args):
        if self.swap is not None and self.swap.holds(block):  # always checkpointed (core/model/block_swap.py)
            if torch.is_grad_enabled():
                return checkpoint(self.swap.run, block, *args, use_reentrant=False)
            return self.swap.run(block, *args)
        every = self.checkpoint_every
        if every and index % every == 0 and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def block_linear_names(self) -> list:
        """BFL names of every nn.Linear inside double_blocks / single_blocks, in module order."""
        return [
            name
            for name, module in self.named_modules()
            if name.startswith(("double_blocks.", "single_blocks.")) and isinstance(module, nn.Linear)
        ]


def _pad_to_patch(x: Tensor, p: int) -> Tensor:
    """Circular padding to a multiple of the patch size, as ComfyUI's pad_to_patch_size."""
    pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
    return F.pad(x, (0, pad_w, 0, pad_h), mode="circular") if pad_h or pad_w else x


def _timestep_embedding(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """ComfyUI's timestep_embedding (t scaled by 1000, cos then sin); float64 stays float64."""
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = (1000.0 * t).to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _positions(arch: FluxArch, n_txt: int, hp: int, wp: int, device, dtype) -> Tensor:
    """RoPE rotations for [text; image] tokens, (1, 1, L, D/2, 2, 2).

    Ids as ComfyUI builds them: text at 0 (Flux.2: token index on axis 3), image at (0, row, col[, 0]).
    Angles are computed in float64, then kept in the activations' dtype: float32 and float64 as
    ComfyUI, and bf16 under bf16 autocast, where ComfyUI rotates in float32. A float32 table would
    cast every query and key to float32 and back (and again in backward), 4 casts per attention;
    rotating in bf16 costs at most a few bf16 ulps per element, which
    tests/core/model/test_flux_bf16.py bounds against ComfyUI's own bf16 forward.
    """
    n_axes = len(arch.axes_dim)
    txt_ids = torch.zeros(n_txt, n_axes, dtype=torch.float64, device=device)
    for axis in arch.text_position_axes:
        txt_ids[:, axis] = torch.arange(n_txt, dtype=torch.float64, device=device)
    rows, cols = torch.meshgrid(
        torch.arange(hp, dtype=torch.float64, device=device), torch.arange(wp, dtype=torch.float64, device=device), indexing="ij"
    )
    img_ids = torch.zeros(hp * wp, n_axes, dtype=torch.float64, device=device)
    img_ids[:, 1], img_ids[:, 2] = rows.reshape(-1), cols.reshape(-1)
    ids = torch.cat((txt_ids, img_ids), 0)
    parts = []
    for axis, dim in enumerate(arch.axes_dim):
        omega = 1.0 / arch.theta ** torch.linspace(0, (dim - 2) / dim, dim // 2, dtype=torch.float64, device=device)
        angle = ids[:, axis, None] * omega
        cos, sin = torch.cos(angle), torch.sin(angle)
        parts.append(torch.stack([cos, -sin, sin, cos], dim=-1).view(*angle.shape, 2, 2))
    pe = torch.cat(parts, dim=-3)[None, None]  # broadcasts over batch and heads
    return pe.to(dtype)
