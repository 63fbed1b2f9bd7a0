"""LoRA gradients through our forward equal those of an independent float64 reference.

peft LoRA (r=4, alpha=4, `init_lora_weights=False` so B != 0) is injected into our tree on every
Linear the forward touches (blocks, embedders, Flux.2's shared modulations, final layer); the scalar
loss sum(prediction * probe) is differentiated with respect to all LoRA parameters and compared with
autograd through tests/core/model/flux_reference.py (pure functional, out of place, LoRA merged into W).
Each layer runs the forward that `attach_lora` gives it (core/model/lora_fused.py), the one training runs.
Tolerances (issue 3): relative error < 1e-6 in float64 and < 1e-4 in fp32, with and without
checkpointing.
"""

import peft
import pytest
import torch
from torch import nn

from tests.comfy_host import import_comfy, klein_param

import_comfy()

from flux_lora_lab.core.model import lora_fused  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs, reference_forward  # noqa: E402

VARIANTS = ["flux1-dev", "flux1-schnell", "flux2-dev"]
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def every_linear(module: nn.Module) -> list:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def lora_setup(variant, dtype, checkpoint_every, targets=None):
    """Tiny model, our adapter with peft LoRA, seeded inputs and probe."""
    model = build_tiny_flux_transformer(TinyFluxSpec(variant, dtype=dtype))
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=checkpoint_every > 0, checkpoint_every=max(checkpoint_every, 1))
    targets = targets or every_linear(adapter.module)
    torch.manual_seed(0)  # peft draws A and B (init_lora_weights=False) from the global generator
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)
    peft.inject_adapter_in_model(config, adapter.module)
    for layer in lora_pairs_layers(adapter.module):
        lora_fused.install(layer, "default")
    inputs = make_inputs(model, dtype=dtype, height=8, width=12)
    probe = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7)).to(dtype)
    return model, adapter, targets, inputs, probe


def lora_pairs_layers(module: nn.Module) -> list:
    return [m for m in module.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]


def lora_pairs(module: nn.Module) -> dict:
    """{target name: (lora_A weight, lora_B weight)} as peft created them in our tree."""
    return {
        name: (m.lora_A["default"].weight, m.lora_B["default"].weight)
        for name, m in module.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    }


def reference_grads(model, pairs, inputs, probe):
    """Gradients with respect to every A and B, in float64, through the independent reference."""
    leaves = {name: (a.detach().double().requires_grad_(), b.detach().double().requires_grad_()) for name, (a, b) in pairs.items()}
    lora = {name: (a, b, 1.0) for name, (a, b) in leaves.items()}  # scale = alpha / r = 1
    out = reference_forward(model, *inputs, lora=lora)
    flat = [t for pair in leaves.values() for t in pair]
    return torch.autograd.grad((out * probe.double()).sum(), flat)


def rel_err(got, expected):
    got = torch.cat([g.double().flatten() for g in got])
    expected = torch.cat([e.flatten() for e in expected])
    return ((got - expected).norm() / expected.norm()).item()


# (variant, dtype, checkpoint_every): every family with and without checkpointing in float64, with
# checkpointing in fp32 (plain fp32 gives the same numbers), and two checkpoint intervals.
CASES = [(v, torch.float64, c) for v in VARIANTS for c in (0, 1)] + [(v, torch.float32, 1) for v in VARIANTS]
CASES += [klein_param(torch.float64, 1), klein_param(torch.float32, 1)]
CASES += [("flux2-dev", torch.float64, 2), ("flux1-schnell", torch.float32, 0), ("flux1-dev", torch.float32, 3)]


@pytest.mark.parametrize("variant,dtype,checkpoint_every", CASES)
def test_lora_gradients_match_float64_reference(variant, dtype, checkpoint_every):
    model, adapter, targets, inputs, probe = lora_setup(variant, dtype, checkpoint_every)
    pairs = lora_pairs(adapter.module)
    assert sorted(pairs) == sorted(targets)
    assert all(a.dtype == dtype and b.dtype == dtype for a, b in pairs.values())

    (adapter.predict(*inputs) * probe).sum().backward()
    ours = [t.grad for pair in pairs.values() for t in pair]
    assert all(g is not None and g.abs().max() > 0 for g in ours)

    expected = reference_grads(model, pairs, inputs, probe)
    error = rel_err(ours, expected)
    print(f"{variant} {dtype} checkpoint_every={checkpoint_every}: relative gradient error {error:.2e}")
    assert error < TOLERANCE[dtype]


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev"])
def test_only_lora_parameters_receive_gradients(variant):
    """The adopted base stays frozen: a training step touches LoRA weights only."""
    model, adapter, _, inputs, probe = lora_setup(variant, torch.float32, 1, targets=adapter_targets(variant))
    (adapter.predict(*inputs) * probe).sum().backward()
    for name, param in adapter.module.named_parameters():
        assert (param.grad is not None) == ("lora_" in name), name
    assert all(p.grad is None for p in model.parameters())


def adapter_targets(variant):
    model = build_tiny_flux_transformer(TinyFluxSpec(variant))
    return FluxTrainingAdapter.adopt(model, checkpointing=False).module.block_linear_names()


def saved_activation_bytes(adapter, inputs):
    """Bytes autograd keeps from the forward outside checkpointed blocks (what checkpointing saves)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        adapter.predict(*inputs)
    return total


def test_checkpointing_really_drops_block_activations():
    """Checkpointing is not a no-op: fewer checkpointed blocks keep more activations alive."""
    saved = {}
    for every in (0, 1, 2, 4):
        _, adapter, _, inputs, _ = lora_setup("flux1-dev", torch.float32, every, targets=adapter_targets("flux1-dev"))
        saved[every] = saved_activation_bytes(adapter, inputs)
    print(f"saved activation bytes by checkpoint_every: {saved}")
    assert saved[1] < saved[2] < saved[4] < saved[0]
    assert saved[1] < 0.2 * saved[0]
