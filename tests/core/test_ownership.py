"""A run holds its own references to the base tensors: ComfyUI patching the shared MODEL (it swaps a
module's weight Parameter for a patched one, made under inference mode, while it samples) never
reaches the run, and no weight is copied unless asked."""

import pytest
import torch

from tests.comfy_host import import_comfy, klein_param

import_comfy()

from flux_lora_lab.core.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.ownership import own_leaves  # noqa: E402
from flux_lora_lab.nodes.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.flux_reference import make_inputs  # noqa: E402


def patch_like_comfy(owner):
    """What ModelPatcher.patch_weight_to_device does for a LoRA: a new Parameter per weight, built
    under inference mode, set on the module (the original is kept aside and put back later)."""
    with torch.inference_mode():
        for module in owner.modules():
            if isinstance(getattr(module, "weight", None), torch.nn.Parameter):
                module.weight = torch.nn.Parameter(module.weight + 0.5, requires_grad=False)


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev", klein_param()])
def test_own_leaves_share_the_tensors_and_ignore_comfys_patching(variant):
    owner = build_tiny_flux_transformer(TinyFluxSpec(variant, seed=2)).requires_grad_(False)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=True)
    inputs = make_inputs(owner, dtype=torch.float32, height=8, width=8, tokens=5)
    with torch.no_grad():
        before = adapter.predict(*inputs)
    replaced = own_leaves(adapter.module, owner, torch.device("cpu"), copy=False)

    assert replaced > 0
    assert not {id(m) for m in adapter.module.modules()} & {id(m) for m in owner.modules()}
    owner_storage = {p.data_ptr() for p in owner.parameters()}
    assert {p.data_ptr() for p in adapter.module.parameters()} <= owner_storage, "no copy of the weights"
    assert not any(p.requires_grad for p in adapter.module.parameters())

    patch_like_comfy(owner)
    latents = inputs[0].clone().requires_grad_(True)
    out = adapter.predict(latents, *inputs[1:])
    assert torch.equal(out.detach(), before), "ComfyUI's patching reached the run"
    out.square().mean().backward()  # no "Inference tensors cannot be saved for backward"
    assert latents.grad is not None and torch.isfinite(latents.grad).all()


def test_copies_are_independent_tensors():
    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev", seed=2))
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=False)
    own_leaves(adapter.module, owner, torch.device("cpu"), copy=True)
    owner_storage = {p.data_ptr() for p in owner.parameters()}
    assert not any(p.data_ptr() in owner_storage for p in adapter.module.parameters())
