"""Why core/model/flux.py exists: ComfyUI's own Flux blocks cannot be trained through safely.

The blocks add residuals in place (`img += ...`). This test trains a LoRA the way ComfyUI's native
TrainLoraNode does (comfy.weight_adapter LoraDiff as a weight function on the Linear, the node's
own `patch` to checkpoint every top-level child) and compares LoRA gradients with the float64
reference:
- without checkpointing, backward raises ("modified by an inplace operation");
- with checkpointing and LoRA only inside the blocks, backward raises a CheckpointError;
- with checkpointing and LoRA also on img_in / txt_in (so block inputs require grad), backward
  succeeds and the gradients are silently wrong (measured 20 % to 60 % relative error here),
while our tree on the same model and LoRA values matches the reference to < 1e-6.
"""

import copy

import peft
import pytest
import torch

from tests.comfy_host import import_comfy

import_comfy()

import comfy.weight_adapter.lora  # noqa: E402
import comfy_extras.nodes_train as native_train  # noqa: E402
from torch.utils.checkpoint import CheckpointError  # noqa: E402

from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.host import training_mode  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs, reference_forward  # noqa: E402

BLOCK_TARGETS = ["double_blocks.0.img_attn.qkv", "double_blocks.1.txt_mlp.0", "single_blocks.0.linear1", "single_blocks.1.linear2"]
ALL_TARGETS = ["img_in", "txt_in"] + BLOCK_TARGETS


def lora_values(model, targets):
    g = torch.Generator().manual_seed(3)
    out = {}
    for name in targets:
        w = model.get_submodule(name).weight
        out[name] = (torch.randn(4, w.shape[1], generator=g).double() / w.shape[1] ** 0.5, torch.randn(w.shape[0], 4, generator=g).double() * 0.5)
    return out


def native_lora_grads(model, values, inputs, probe, checkpointing):
    """LoRA gradients as ComfyUI's TrainLoraNode computes them, on a throwaway copy of `model`."""
    model = copy.deepcopy(model)
    adapters = []
    for name, (a, b) in values.items():
        adapter = comfy.weight_adapter.lora.LoraDiff((b, a, 4.0, None, None, None)).double()
        model.get_submodule(name).weight_function = [adapter]  # per instance, as ModelPatcher does
        adapters.append(adapter)
    if checkpointing:
        for module in native_train.find_all_highest_child_module_with_forward(model):
            native_train.patch(module)
    latents, sigmas, context, pooled, guidance = inputs
    with training_mode():  # as the native node sets in_training where the host has it
        (model(latents, sigmas, context, y=pooled, guidance=guidance) * probe).sum().backward()
    return [t for ad in adapters for t in (ad.lora_down.weight.grad, ad.lora_up.weight.grad)]


def our_lora_grads(model, values, inputs, probe):
    """The same LoRA values through our checkpointed tree, attached with peft."""
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=True)
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=list(values))
    peft.inject_adapter_in_model(config, adapter.module)
    params = []
    for name, (a, b) in values.items():
        layer = adapter.module.get_submodule(name)
        params += [layer.lora_A["default"].weight, layer.lora_B["default"].weight]
        with torch.no_grad():
            params[-2].copy_(a), params[-1].copy_(b)
    (adapter.predict(*inputs) * probe).sum().backward()
    return [p.grad for p in params]


def reference_grads(model, values, inputs, probe):
    leaves = {name: (a.clone().requires_grad_(), b.clone().requires_grad_()) for name, (a, b) in values.items()}
    out = reference_forward(model, *inputs, lora={n: (a, b, 1.0) for n, (a, b) in leaves.items()})
    return torch.autograd.grad((out * probe).sum(), [t for pair in leaves.values() for t in pair])


def rel_err(got, expected):
    got, expected = torch.cat([g.flatten() for g in got]), torch.cat([e.flatten() for e in expected])
    return ((got - expected).norm() / expected.norm()).item()


@pytest.fixture(params=["flux1-dev", "flux2-dev"])
def setup(request):
    model = build_tiny_flux_transformer(TinyFluxSpec(request.param, dtype=torch.float64)).requires_grad_(False)
    inputs = make_inputs(model, dtype=torch.float64, height=8, width=8, tokens=5)
    probe = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7)).double()
    return model, inputs, probe


def test_native_autograd_fails_outright(setup):
    model, inputs, probe = setup
    with pytest.raises(RuntimeError, match="inplace operation"):
        native_lora_grads(model, lora_values(model, BLOCK_TARGETS), inputs, probe, checkpointing=False)


def test_native_checkpointing_fails_or_is_silently_wrong(setup):
    model, inputs, probe = setup
    with pytest.raises(CheckpointError):
        native_lora_grads(model, lora_values(model, BLOCK_TARGETS), inputs, probe, checkpointing=True)

    values = lora_values(model, ALL_TARGETS)
    expected = reference_grads(model, values, inputs, probe)
    native = rel_err(native_lora_grads(model, values, inputs, probe, checkpointing=True), expected)
    ours = rel_err(our_lora_grads(model, values, inputs, probe), expected)
    print(f"relative LoRA gradient error: ComfyUI blocks + checkpointing {native:.2e}, ours {ours:.2e}")
    assert native > 1e-2
    assert ours < 1e-6
