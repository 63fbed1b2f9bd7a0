"""The blocks of our training forward (core/model/flux.py): containers over the owner's leaf
modules, with out-of-place residuals and SDPA attention. Each block computes what ComfyUI's block
of the same name computes (tests/core/model/test_flux_parity.py); their names are the BFL names.

Duck typing only: nothing here imports comfy; the owner is read by attribute.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .flux_arch import FluxArch

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
    """RoPE (as ComfyUI's math.apply_rope, computed in pe's dtype: the activations', core/model/flux.py) then SDPA;
    returns (B, L, H*D)."""
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
