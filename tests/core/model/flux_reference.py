"""An independent, pure-functional Flux forward in float64: the yardstick for gradients.

Written from the BFL architecture, not from core/model/flux.py: weights come from a state dict with BFL
keys, attention is an explicit softmax, RoPE is a complex rotation, norms are spelled out, and a
LoRA is merged into the weight (W + scale * B @ A) instead of running as a side path as peft does.
Everything is out of place, so plain autograd through it gives exact gradients.
"""

import math

import torch
from einops import rearrange


def reference_forward(model, x, timesteps, context, pooled=None, guidance=None, lora=None):
    """`model`.forward(x, timesteps, context, y=pooled, guidance=guidance) in float64.

    `model`: ComfyUI's Flux, read only for its state dict, its FluxParams (sizes and switches) and
    its QK-norm epsilon (`qk_norm_eps`).
    `lora`: {module name: (A (r, in), B (out, r), scale)} merged into those linears.
    """
    lora = lora or {}
    params, rms_eps = model.params, qk_norm_eps(model)
    w = {k: v.double() for k, v in model.state_dict().items()}

    def linear(name, h):
        weight = w[name + ".weight"]
        if name in lora:
            a, b, scale = lora[name]
            weight = weight + scale * (b @ a)
        out = h @ weight.T
        return out + w[name + ".bias"] if name + ".bias" in w else out

    def embedder(name, h):
        return linear(name + ".out_layer", torch.nn.functional.silu(linear(name + ".in_layer", h)))

    def modulation(name, v, n):
        out = linear(name + ".lin", torch.nn.functional.silu(v))[:, None, :]
        return out.chunk(n, dim=-1)

    def layer_norm(h):
        mean = h.mean(-1, keepdim=True)
        var = ((h - mean) ** 2).mean(-1, keepdim=True)
        return (h - mean) / torch.sqrt(var + 1e-6)

    def rms(h, gain):
        return h / torch.sqrt((h**2).mean(-1, keepdim=True) + rms_eps) * gain

    heads, hidden = params.num_heads, params.hidden_size
    x, context = x.double(), context.double()
    b, c, h_in, w_in = x.shape
    p = params.patch_size
    x = torch.nn.functional.pad(x, (0, (-w_in) % p, 0, (-h_in) % p), mode="circular")
    hp, wp = x.shape[2] // p, x.shape[3] // p
    img = linear("img_in", rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=p, pw=p))

    def t_embed(t):
        half = 128
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        args = 1000.0 * t.double()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], -1)

    vec = embedder("time_in", t_embed(timesteps))
    if params.guidance_embed and guidance is not None:
        vec = vec + embedder("guidance_in", t_embed(guidance))
    if params.vec_in_dim is not None:
        y = torch.zeros(b, params.vec_in_dim, dtype=torch.float64) if pooled is None else pooled.double()
        vec = vec + embedder("vector_in", y)
    txt = linear("txt_in", context)
    n_txt = txt.shape[1]

    # RoPE as complex rotations: token ids (text first), one frequency band per axis.
    n_axes = len(params.axes_dim)
    txt_ids = torch.zeros(n_txt, n_axes, dtype=torch.float64)
    for axis in getattr(params, "txt_ids_dims", [3] if n_axes == 4 else []):
        txt_ids[:, axis] = torch.arange(n_txt, dtype=torch.float64)
    img_ids = torch.zeros(hp, wp, n_axes, dtype=torch.float64)
    img_ids[..., 1] = torch.arange(hp, dtype=torch.float64)[:, None]
    img_ids[..., 2] = torch.arange(wp, dtype=torch.float64)[None, :]
    ids = torch.cat([txt_ids, img_ids.reshape(-1, n_axes)])
    angles = torch.cat(
        [ids[:, i, None] * params.theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d) for i, d in enumerate(params.axes_dim)], -1
    )
    rotation = torch.polar(torch.ones_like(angles), angles)  # (L, D/2)

    def rope(t):
        z = torch.view_as_complex(t.reshape(*t.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(z * rotation).reshape(t.shape)

    def attention(q, k, v):
        q, k = rope(q), rope(k)
        scores = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return rearrange(scores @ v, "b h l d -> b l (h d)")

    def split_heads(qkv, prefix):
        q, k, v = rearrange(qkv, "b l (k h d) -> k b h l d", k=3, h=heads)
        return rms(q, gain(prefix + ".query_norm")), rms(k, gain(prefix + ".key_norm")), v

    def gain(name):
        return w[name + ".scale"] if name + ".scale" in w else w[name + ".weight"]

    def mlp(prefix, h):
        h = linear(prefix + ".0", h)
        if params.mlp_silu_act:
            a, g = h.chunk(2, -1)
            h = torch.nn.functional.silu(a) * g
        else:
            h = torch.nn.functional.gelu(h, approximate="tanh")
        return linear(prefix + ".2", h)

    if params.global_modulation:
        shared_img = modulation("double_stream_modulation_img", vec, 6)
        shared_txt = modulation("double_stream_modulation_txt", vec, 6)
        shared_single = modulation("single_stream_modulation", vec, 3)

    for i in range(params.depth):
        pre = f"double_blocks.{i}"
        if params.global_modulation:
            im, tm = shared_img, shared_txt
        else:
            im, tm = modulation(pre + ".img_mod", vec, 6), modulation(pre + ".txt_mod", vec, 6)
        iq, ik, iv = split_heads(linear(pre + ".img_attn.qkv", layer_norm(img) * (1 + im[1]) + im[0]), pre + ".img_attn.norm")
        tq, tk, tv = split_heads(linear(pre + ".txt_attn.qkv", layer_norm(txt) * (1 + tm[1]) + tm[0]), pre + ".txt_attn.norm")
        attn = attention(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2))
        img = img + im[2] * linear(pre + ".img_attn.proj", attn[:, n_txt:])
        img = img + im[5] * mlp(pre + ".img_mlp", layer_norm(img) * (1 + im[4]) + im[3])
        txt = txt + tm[2] * linear(pre + ".txt_attn.proj", attn[:, :n_txt])
        txt = txt + tm[5] * mlp(pre + ".txt_mlp", layer_norm(txt) * (1 + tm[4]) + tm[3])

    seq = torch.cat([txt, img], 1)
    for i in range(params.depth_single_blocks):
        pre = f"single_blocks.{i}"
        shift, scale, gate = shared_single if params.global_modulation else modulation(pre + ".modulation", vec, 3)
        h = linear(pre + ".linear1", layer_norm(seq) * (1 + scale) + shift)
        qkv, m = h[..., : 3 * hidden], h[..., 3 * hidden :]
        q, k, v = split_heads(qkv, pre + ".norm")
        if params.mlp_silu_act:
            a, g = m.chunk(2, -1)
            m = torch.nn.functional.silu(a) * g
        else:
            m = torch.nn.functional.gelu(m, approximate="tanh")
        seq = seq + gate * linear(pre + ".linear2", torch.cat([attention(q, k, v), m], -1))

    img = seq[:, n_txt:]
    shift, scale = linear("final_layer.adaLN_modulation.1", torch.nn.functional.silu(vec))[:, None, :].chunk(2, -1)
    out = linear("final_layer.linear", layer_norm(img) * (1 + scale) + shift)
    out = rearrange(out, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=hp, w=wp, ph=p, pw=p)
    return out[:, :, :h_in, :w_in]


def qk_norm_eps(model) -> float:
    """The epsilon of ComfyUI's QK RMSNorm, in float64: its own RMSNorm (hosts up to 0.13) adds 1e-6;
    torch's nn.RMSNorm (0.14 on) has `eps`, where None means the input dtype's machine epsilon."""
    norm = model.double_blocks[0].img_attn.norm.query_norm
    if not hasattr(norm, "eps"):
        return 1e-6
    return torch.finfo(torch.float64).eps if norm.eps is None else norm.eps


def make_inputs(model, *, dtype, height=16, width=24, batch=2, tokens=7, seed=1):
    """Seeded (latents, sigmas, context, pooled, guidance) for a tiny ComfyUI Flux `model`."""
    g = torch.Generator().manual_seed(seed)
    p = model.params
    latents = torch.randn(batch, p.in_channels, height, width, generator=g).to(dtype)
    sigmas = torch.linspace(0.15, 0.9, batch).to(dtype)
    context = torch.randn(batch, tokens, p.context_in_dim, generator=g).to(dtype)
    pooled = torch.randn(batch, p.vec_in_dim, generator=g).to(dtype) if p.vec_in_dim is not None else None
    guidance = torch.linspace(1.0, 4.0, batch).to(dtype) if p.guidance_embed else None
    return latents, sigmas, context, pooled, guidance
