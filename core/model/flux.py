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

__all__ = ["SUPPORTED", "FluxArch", "TrainFlux", "UnsupportedModelError", "rms_norm_gain"]
_EPS = 1e-6  # every Flux LayerNorm's epsilon, and its RMSNorm's before ComfyUI 0.14


class _Container(nn.Module):
    """Our own parent module holding the owner's leaves under their BFL names."""

    def __init__(self, **children: nn.Module):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


class MLPEmbedder(_Container):
    """time_in / guidance_in / vector_in: in_layer -> SiLU -> out_layer."""

    def __init__(self, owner):
        super().__init__(in_layer=owner.in_layer, out_layer=owner.out_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class Modulation(_Container):
    """`lin(silu(vec))` split into (shift, scale, gate) triples, each (B, 1, D)."""

    def __init__(self, owner):
        super().__init__(lin=owner.lin)
        self.triples = owner.multiplier // 3

    def forward(self, vec: Tensor) -> list:
        chunks = self.lin(F.silu(vec[:, None, :])).chunk(3 * self.triples, dim=-1)
        return [chunks[3 * i : 3 * i + 3] for i in range(self.triples)]


def rms_norm_gain(norm: nn.Module) -> tuple:
    """(gain parameter, eps) of one of ComfyUI's RMSNorm modules, whichever kind the host builds.

    Up to ComfyUI 0.13 Flux's own RMSNorm keeps its gain in `scale` and always uses eps 1e-6; from
    0.14 it is torch's `nn.RMSNorm` (`weight`, and its own `eps`, where None means the input dtype's
    machine epsilon, as in `F.rms_norm`). Using the norm's own eps is what keeps parity on both.
    """
    if isinstance(getattr(norm, "scale", None), Tensor):
        return norm.scale, _EPS
    return norm.weight, norm.eps


class QKNorm(_Container):
    """RMSNorm of queries and keys per head, with the owner's gains and eps (`rms_norm_gain`)."""

    def __init__(self, owner):
        super().__init__(query_norm=owner.query_norm, key_norm=owner.key_norm)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> tuple:
        return _rms(q, self.query_norm).to(v.dtype), _rms(k, self.key_norm).to(v.dtype)


def _rms(x: Tensor, norm: nn.Module) -> Tensor:
    gain, eps = rms_norm_gain(norm)
    return F.rms_norm(x, x.shape[-1:], gain.to(x.dtype), eps)


class Attention(_Container):
    """img_attn / txt_attn: qkv, norm (QKNorm), proj."""

    def __init__(self, owner):
        super().__init__(qkv=owner.qkv, norm=QKNorm(owner.norm), proj=owner.proj)


class MLP(_Container):
    """img_mlp / txt_mlp: children "0" and "2" as in the owner's nn.Sequential."""

    def __init__(self, owner, gated: bool):
        super().__init__(**{"0": owner[0], "2": owner[2]})
        self.gated = gated

    def forward(self, x: Tensor) -> Tensor:
        h = getattr(self, "0")(x)
        return getattr(self, "2")(_activation(h, self.gated))


def _activation(h: Tensor, gated: bool) -> Tensor:
    if gated:
        a, b = h.chunk(2, dim=-1)
        return F.silu(a) * b
    return F.gelu(h, approximate="tanh")


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=_EPS) * (1 + scale) + shift


def _heads(qkv: Tensor, num_heads: int) -> tuple:
    """(B, L, 3*H*D) -> q, k, v each (B, H, L, D)."""
    b, n, _ = qkv.shape
    return qkv.view(b, n, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def _attention(q: Tensor, k: Tensor, v: Tensor, pe: Tensor) -> Tensor:
    """RoPE (as ComfyUI's math.apply_rope, computed in pe's dtype) then SDPA; returns (B, L, H*D)."""
    q, k = _rope(q, pe), _rope(k, pe)
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def _rope(x: Tensor, pe: Tensor) -> Tensor:
    pairs = x.to(pe.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    rotated = pe[..., 0] * pairs[..., 0] + pe[..., 1] * pairs[..., 1]
    return rotated.reshape(x.shape).type_as(x)


class DoubleBlock(_Container):
    """Separate image and text streams that attend jointly (text tokens first)."""

    def __init__(self, owner, arch: FluxArch):
        own_mod = not arch.global_modulation
        super().__init__(
            **({"img_mod": Modulation(owner.img_mod), "txt_mod": Modulation(owner.txt_mod)} if own_mod else {}),
            img_attn=Attention(owner.img_attn),
            img_mlp=MLP(owner.img_mlp, arch.gated_mlp),
            txt_attn=Attention(owner.txt_attn),
            txt_mlp=MLP(owner.txt_mlp, arch.gated_mlp),
        )
        self.own_modulation = own_mod
        self.num_heads = arch.num_heads

    def forward(self, img: Tensor, txt: Tensor, vec, pe: Tensor) -> tuple:
        """`vec` is the (B, D) conditioning vector, or the shared (img, txt) modulations for Flux.2."""
        img_mods, txt_mods = (self.img_mod(vec), self.txt_mod(vec)) if self.own_modulation else vec
        img_q, img_k, img_v = self._qkv(self.img_attn, img, img_mods[0])
        txt_q, txt_k, txt_v = self._qkv(self.txt_attn, txt, txt_mods[0])
        q, k, v = torch.cat((txt_q, img_q), 2), torch.cat((txt_k, img_k), 2), torch.cat((txt_v, img_v), 2)
        attn = _attention(q, k, v, pe)
        n_txt = txt.shape[1]
        img = self._residuals(img, attn[:, n_txt:], self.img_attn, self.img_mlp, img_mods)
        txt = self._residuals(txt, attn[:, :n_txt], self.txt_attn, self.txt_mlp, txt_mods)
        return img, txt

    def _qkv(self, attn: Attention, x: Tensor, mod1) -> tuple:
        shift, scale, _ = mod1
        q, k, v = _heads(attn.qkv(_modulate(x, shift, scale)), self.num_heads)
        q, k = attn.norm(q, k, v)
        return q, k, v

    @staticmethod
    def _residuals(x: Tensor, attn_out: Tensor, attn: Attention, mlp: MLP, mods) -> Tensor:
        (_, _, gate1), (shift2, scale2, gate2) = mods
        x = x + gate1 * attn.proj(attn_out)
        return x + gate2 * mlp(_modulate(x, shift2, scale2))


class SingleBlock(_Container):
    """One stream over [text; image]: linear1 gives qkv and the MLP input, linear2 merges both."""

    def __init__(self, owner, arch: FluxArch):
        own_mod = not arch.global_modulation
        super().__init__(
            linear1=owner.linear1,
            linear2=owner.linear2,
            norm=QKNorm(owner.norm),
            **({"modulation": Modulation(owner.modulation)} if own_mod else {}),
        )
        self.own_modulation = own_mod
        self.num_heads = arch.num_heads
        self.hidden_size = arch.hidden_size
        self.gated = arch.gated_mlp

    def forward(self, x: Tensor, vec, pe: Tensor) -> Tensor:
        """`vec` is the (B, D) conditioning vector, or the shared modulation triple for Flux.2."""
        shift, scale, gate = self.modulation(vec)[0] if self.own_modulation else vec
        h = self.linear1(_modulate(x, shift, scale))
        qkv, mlp = h.split([3 * self.hidden_size, h.shape[-1] - 3 * self.hidden_size], dim=-1)
        q, k, v = _heads(qkv, self.num_heads)
        q, k = self.norm(q, k, v)
        attn = _attention(q, k, v, pe)
        return x + gate * self.linear2(torch.cat((attn, _activation(mlp, self.gated)), 2))


class FinalLayer(_Container):
    """final_layer: adaLN (shift, scale) from the conditioning vector, then the output linear."""

    def __init__(self, owner):
        super().__init__(linear=owner.linear, adaLN_modulation=_Container(**{"1": owner.adaLN_modulation[1]}))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = getattr(self.adaLN_modulation, "1")(F.silu(vec[:, None, :])).chunk(2, dim=-1)
        return self.linear(_modulate(x, shift, scale))


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
        """A core.block_swap.BlockSwap when some blocks' weights live in system memory."""
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
    Angles are computed in float64 and kept in float32 (ComfyUI) unless the model runs in float64.
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
    return pe.to(torch.float64 if dtype == torch.float64 else torch.float32)
