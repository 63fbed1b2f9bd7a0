"""A run holds its own references to the base tensors: ComfyUI patching the shared MODEL (it swaps a
module's weight Parameter for a patched one, made under inference mode, while it samples) never
reaches the run, and no weight is copied unless asked."""

import pytest
import torch

from tests.comfy_host import import_comfy, klein_param

import_comfy()

from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.model import lora  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.model.ownership import own_leaves  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs, reference_forward  # noqa: E402


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


def _store_blocks_in_fp8(owner, scaled: bool):
    """What `weight_dtype fp8_e4m3fn` (or a scaled-fp8 checkpoint) gives ComfyUI's block linears."""
    for block in (*owner.double_blocks, *owner.single_blocks):
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                weight = module.weight.detach()
                scale = weight.abs().max() / 448.0 if scaled else None
                stored = (weight / scale if scaled else weight).to(torch.float8_e4m3fn)
                module.weight = torch.nn.Parameter(stored, requires_grad=False)
                if scaled:
                    module.scale_weight = scale.reshape(1)


@pytest.mark.parametrize("scaled", [False, True], ids=["fp8", "scaled_fp8"])
def test_fp8_stored_weights_train_without_a_wider_copy_and_with_exact_gradients(scaled):
    """LoRA gradients on an fp8-stored MODEL equal the float64 reference over the dequantized weights
    (the function the stored model computes), and the run keeps the fp8 tensors themselves."""
    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev", seed=2)).requires_grad_(False)
    _store_blocks_in_fp8(owner, scaled)
    dequantized = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev", seed=2, dtype=torch.float64))
    with torch.no_grad():
        for (name, module), twin in zip(owner.named_modules(), dequantized.modules()):
            if isinstance(module, torch.nn.Linear):
                twin.weight.copy_(module.weight.double() * getattr(module, "scale_weight", torch.ones(1)).double())

    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=True)
    own_leaves(adapter.module, owner, torch.device("cpu"), copy=False)
    fp8 = [m.weight for m in adapter.module.double_blocks.modules() if isinstance(m, torch.nn.Linear)]
    assert fp8 and all(w.dtype == torch.float8_e4m3fn for w in fp8)
    owner_storage = {p.data_ptr() for p in owner.parameters()}
    assert all(w.data_ptr() in owner_storage for w in fp8), "the fp8 tensors are shared, not widened"

    lora.attach_lora(adapter.module, LoraSettings(rank=4, alpha=4.0, targets="all"))  # fp32 LoRA over the fp8 base
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, param in lora.trainable_parameters(adapter.module):
            param.copy_(0.2 * torch.randn(param.shape, generator=g))
    inputs = make_inputs(owner, dtype=torch.float32, height=8, width=8, tokens=5)
    probe = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7))
    (adapter.predict(*inputs) * probe).sum().backward()
    pairs = {n: (m.lora_A["default"].weight, m.lora_B["default"].weight)
             for n, m in adapter.module.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    ours = [t.grad for pair in pairs.values() for t in pair]
    leaves = {n: (a.detach().double().requires_grad_(), b.detach().double().requires_grad_()) for n, (a, b) in pairs.items()}
    out = reference_forward(dequantized, *inputs, lora={n: (a, b, 1.0) for n, (a, b) in leaves.items()})
    expected = torch.autograd.grad((out * probe.double()).sum(), [t for pair in leaves.values() for t in pair])
    got, want = torch.cat([g.double().flatten() for g in ours]), torch.cat([e.flatten() for e in expected])
    assert ((got - want).norm() / want.norm()).item() < 1e-4
