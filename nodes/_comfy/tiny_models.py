"""Tiny, seeded, real-architecture Flux transformers built from ComfyUI's own classes.

No weights can be downloaded, so the demo and every test run on these: ComfyUI's
`comfy.ldm.flux.model.Flux` with a small hidden size and depth. The shapes keep what makes each
family itself (Flux.1: 16-channel latents, 2x2 patches, T5+CLIP conditioning, optional guidance
embedding; Flux.2: 128-channel latents, global modulation, SiLU-gated MLP, no biases), so code that
works here meets the same module names and tensor layouts as the real models.

Beyond the bare transformer, `build_tiny_flux_models` gives what a checkpoint loader gives a graph:
a MODEL (ModelPatcher around comfy's Flux / Flux2 model with the real latent format and sampling),
a CLIP (bundled tokenizers, tiny CLIP-L/T5) and a VAE (tiny KL autoencoder, or for Flux.1 the colour
VAE of tiny_colour_vae.py), all seeded, on CPU.
comfy is imported inside the builders only, never at import time.
"""

import functools
from dataclasses import dataclass

import torch

from .tiny_colour_vae import build_tiny_colour_vae

# Conditioning widths of the tiny text encoders (real Flux.1: T5-XXL 4096 / CLIP-L pooled 768).
TINY_CONTEXT_DIM = 64
TINY_POOLED_DIM = 32
# Flux.2 klein's context is three hidden states of its Qwen3 encoder side by side (4B: 3 x 2560).
TINY_QWEN3_HIDDEN = 32
TINY_QWEN3_TAPS = [1, 2, 3]  # the layers whose inputs are tapped (real: 9, 18, 27 of 36)

_COMMON = dict(hidden_size=64, num_heads=4, depth=2, depth_single_blocks=2, context_in_dim=TINY_CONTEXT_DIM)

TINY_FLUX_CONFIGS = {
    # Flux.1 dev / Krea: guidance-distilled.
    "flux1-dev": dict(
        _COMMON, image_model="flux", in_channels=16, out_channels=16, vec_in_dim=TINY_POOLED_DIM,
        mlp_ratio=4.0, axes_dim=[4, 6, 6], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True,
        txt_ids_dims=[],
    ),
    # Flux.1 schnell: no guidance embedding.
    "flux1-schnell": dict(
        _COMMON, image_model="flux", in_channels=16, out_channels=16, vec_in_dim=TINY_POOLED_DIM,
        mlp_ratio=4.0, axes_dim=[4, 6, 6], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False,
        txt_ids_dims=[],
    ),
    # Flux.2 dev: 128-channel latents, shared modulation, gated SiLU MLP, bias-free linears.
    "flux2-dev": dict(
        _COMMON, image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None,
        mlp_ratio=3.0, axes_dim=[4, 4, 4, 4], theta=2000, patch_size=1, qkv_bias=False,
        guidance_embed=True, global_modulation=True, mlp_silu_act=True, ops_bias=False,
        default_ref_method="index", ref_index_scale=10.0, txt_ids_dims=[3],
    ),
    # Flux.2 klein (4B / 9B): the Flux.2 architecture without guidance embedding, Qwen3 conditioning.
    "flux2-klein": dict(
        _COMMON, image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None,
        context_in_dim=len(TINY_QWEN3_TAPS) * TINY_QWEN3_HIDDEN,
        mlp_ratio=3.0, axes_dim=[4, 4, 4, 4], theta=2000, patch_size=1, qkv_bias=False,
        guidance_embed=False, global_modulation=True, mlp_silu_act=True, ops_bias=False,
        default_ref_method="index", ref_index_scale=10.0, txt_ids_dims=[3],
    ),
}
NEEDS_KLEIN = {"flux2-klein"}
"""Variants whose text encoder only hosts with Flux.2 klein support build (ComfyUI >= 0.9.2)."""


def available_variants() -> list[str]:
    """The tiny variants this host can build (klein needs its Qwen3 text encoder)."""
    from .host import klein_available

    return [name for name in TINY_FLUX_CONFIGS if name not in NEEDS_KLEIN or klein_available()]


@dataclass(frozen=True)
class TinyFluxSpec:
    variant: str
    seed: int = 0
    dtype: torch.dtype = torch.float32

    def config(self) -> dict:
        """The FluxParams / unet config of the variant, as this host's Flux class takes it."""
        from .host import flux_params

        if self.variant not in TINY_FLUX_CONFIGS:
            raise ValueError(f"unknown tiny Flux variant {self.variant!r}; choose one of {sorted(TINY_FLUX_CONFIGS)}")
        return flux_params(TINY_FLUX_CONFIGS[self.variant])


def build_tiny_flux_transformer(spec: TinyFluxSpec):
    """ComfyUI's Flux transformer with seeded random weights (no ModelPatcher around it).

    Weights are drawn with a fixed generator and scaled so activations stay O(1) through the
    blocks: ComfyUI's `disable_weight_init` ops leave parameters uninitialised.
    """
    import comfy.ldm.flux.model
    import comfy.ops

    model = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, dtype=spec.dtype, device="cpu", **spec.config())
    # Flux's only 1-D gains are its RMSNorm gains and its weights are all 2-D: fan-in is shape[1].
    _seed_parameters(model, spec.seed, is_gain=_is_norm_gain, fan_in=lambda p: p.shape[1])
    return model.eval()


def _seed_parameters(module: torch.nn.Module, seed: int, is_gain, fan_in) -> None:
    """Fill every parameter from one seeded generator, in `named_parameters` order.

    Matrices/kernels get N(0, 1/fan_in) so activations stay O(1); norm gains get 1 + small noise
    (a gain near 0 would silence the layer); everything else (biases, embeddings of size 1) is small.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                noise = torch.randn(param.shape, generator=generator) / fan_in(param) ** 0.5
            elif is_gain(name):
                noise = 1.0 + 0.1 * torch.randn(param.shape, generator=generator)
            else:
                noise = 0.02 * torch.randn(param.shape, generator=generator)
            param.copy_(noise.to(param.dtype))


# --- The same models as ComfyUI objects (MODEL / CLIP / VAE) for graphs and the demo. -------------

# Text encoders: ComfyUI's CLIP-L and T5 classes with their bundled tokenizers, shrunk through the
# `<model_name>_model_config` overrides SDClipModel applies on top of the stock json configs.
# CLIP-L's pooled output (its hidden size) feeds Flux.1's `vector_in`; T5's hidden states are the context.
TINY_CLIP_L_CONFIG = dict(hidden_size=TINY_POOLED_DIM, num_attention_heads=2, intermediate_size=64, num_hidden_layers=2, projection_dim=TINY_POOLED_DIM)
TINY_T5_CONFIG = dict(d_model=TINY_CONTEXT_DIM, d_kv=16, num_heads=4, d_ff=128, num_layers=2)
# Qwen3-4B shrunk (its head_dim of 128 is a class constant; the vocabulary stays, token ids reach 151k).
TINY_QWEN3_CONFIG = dict(hidden_size=TINY_QWEN3_HIDDEN, intermediate_size=64, num_hidden_layers=len(TINY_QWEN3_TAPS) + 1,
                         num_attention_heads=2, num_key_value_heads=1)

# VAE: ComfyUI's KL autoencoder with the SD/Flux layout (4 levels: /8) but 32 base channels (the
# smallest GroupNorm(32) allows) and one res block per level. Flux.2's VAE is the same network with
# 32 latent channels whose 2x2 patches are batch-normed into 128 channels at /16, as ComfyUI's own
# Flux.2 VAE detection (`bn.running_mean` present) builds it.
_VAE_DDCONFIG = dict(double_z=True, resolution=256, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2, 4, 4], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
TINY_VAE_LAYOUT = {  # variant family -> (z_channels, batch_norm_latent)
    "flux": (16, False),
    "flux2": (32, True),
}


@dataclass(frozen=True)
class TinyFluxModels:
    """What a Flux checkpoint gives a graph: MODEL (ModelPatcher), CLIP (comfy.sd.CLIP), VAE (comfy.sd.VAE)."""

    model: object
    clip: object
    vae: object


def build_tiny_model_patcher(spec: TinyFluxSpec):
    """The tiny transformer as a real MODEL: ComfyUI's own model config (found by matching the unet
    config against `comfy.supported_models`, as its loaders do), so latent format, model sampling
    (shift) and conditioning are the real Flux.1 / Flux.2 ones."""
    import comfy.model_detection
    import comfy.model_management
    import comfy.model_patcher

    model_config = comfy.model_detection.model_config_from_unet_config(spec.config())
    if model_config is None:
        raise RuntimeError(f"ComfyUI did not recognise the tiny {spec.variant!r} config as a Flux model")
    model_config.set_inference_dtype(spec.dtype, None)
    offload_device = comfy.model_management.unet_offload_device()
    model = model_config.get_model({}, "", device=offload_device)
    model.load_model_weights(build_tiny_flux_transformer(spec).state_dict(), "")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(), offload_device=offload_device)
    # What ComfyUI's own loaders register (0.33.0 reads it): how to build this MODEL again, for
    # code that needs a private copy (its TrainLoraNode clones with force_deepcopy).
    patcher.cached_patcher_init = (_rebuild_model_patcher, (spec,))
    return patcher


def _rebuild_model_patcher(spec: TinyFluxSpec, disable_dynamic: bool = False):
    """The same seeded MODEL again (the tiny models are never dynamic, so `disable_dynamic` changes nothing)."""
    return build_tiny_model_patcher(spec)


def build_tiny_clip(variant: str, seed: int = 0):
    """A CLIP whose `encode_from_tokens` gives Flux conditioning with tiny widths.

    Flux.1: ComfyUI's FluxTokenizer + FluxClipModel (CLIP-L pooled (1, 32), T5 context (1, T, 64)).
    Flux.2 dev: the real text encoder is Mistral-24B whose tokenizer ships inside the weights, so the
    stand-in is the bundled T5 tokenizer + a tiny T5: context (1, T, 64) and no pooled vector.
    Flux.2 klein: ComfyUI's own KleinTokenizer (bundled Qwen tokenizer, chat template, 512-token
    minimum) and klein text encoder around a tiny Qwen3: context (1, 512, 3 x 32), no pooled vector.
    """
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.flux
    import comfy.text_encoders.genmo

    family = TinyFluxSpec(variant).config()["image_model"]
    options = {"dtype": torch.float32, "clip_l_model_config": dict(TINY_CLIP_L_CONFIG), "t5xxl_model_config": dict(TINY_T5_CONFIG)}
    if variant in NEEDS_KLEIN:
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.KleinTokenizer,
                                                        comfy.text_encoders.flux.klein_te(model_type="qwen3_4b"))
        options.update(qwen3_4b_model_config=dict(TINY_QWEN3_CONFIG), qwen3_4b_class=_tiny_qwen3_encoder())
    elif family == "flux":
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.FluxTokenizer, comfy.text_encoders.flux.FluxClipModel)
    else:
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.genmo.MochiT5Tokenizer, _t5_only_text_encoder())
    clip = comfy.sd.CLIP(target=target, model_options=options)
    _seed_parameters(clip.cond_stage_model, seed, is_gain=_is_norm_gain, fan_in=_fan_in_all)
    return clip


def build_tiny_vae(variant: str, seed: int = 0):
    """ComfyUI's VAE around a tiny KL autoencoder: Flux.1 16 channels at /8, Flux.2 128 at /16."""
    import comfy.ldm.models.autoencoder
    import comfy.sd

    z_channels, batch_norm_latent = TINY_VAE_LAYOUT[TinyFluxSpec(variant).config()["image_model"]]
    params = dict(ddconfig=dict(_VAE_DDCONFIG, z_channels=z_channels, batch_norm_latent=batch_norm_latent), embed_dim=z_channels)
    weights = comfy.ldm.models.autoencoder.AutoencoderKL(**params)
    _seed_parameters(weights, seed, is_gain=_is_norm_gain, fan_in=_fan_in_all)
    vae = comfy.sd.VAE(sd=weights.state_dict(), config={"params": params}, dtype=torch.float32)
    # The explicit-config path keeps SD's defaults (4 channels, /8); state what this network produces.
    vae.latent_channels = z_channels * 4 if batch_norm_latent else z_channels
    vae.downscale_ratio = vae.upscale_ratio = 16 if batch_norm_latent else 8
    return vae


VAE_KINDS = ("random", "colour")
"""random: the seeded KL autoencoder above (noise pictures). colour: Flux.1 only, the hand-set TAESD
of tiny_colour_vae.py, whose decode of an encoded picture resembles it."""


def build_tiny_flux_models(variant: str, seed: int = 0, vae: str = "random") -> TinyFluxModels:
    """MODEL, CLIP and VAE for one variant, seeded with seed, seed + 1 and seed + 2."""
    if vae not in VAE_KINDS:
        raise ValueError(f"unknown tiny VAE {vae!r}; choose one of {list(VAE_KINDS)}")
    if vae == "colour" and TinyFluxSpec(variant).config()["image_model"] != "flux":
        raise ValueError(f"the colour tiny VAE makes Flux.1 latents (16 channels); {variant!r} needs vae 'random'")
    return TinyFluxModels(
        model=build_tiny_model_patcher(TinyFluxSpec(variant, seed=seed)),
        clip=build_tiny_clip(variant, seed=seed + 1),
        vae=build_tiny_colour_vae(seed=seed + 2) if vae == "colour" else build_tiny_vae(variant, seed=seed + 2),
    )


def _is_norm_gain(name: str) -> bool:
    return "norm" in name and name.endswith(("weight", "scale"))


def _fan_in_all(param: torch.Tensor) -> int:
    return param[0].numel()  # inputs per output unit, kernel taps included


@functools.cache
def _t5_only_text_encoder():
    """Defined on first use: the class derives from comfy's, which this module must not import eagerly."""
    import comfy.sd1_clip
    import comfy.text_encoders.sd3_clip

    class T5OnlyTextEncoder(comfy.sd1_clip.SD1ClipModel):
        """A bare T5 encoder under the `t5xxl` key (what MochiT5Tokenizer produces), no pooled output."""

        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, name="t5xxl", clip_model=comfy.text_encoders.sd3_clip.T5XXLModel, model_options=model_options)

    return T5OnlyTextEncoder


@functools.cache
def _tiny_qwen3_encoder():
    """klein's Qwen3-4B encoder class tapping the tiny model's layers (defined on first use, as above)."""
    import comfy.text_encoders.flux

    class TinyQwen3Encoder(comfy.text_encoders.flux.Qwen3_4BModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, layer=list(TINY_QWEN3_TAPS), dtype=dtype, model_options=model_options)

    return TinyQwen3Encoder
