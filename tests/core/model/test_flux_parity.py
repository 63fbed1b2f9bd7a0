"""Our training forward computes exactly what ComfyUI's own Flux forward computes.

Parity is measured against `comfy.ldm.flux.model.Flux.forward` on tiny real-architecture models
(Flux.1 dev with guidance embedding, Flux.1 schnell without, Flux.2 dev), batch 2, non-square and
odd latent sizes (circular padding to the patch). Tolerance (issue 3): relative error < 1e-5, fp32.
"""

import pytest
import torch

from tests.comfy_host import import_comfy, klein_param

import_comfy()

from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs, reference_forward  # noqa: E402

VARIANTS = ["flux1-dev", "flux1-schnell", "flux2-dev", klein_param()]


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def comfy_forward(model, latents, sigmas, context, pooled, guidance):
    with torch.no_grad():
        return model(latents, sigmas, context, y=pooled, guidance=guidance)


@pytest.mark.parametrize("size", [(16, 24), (15, 9)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_comfy_fp32(variant, size):
    model = build_tiny_flux_transformer(TinyFluxSpec(variant, dtype=torch.float32))
    inputs = make_inputs(model, dtype=torch.float32, height=size[0], width=size[1])
    expected = comfy_forward(model, *inputs)
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=False)
    with torch.no_grad():
        got = adapter.predict(*inputs)
    assert got.shape == expected.shape == inputs[0].shape
    assert rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpointed_forward_is_the_same_function(variant):
    """With grad enabled the checkpointed path runs; it must not change the output."""
    model = build_tiny_flux_transformer(TinyFluxSpec(variant, dtype=torch.float32))
    inputs = make_inputs(model, dtype=torch.float32)
    expected = comfy_forward(model, *inputs)
    for every in (1, 2, 3):
        adapter = FluxTrainingAdapter.adopt(model, checkpointing=True, checkpoint_every=every)
        got = adapter.predict(*inputs)
        assert rel_err(got.detach(), expected) < 1e-5


def test_guidance_is_optional_like_comfy():
    """Flux.1 dev without a guidance value skips the guidance embedding, as ComfyUI does."""
    model = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    latents, sigmas, context, pooled, _ = make_inputs(model, dtype=torch.float32)
    expected = comfy_forward(model, latents, sigmas, context, pooled, None)
    with torch.no_grad():
        got = FluxTrainingAdapter.adopt(model, checkpointing=False).predict(latents, sigmas, context, pooled, None)
        with_scalar = FluxTrainingAdapter.adopt(model, checkpointing=False).predict(latents, sigmas, context, pooled, 3.5)
        expected_scalar = comfy_forward(model, latents, sigmas, context, pooled, torch.full((2,), 3.5))
    assert rel_err(got, expected) < 1e-5
    assert rel_err(with_scalar, expected_scalar) < 1e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_reference_is_faithful_to_comfy(variant):
    """The gradient yardstick (tests/core/model/flux_reference.py) computes ComfyUI's function too.

    Looser bound than our forward's: ComfyUI embeds timestep and guidance (x1000) in float32, so its
    fp32 output sits ~1e-5 away from an all-float64 computation (measured 1.3e-5 for flux1-dev).
    """
    model = build_tiny_flux_transformer(TinyFluxSpec(variant, dtype=torch.float32))
    inputs = make_inputs(model, dtype=torch.float32, height=15, width=9)
    expected = comfy_forward(model, *inputs)
    got = reference_forward(model, *inputs)
    assert rel_err(got, expected) < 1e-4
