"""A saved LoRA file, applied by ComfyUI's own loader, reproduces the in-training model's outputs.

The in-training side is our training tree (core/flux.TrainFlux over a tiny ComfyUI Flux) with peft
LoRA layers; the ComfyUI side is a real ModelPatcher with the file loaded through
`comfy.sd.load_lora_for_models`, exactly what the stock LoraLoader node does. Zero unmatched keys,
relative error < 1e-5 in fp32, for Flux.1 (kohya and diffusers layouts) and Flux.2, alpha = rank and alpha != rank.
"""


import pytest
import torch

from tests.comfy_host import import_comfy, klein_param

import_comfy()

import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402

from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.model import lora, lora_format  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer, build_tiny_model_patcher  # noqa: E402
from tests.comfy_lora import load_through_comfy, patched_forward  # noqa: E402

CASES = [  # variant, spec, layout: every key shape the presets produce appears in some case
    ("flux1-dev", LoraSettings(rank=4, alpha=4.0, targets="all", train_modulation=True), "kohya"),
    ("flux1-dev", LoraSettings(rank=4, alpha=1.5, targets="context", train_modulation=True), "kohya"),
    ("flux1-schnell", LoraSettings(rank=3, alpha=12.0, targets="attention", blocks="double:1,single:0-1"), "kohya"),
    ("flux1-dev", LoraSettings(rank=4, alpha=3.0, targets="all", train_modulation=True), "diffusers"),
    ("flux1-dev", LoraSettings(rank=4, alpha=1.5, targets="context", train_modulation=True), "diffusers"),
    ("flux2-dev", LoraSettings(rank=4, alpha=4.0, targets="all", train_modulation=True), "kohya"),
    ("flux2-dev", LoraSettings(rank=2, alpha=7.0, targets="context"), "kohya"),
    klein_param(LoraSettings(rank=4, alpha=4.0, targets="all", train_modulation=True), "kohya"),
]


def _inputs(adapter, seed=3):
    g = torch.Generator().manual_seed(seed)
    c = adapter.latent_channels
    latents = torch.randn(2, c, 8, 8, generator=g)
    context = torch.randn(2, 5, adapter.module.txt_in.in_features, generator=g)
    pooled = torch.randn(2, adapter.pooled_dim, generator=g) if adapter.pooled_dim else None
    sigmas = torch.tensor([0.3, 0.8])
    guidance = torch.tensor([3.5, 3.5]) if adapter.uses_guidance else None
    return latents, sigmas, context, pooled, guidance


def _randomize_lora(module, seed=7):
    """Non-zero LoRA weights (a fresh LoRA has up = 0, which would prove nothing)."""
    g = torch.Generator().manual_seed(seed)
    weights = {
        name: lora.LoraWeights(down=0.3 * torch.randn(w.down.shape, generator=g), up=0.3 * torch.randn(w.up.shape, generator=g), alpha=w.alpha)
        for name, w in lora.lora_state_dict(module).items()
    }
    lora.load_lora_state_dict(module, weights)


@pytest.mark.parametrize("variant,spec,layout", CASES, ids=[f"{v}-{s.targets}-r{s.rank}-a{s.alpha:g}-{l}" for v, s, l in (getattr(c, "values", c) for c in CASES)])
def test_saved_lora_loaded_by_comfyui_reproduces_training_outputs(tmp_path, caplog, variant, spec, layout):
    adapter = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    names = lora.attach_lora(adapter.module, spec)
    _randomize_lora(adapter.module)
    latents, sigmas, context, pooled, guidance = _inputs(adapter)
    with torch.no_grad():
        ours = adapter.predict(latents, sigmas, context, pooled, guidance)
        with lora.lora_disabled(adapter.module):
            base = adapter.predict(latents, sigmas, context, pooled, guidance)
    assert (ours - base).norm() / base.norm() > 0.05, "the LoRA must change the output for this test to mean anything"

    path = lora_format.save_lora(tmp_path / "lora.safetensors", lora.lora_state_dict(adapter.module), adapter.family, step=10, layout=layout)

    patcher = build_tiny_model_patcher(TinyFluxSpec(variant))
    lora_sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    patched, unmatched = load_through_comfy(patcher, lora_sd, caplog)
    assert unmatched == []
    assert len(patched.patches) == len(names)  # split diffusers parts patch slices of the same fused weight
    theirs = patched_forward(patched, latents, sigmas, context, pooled, guidance)
    rel = ((theirs - ours).norm() / ours.norm()).item()
    assert rel < 1e-5, f"ComfyUI's LoRA output differs from training by {rel:.2e}"


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev", klein_param()])
def test_saved_lora_loads_back_bit_exactly_for_resume(tmp_path, variant):
    spec = LoraSettings(rank=4, alpha=2.0, targets="all", train_modulation=True)
    first = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(first.module, spec)
    _randomize_lora(first.module)
    path = lora_format.save_lora(tmp_path / "ckpt.safetensors", lora.lora_state_dict(first.module), first.family, step=3)

    second = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(second.module, spec)
    loaded = lora_format.load_lora(path, family=second.family, rank=spec.rank)
    lora.load_lora_state_dict(second.module, loaded.weights, source=str(path))
    for (name, a), (_, b) in zip(lora.trainable_parameters(first.module), lora.trainable_parameters(second.module)):
        assert torch.equal(a, b), name
    inputs = _inputs(first)
    with torch.no_grad():
        assert torch.equal(first.predict(*inputs), second.predict(*inputs))
