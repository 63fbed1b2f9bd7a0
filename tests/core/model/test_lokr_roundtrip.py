"""A saved LoKr file, applied by ComfyUI's own LoRA loading, reproduces the in-training model; its
gradients through the whole tiny Flux equal those of the independent float64 reference.

ComfyUI side: a real ModelPatcher with the file loaded through `comfy.sd.load_lora_for_models`, what
the stock LoraLoader node does. Zero unmatched keys, one patch per trained layer, relative error
< 1e-5 in fp32, for Flux.1 (kohya stems, explicit alpha) and Flux.2 (`diffusion_model.` stems, scale
folded), each LoKr structure (w2 a product, both products, full matrix, a fixed factor).
"""

import logging

import pytest
import torch

from tests.comfy_host import import_comfy, klein_param

import_comfy()

import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402

from flux_lora_lab.core.model import lora, lora_format  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer, build_tiny_model_patcher  # noqa: E402
from tests.core.model.flux_reference import make_inputs, reference_forward  # noqa: E402
from tests.comfy_lora import load_through_comfy, patched_forward  # noqa: E402


def _lokr(**kw):
    return LoraSettings(network="lokr", targets="all", train_modulation=True, **kw)


CASES = [
    ("flux1-dev", _lokr(rank=2, alpha=3.0)),
    ("flux1-dev", _lokr(rank=2, alpha=1.0, lokr_decompose_both=True)),
    ("flux1-schnell", _lokr(rank=4, alpha=2.0, lokr_full_matrix=True)),  # alpha has no effect: scale 1
    ("flux1-dev", LoraSettings(network="lokr", rank=2, alpha=5.0, lokr_factor=4, targets="context", train_modulation=True)),
    ("flux2-dev", _lokr(rank=2, alpha=3.0)),
    ("flux2-dev", _lokr(rank=2, alpha=4.0, lokr_decompose_both=True)),
    ("flux2-dev", _lokr(rank=4, alpha=8.0, lokr_full_matrix=True, lokr_factor=8)),
    klein_param(_lokr(rank=2, alpha=2.0, lokr_decompose_both=True)),
]


def _ids(case):
    variant, spec = getattr(case, "values", case)
    return f"{variant}-{spec.targets}-r{spec.rank}-f{spec.lokr_factor}-full{spec.lokr_full_matrix:d}-both{spec.lokr_decompose_both:d}"


def _inputs(adapter, seed=3):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, adapter.latent_channels, 8, 8, generator=g)
    context = torch.randn(2, 5, adapter.module.txt_in.in_features, generator=g)
    pooled = torch.randn(2, adapter.pooled_dim, generator=g) if adapter.pooled_dim else None
    guidance = torch.tensor([3.5, 3.5]) if adapter.uses_guidance else None
    return latents, torch.tensor([0.3, 0.8]), context, pooled, guidance


def _randomize(module, seed=7, std=0.3):
    """Non-zero factors everywhere (a fresh LoKr has w2 = 0, which would prove nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in lora.trainable_parameters(module):
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("variant,spec", CASES, ids=[_ids(c) for c in CASES])
def test_saved_lokr_loaded_by_comfyui_reproduces_training_outputs(tmp_path, caplog, variant, spec):
    adapter = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    names = lora.attach_lora(adapter.module, spec)
    _randomize(adapter.module)
    inputs = _inputs(adapter)
    with torch.no_grad():
        ours = adapter.predict(*inputs)
        with lora.lora_disabled(adapter.module):
            base = adapter.predict(*inputs)
    assert (ours - base).norm() / base.norm() > 0.05, "the LoKr must change the output for this test to mean anything"

    path = lora_format.save_lora(tmp_path / "lokr.safetensors", lora.lora_state_dict(adapter.module), adapter.family, step=4)
    lora_sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    assert all(".lokr_w" in k or k.endswith(".alpha") for k in lora_sd)
    assert any(k.endswith(".alpha") for k in lora_sd) == (adapter.family == "flux1")  # Flux.2 folds the scale

    patcher = build_tiny_model_patcher(TinyFluxSpec(variant))
    patched, unmatched = load_through_comfy(patcher, lora_sd, caplog)
    assert unmatched == []
    assert len(patched.patches) == len(names)
    assert {type(p[0][1]).__name__ for p in patched.patches.values()} == {"LoKrAdapter"}
    theirs = patched_forward(patched, *inputs)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []  # ComfyUI logs a LoKr that does not fit its weight instead of raising
    rel = ((theirs - ours).norm() / ours.norm()).item()
    assert rel < 1e-5, f"ComfyUI's LoKr output differs from training by {rel:.2e}"

    back = lora_format.load_lora(path, family=adapter.family)
    assert back.metadata["fluxlab.network"] == "lokr"
    for name, w in lora.lora_state_dict(adapter.module).items():
        torch.testing.assert_close(back.weights[name].delta(), w.delta(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant,checkpoint_every", [("flux1-dev", 0), ("flux1-dev", 1), ("flux2-dev", 1)])
def test_lokr_gradients_through_flux_match_the_float64_kron_reference(variant, checkpoint_every):
    """Every factor's gradient of sum(prediction * probe), against autograd through the independent
    reference forward with delta W = scale * kron(w1, w2) built explicitly from the same factors."""
    model = build_tiny_flux_transformer(TinyFluxSpec(variant, dtype=torch.float64))
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=checkpoint_every > 0, checkpoint_every=max(checkpoint_every, 1))
    spec = LoraSettings(network="lokr", rank=2, alpha=3.0, lokr_decompose_both=True, targets="all", train_modulation=True)
    lora.attach_lora(adapter.module, spec, dtype=torch.float64)
    _randomize(adapter.module, std=0.2)
    layers = lora.lora_state_dict(adapter.module)
    inputs = make_inputs(model, dtype=torch.float64, height=8, width=12)
    probe = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    (adapter.predict(*inputs) * probe).sum().backward()
    named = lora.trainable_parameters(adapter.module)
    ours = [p.grad for _, p in named]
    assert all(g is not None and g.abs().max() > 0 for g in ours)

    leaves = {name: {part: t.detach().clone().requires_grad_() for part, t in w.tensors().items()} for name, w in layers.items()}
    reference = {}
    for name, parts in leaves.items():
        w1 = parts["w1"] if "w1" in parts else parts["w1_a"] @ parts["w1_b"]
        w2 = parts["w2"] if "w2" in parts else parts["w2_a"] @ parts["w2_b"]
        delta = torch.kron(w1, w2) * layers[name].scale
        reference[name] = (torch.eye(delta.shape[1], dtype=torch.float64), delta, 1.0)  # W + 1 * delta @ I
    out = reference_forward(model, *inputs, lora=reference)
    flat = [t for parts in leaves.values() for t in parts.values()]
    expected = torch.autograd.grad((out * probe).sum(), flat)
    got = torch.cat([g.flatten() for g in ours])
    want = torch.cat([e.flatten() for e in expected])
    error = ((got - want).norm() / want.norm()).item()
    assert error < 1e-6, f"relative gradient error {error:.2e}"


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev"])
def test_a_saved_lokr_continues_training_with_its_delta_under_another_alpha(tmp_path, variant):
    """lora.init_lora from a LoKr file: the run's layers carry the file's delta exactly, also where the
    file folded its scale (Flux.2) and the run has another alpha; another structure is refused by name."""
    first = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(first.module, _lokr(rank=2, alpha=6.0))
    _randomize(first.module)
    path = lora_format.save_lora(tmp_path / "lokr.safetensors", lora.lora_state_dict(first.module), first.family)

    second = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(second.module, _lokr(rank=2, alpha=1.0))
    loaded = lora_format.load_lora(path, family=second.family, rank=2)
    assert sorted(lora.load_lora_state_dict(second.module, loaded.weights, source=str(path))) == sorted(loaded.weights)
    mine, theirs = lora.lora_state_dict(second.module), lora.lora_state_dict(first.module)
    for name in theirs:
        assert mine[name].alpha == 1.0
        torch.testing.assert_close(mine[name].delta(), theirs[name].delta(), rtol=1e-5, atol=1e-6)  # fp32 factors rescaled
    inputs = _inputs(first)
    with torch.no_grad():
        torch.testing.assert_close(second.predict(*inputs), first.predict(*inputs), rtol=1e-5, atol=1e-5)

    third = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(third.module, _lokr(rank=2, lokr_decompose_both=True))
    with pytest.raises(ValueError, match="lokr.safetensors: .* set lora.rank, lora.lokr_factor"):
        lora.load_lora_state_dict(third.module, loaded.weights, source=str(path))
