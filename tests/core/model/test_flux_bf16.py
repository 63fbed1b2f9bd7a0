"""The bf16 path stays in bf16 without losing accuracy against ComfyUI's own bf16 forward.

bf16 training runs our forward under `torch.autocast` on a bf16-stored base (what Flux checkpoints
are) with fp32 LoRA weights. Two round trips through fp32 were removed for speed (docs/benchmarks.md):
RoPE rotating in float32, and peft casting every LoRA input to the fp32 LoRA dtype. These tests
bound what that may cost: the forward's error against the float64 reference
(tests/core/model/flux_reference.py) is within 10 % of the error of ComfyUI's own bf16 forward on the
same weights (measured: 0.0074 vs 0.0072 for flux1-dev, the same as before the change), and the LoRA
gradients are as close to float64 as those of the fp32-casting path.
"""

import peft
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.comfy_host import import_comfy

import_comfy()

from flux_lora_lab.core.model import lora  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs, reference_forward  # noqa: E402
from tests.core.model.test_flux_gradients import every_linear, lora_pairs, reference_grads  # noqa: E402
from tests.core.model.test_flux_gradients import rel_err as grad_err  # noqa: E402

VARIANTS = ["flux1-dev", "flux1-schnell", "flux2-dev"]


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def bf16_model(variant):
    return build_tiny_flux_transformer(TinyFluxSpec(variant, dtype=torch.bfloat16))


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_forward_is_as_accurate_as_comfys(variant):
    model = bf16_model(variant)
    inputs = make_inputs(model, dtype=torch.float32)
    exact = reference_forward(model, *inputs)
    as_bf16 = [None if t is None else t.bfloat16() for t in inputs]
    with torch.no_grad():
        comfy = model(as_bf16[0], as_bf16[1], as_bf16[2], y=as_bf16[3], guidance=as_bf16[4])
        with torch.autocast("cpu", torch.bfloat16):
            ours = FluxTrainingAdapter.adopt(model, checkpointing=False).predict(*inputs)
    assert ours.dtype == torch.bfloat16
    comfy_error, our_error = rel_err(comfy, exact), rel_err(ours, exact)
    print(f"{variant}: bf16 forward error vs float64, ComfyUI {comfy_error:.2e}, ours {our_error:.2e}")
    assert our_error < 1.1 * comfy_error


def bf16_lora_grads(variant, under_autocast: bool, checkpoint_every: int):
    """LoRA gradients of sum(prediction * probe) through our bf16 forward, and the float64 ones."""
    model = bf16_model(variant)
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=checkpoint_every > 0, checkpoint_every=max(checkpoint_every, 1))
    torch.manual_seed(0)
    peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=4, target_modules=every_linear(adapter.module),
                                                 init_lora_weights=False), adapter.module)
    for layer in lora.lora_layers(adapter.module).values():  # fp32 LoRA over the bf16 base, as attach_lora
        layer.lora_A["default"].float()
        layer.lora_B["default"].float()
        layer.cast_input_dtype_enabled = not under_autocast
    inputs = make_inputs(model, dtype=torch.float32, height=8, width=12)
    probe = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(7))
    with torch.autocast("cpu", torch.bfloat16):
        out = adapter.predict(*inputs)
    (out.float() * probe).sum().backward()
    pairs = lora_pairs(adapter.module)
    ours = [t.grad for pair in pairs.values() for t in pair]
    assert all(g is not None and g.dtype == torch.float32 for g in ours)
    return ours, reference_grads(model, pairs, inputs, probe)


@pytest.mark.parametrize("variant,checkpoint_every", [("flux1-dev", 1), ("flux2-dev", 0)])
def test_bf16_lora_gradients_without_the_input_cast_are_as_accurate(variant, checkpoint_every):
    """peft's fp32 input cast (what `attach_lora(under_autocast=True)` turns off) bought no accuracy:
    autocast ran the LoRA matmuls in bf16 either way."""
    errors = {}
    for under_autocast in (False, True):
        ours, expected = bf16_lora_grads(variant, under_autocast, checkpoint_every)
        errors[under_autocast] = grad_err(ours, expected)
    print(f"{variant}: bf16 LoRA gradient error vs float64, peft casting {errors[False]:.2e}, not casting {errors[True]:.2e}")
    assert errors[True] < 0.05
    assert errors[True] < 1.1 * errors[False]


def test_attach_lora_under_autocast_turns_off_peft_input_casts():
    model = bf16_model("flux1-schnell")
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=False)
    from flux_lora_lab.core.lora_settings import LoraSettings

    lora.attach_lora(adapter.module, LoraSettings(rank=2, targets="all"), under_autocast=True)
    layers = lora.lora_layers(adapter.module).values()
    assert layers and not any(layer.cast_input_dtype_enabled for layer in layers)
    assert all(layer.lora_A["default"].weight.dtype == torch.float32 for layer in layers)


class _Fp32Copies(TorchDispatchMode):
    """Records the shape of every bf16 -> fp32 copy made while active."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and args[0].dtype == torch.bfloat16 and out.dtype == torch.float32:
            self.shapes.append(tuple(out.shape))
        return out


def test_the_bf16_forward_copies_no_activation_to_fp32():
    """Under autocast on a bf16 base the only fp32 copies left are torch's own inside the QK RMSNorm
    (it normalises in fp32): one per query and key per stream, (B, heads, L, head dim). Rotating in
    fp32 (RoPE) or peft's fp32 input cast would add copies of queries, keys and (B, L, features) inputs."""
    model = bf16_model("flux1-dev")
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=False)
    from flux_lora_lab.core.lora_settings import LoraSettings

    lora.attach_lora(adapter.module, LoraSettings(rank=4, targets="all"), under_autocast=True)
    inputs = make_inputs(model, dtype=torch.float32)
    with _Fp32Copies() as copies, torch.autocast("cpu", torch.bfloat16):
        adapter.predict(*inputs)
    heads = model.params.num_heads
    assert all(len(shape) == 4 and shape[1] == heads for shape in copies.shapes), copies.shapes
    assert len(copies.shapes) == 4 * len(model.double_blocks) + 2 * len(model.single_blocks)
