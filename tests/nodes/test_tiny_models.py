"""The tiny models are real ComfyUI objects of the right Flux family, seeded, and shaped like Flux."""

import functools

import pytest
import torch

from tests.comfy_host import import_comfy, klein_param

import_comfy()

import comfy.latent_formats  # noqa: E402
import comfy.model_base  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.model_sampling  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.sd  # noqa: E402

from flux_lora_lab.nodes._comfy.tiny_models import (  # noqa: E402
    TINY_CONTEXT_DIM,
    TINY_QWEN3_HIDDEN,
    TINY_POOLED_DIM,
    TinyFluxSpec,
    build_tiny_clip,
    build_tiny_flux_models,
    build_tiny_flux_transformer,
    build_tiny_model_patcher,
    build_tiny_vae,
)

# variant -> (model class, latent format, latent channels, VAE downscale, has pooled vector)
EXPECTED = {
    "flux1-dev": (comfy.model_base.Flux, comfy.latent_formats.Flux, 16, 8, True),
    "flux1-schnell": (comfy.model_base.Flux, comfy.latent_formats.Flux, 16, 8, True),
    "flux2-dev": (comfy.model_base.Flux2, comfy.latent_formats.Flux2, 128, 16, False),
    "flux2-klein": (comfy.model_base.Flux2, comfy.latent_formats.Flux2, 128, 16, False),
}
VARIANTS = [klein_param() if v == "flux2-klein" else v for v in sorted(EXPECTED)]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: thread hand-offs cost more than the maths (measured 10x on busy shared cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@functools.cache
def tiny(variant):
    """One build per variant for the read-only checks (seed 0: model 0, CLIP 1, VAE 2)."""
    return build_tiny_flux_models(variant, seed=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_is_a_real_flux_model_patcher(variant):
    model_class, latent_format, channels, _, _ = EXPECTED[variant]
    patcher = tiny(variant).model

    assert isinstance(patcher, comfy.model_patcher.ModelPatcher)
    assert type(patcher.model) is model_class
    assert type(patcher.model.latent_format) is latent_format
    assert patcher.model.latent_format.latent_channels == channels
    sampling = patcher.get_model_object("model_sampling")
    assert isinstance(sampling, comfy.model_sampling.CONST)  # rectified flow: x_t = (1 - s) x + s e
    weights = build_tiny_flux_transformer(TinyFluxSpec(variant, seed=0)).state_dict()
    loaded = patcher.model.diffusion_model.state_dict()
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_flux1_dev_uses_flux_shift_sampling_and_guidance():
    dev, schnell = tiny("flux1-dev").model.model, tiny("flux1-schnell").model.model
    assert isinstance(dev.model_sampling, comfy.model_sampling.ModelSamplingFlux)
    assert dev.diffusion_model.params.guidance_embed and not schnell.diffusion_model.params.guidance_embed


@pytest.mark.parametrize("variant", VARIANTS)
def test_clip_gives_flux_conditioning(variant):
    has_pooled = EXPECTED[variant][4]
    clip = tiny(variant).clip
    assert isinstance(clip, comfy.sd.CLIP)

    def encode(text):
        return clip.encode_from_tokens_scheduled(clip.tokenize(text))[0]

    context, extra = encode("a photo of a red fox")
    width = tiny(variant).model.model.diffusion_model.params.context_in_dim  # klein: 3 Qwen3 hidden states
    assert width == (TINY_CONTEXT_DIM if variant != "flux2-klein" else 3 * TINY_QWEN3_HIDDEN)
    assert context.shape[0] == 1 and context.shape[2] == width and context.shape[1] >= 77
    if has_pooled:
        assert extra["pooled_output"].shape == (1, TINY_POOLED_DIM)
    else:
        assert extra.get("pooled_output") is None
    assert torch.isfinite(context).all() and context.std() > 0.1
    other, _ = encode("an oil painting of a blue boat")
    assert (context - other).abs().max() > 1e-3, "different prompts gave the same conditioning"


@pytest.mark.parametrize("variant", VARIANTS)
def test_vae_round_trip_shapes(variant):
    _, _, channels, ratio, _ = EXPECTED[variant]
    vae = tiny(variant).vae
    assert isinstance(vae, comfy.sd.VAE)
    image = torch.rand(1, 48, 64, 3)

    latent = vae.encode(image)
    assert latent.shape == (1, channels, 48 // ratio, 64 // ratio)
    decoded = vae.decode(latent)
    assert decoded.shape == (1, 48, 64, 3)
    assert 0.0 <= decoded.min() and decoded.max() <= 1.0 and decoded.std() > 0.01


def test_same_seed_same_models_other_seed_other_models():
    builders = (
        lambda seed: build_tiny_model_patcher(TinyFluxSpec("flux1-dev", seed=seed)).model.diffusion_model,
        lambda seed: build_tiny_clip("flux1-dev", seed=seed).cond_stage_model,
        lambda seed: build_tiny_vae("flux1-dev", seed=seed).first_stage_model,
    )
    for build in builders:
        sa, sb, sc = (build(seed).state_dict() for seed in (5, 5, 6))
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert all(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point() and sa[k].numel() > 1)


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev", klein_param()])
def test_models_sample_through_comfy_sampler(variant):
    """The three pieces fit together in ComfyUI's own sampling call (what KSampler runs)."""
    models = tiny(variant)
    _, _, channels, ratio, _ = EXPECTED[variant]
    cond = models.clip.encode_from_tokens_scheduled(models.clip.tokenize("a red fox"))
    latent = torch.zeros(1, channels, 48 // ratio, 64 // ratio)
    noise = comfy.sample.prepare_noise(latent, 0)
    out = comfy.sample.sample(models.model, noise, 2, 1.0, "euler", "simple", cond, [], latent, disable_pbar=True)
    assert out.shape == latent.shape and torch.isfinite(out).all()
    assert models.vae.decode(out).shape == (1, 48, 64, 3)


def test_node_is_registered_and_returns_model_clip_vae():
    import asyncio

    from flux_lora_lab import comfy_entrypoint
    from flux_lora_lab.nodes.dev_nodes import FluxLabTinyModels

    extension = asyncio.run(comfy_entrypoint())
    assert FluxLabTinyModels in asyncio.run(extension.get_node_list())
    schema = FluxLabTinyModels.GET_SCHEMA()
    assert (schema.node_id, schema.category) == ("FluxLabTinyModels", "FluxLoRALab/dev")
    model, clip, vae = FluxLabTinyModels.execute(variant="flux1-schnell", seed=0).result
    assert isinstance(model, comfy.model_patcher.ModelPatcher) and isinstance(clip, comfy.sd.CLIP) and isinstance(vae, comfy.sd.VAE)
    assert not model.model.diffusion_model.params.guidance_embed
