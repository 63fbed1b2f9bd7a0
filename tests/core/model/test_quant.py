"""Quantized bases: close to the float base, the owner untouched, LoRA exact on top, no merging.

Measured on the tiny Flux.1 (hidden 64, 2+2 blocks, fp32, CPU), relative error of the whole
transformer output against the float base: qint8 0.0076, qfloat8 0.031, qint4 0.114 (per-layer
weight error: qint8 ~0.4 %, qint4 ~6.5 %). The bounds below leave about 2x headroom.
"""

import pytest
import torch
from torch import nn

from tests.comfy_host import import_comfy

import_comfy()

from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.model import lora, quant  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402

BOUNDS = {"qint8": 0.02, "qfloat8": 0.06, "qint4": 0.2}


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 16, 8, 8, generator=g), torch.tensor([0.3, 0.7]), torch.randn(2, 5, 64, generator=g),
            torch.randn(2, 32, generator=g), torch.tensor([3.5, 3.5]))


def _owner_snapshot(owner):
    return {name: (m, type(m), m.weight.detach().clone()) for name, m in owner.named_modules() if isinstance(m, nn.Linear)}


def _assert_owner_untouched(owner, snapshot):
    now = {name: m for name, m in owner.named_modules() if isinstance(m, nn.Linear)}
    assert set(now) == set(snapshot)
    for name, (module, cls, weight) in snapshot.items():
        assert now[name] is module and type(module) is cls, f"owner's {name} was replaced"
        assert type(module.weight) is nn.Parameter and torch.equal(module.weight, weight), f"owner's {name} weight changed"


@pytest.mark.parametrize("mode", ["qint8", "qfloat8", "qint4"])
def test_quantized_base_is_close_and_the_owner_is_untouched(mode):
    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    snapshot = _owner_snapshot(owner)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=False)
    args = _inputs()
    with torch.no_grad():
        reference = adapter.predict(*args)
        count = quant.quantize_base(adapter.module, mode)
        out = adapter.predict(*args)
    block_linears = [n for n, m in adapter.module.named_modules() if n.startswith(("double_blocks.", "single_blocks.")) and isinstance(m, nn.Linear)]
    assert count == len(block_linears) == 2 * 10 + 2 * 3
    assert all(quant.is_quantized(adapter.module.get_submodule(n)) for n in block_linears)
    assert not quant.is_quantized(adapter.module.txt_in) and not quant.is_quantized(adapter.module.final_layer.linear)
    rel = ((out - reference).norm() / reference.norm()).item()
    assert 0 < rel < BOUNDS[mode], f"{mode}: relative error {rel:.4f}"
    _assert_owner_untouched(owner, snapshot)
    with torch.no_grad():  # and the owner still computes the float function
        torch.testing.assert_close(owner(args[0], args[1], args[2], y=args[3], guidance=args[4]), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["qint8", "qint4"])
def test_lora_on_a_quantized_base_adds_the_exact_delta_and_trains(mode):
    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    snapshot = _owner_snapshot(owner)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=True)
    quant.quantize_base(adapter.module, mode)
    lora.attach_lora(adapter.module, LoraSettings(targets="all", rank=4, alpha=2.0))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in lora.trainable_parameters(adapter.module):
            p.normal_(0, 0.2, generator=g)

    layer = lora.lora_layers(adapter.module)["single_blocks.1.linear1"]
    assert quant.is_quantized(layer.base_layer)
    x = torch.randn(3, 64, generator=g)
    with torch.no_grad():
        expected = layer.base_layer(x) + x @ lora.lora_state_dict(adapter.module)["single_blocks.1.linear1"].delta().float().T
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)

    args = _inputs()
    adapter.predict(*args).square().mean().backward()
    grads = [p.grad for _, p in lora.trainable_parameters(adapter.module)]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert all(not p.requires_grad for n, p in adapter.module.named_parameters() if "lora_" not in n)

    with pytest.raises(RuntimeError, match="quanto"):
        layer.merge()
    _assert_owner_untouched(owner, snapshot)


def test_quantize_rejects_lora_first_and_unknown_modes():
    adapter = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec("flux2-dev")), checkpointing=False)
    with pytest.raises(ValueError, match="'int3' is not supported; choose one of"):
        quant.quantize_base(adapter.module, "int3")
    assert quant.quantize_base(adapter.module, "none") == 0
    assert not any(quant.is_quantized(m) for m in adapter.module.modules())
    lora.attach_lora(adapter.module, LoraSettings())
    with pytest.raises(ValueError, match="before attaching LoRA"):
        quant.quantize_base(adapter.module, "qint8")
    with pytest.raises(ValueError, match="no linear layers"):
        quant.quantize_base(nn.Sequential(nn.Linear(2, 2)), "qint8")


def test_fp8_stored_weights_with_a_scale_are_quantized_from_their_true_values():
    """ComfyUI's scaled-fp8 checkpoints compute with weight * scale_weight; quantize that, in bf16."""
    tree = nn.Module()
    tree.single_blocks = nn.ModuleList([nn.Sequential(nn.Linear(64, 96))])
    linear = tree.single_blocks[0][0]
    true_weight = linear.weight.detach().clone()
    linear.weight = nn.Parameter((true_weight / 0.01).to(torch.float8_e4m3fn), requires_grad=False)
    linear.scale_weight = nn.Parameter(torch.tensor(0.01), requires_grad=False)
    assert quant.quantize_base(tree, "qint8") == 1
    quantized = tree.single_blocks[0][0]
    assert quant.is_quantized(quantized) and quantized.weight.dtype == torch.bfloat16
    rel = ((quantized.weight.dequantize().float() - true_weight).norm() / true_weight.norm()).item()
    assert rel < 0.05, f"fp8 + int8 round trip error {rel:.4f}"


@pytest.mark.parametrize("mode", ["qint8", "qfloat8", "qint4"])
def test_bf16_layers_of_real_width_use_quanto_kernels_and_pass_gradients(mode):
    """Real Flux is bf16 and >= 3072 wide: qint4 then takes quanto's grouped (128) TinyGemm path,
    which the 64-wide tiny model never reaches. LoRA and input gradients must flow through it."""
    torch.manual_seed(0)
    tree = nn.Module()
    tree.single_blocks = nn.ModuleList([nn.Module()])
    tree.single_blocks[0].linear1 = nn.Linear(256, 384).to(torch.bfloat16)
    float_layer = tree.single_blocks[0].linear1
    quant.quantize_base(tree, mode)
    lora.attach_lora(tree, LoraSettings(rank=4, targets="attention"))
    layer = tree.single_blocks[0].linear1
    if mode == "qint4":
        assert type(layer.base_layer.weight).__name__ == "TinyGemmWeightQBitsTensor"
    x = torch.randn(3, 256, dtype=torch.bfloat16, requires_grad=True)
    with torch.no_grad():
        rel = ((layer.base_layer(x) - float_layer(x)).float().norm() / float_layer(x).float().norm()).item()
    assert rel < BOUNDS[mode] / 2, f"{mode}: layer error {rel:.4f}"
    layer(x).float().square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    down, up = (p for _, p in lora.trainable_parameters(tree))
    assert up.grad.abs().sum() > 0 and torch.equal(down.grad, torch.zeros_like(down))  # fresh LoRA: up = 0 stops down's grad


@pytest.mark.parametrize("mode", ["qint8", "qfloat8", "qint4"])
def test_quantized_layer_is_exactly_a_linear_over_its_dequantized_weight(mode):
    """Forward and input gradient of a frozen QLinear equal x @ deq(W).T + b in fp32 (to float
    rounding): LoRA gradients through a quantized base are the true gradients of the quantized model."""
    torch.manual_seed(1)
    tree = nn.Module()
    tree.double_blocks = nn.ModuleList([nn.Module()])
    tree.double_blocks[0].lin = nn.Linear(320, 64)
    quant.quantize_base(tree, mode)
    layer = tree.double_blocks[0].lin
    weight = layer.weight.dequantize().float()
    x = torch.randn(5, 320, requires_grad=True)
    y = layer(x)
    grad_y = torch.randn_like(y)
    y.backward(grad_y)
    torch.testing.assert_close(y, x @ weight.T + layer.bias, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad, grad_y @ weight, rtol=1e-6, atol=1e-6)
