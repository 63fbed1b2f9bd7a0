"""LoKr layers: LyCORIS' split and structure rules, the forward equals base + scale * kron(w1, w2) x,
float64 finite-difference gradients, seeded init from the base model, disabling, state dicts, settings."""

import pytest
import torch
from torch import nn

from tests.comfy_host import import_comfy

import_comfy()

from comfy.weight_adapter.base import factorization as comfy_factorization  # noqa: E402

from flux_lora_lab.core.config import TrainConfig  # noqa: E402
from flux_lora_lab.core.model import lokr, lora  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.model.lora_random import init_lora, use_seeded_dropout  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.setting import ConfigError  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402

# (settings, parts of a 96 -> 192 linear: out 192 = 12 x 16, in 96 = 8 x 12 with factor -1)
STRUCTURES = [
    (dict(rank=2), ("w1", "w2_a", "w2_b")),
    (dict(rank=2, lokr_decompose_both=True), ("w1_a", "w1_b", "w2_a", "w2_b")),
    (dict(rank=2, lokr_full_matrix=True), ("w1", "w2")),
    (dict(rank=8), ("w1", "w2")),  # rank >= half of w2's larger side (16 / 2): full, as LyCORIS
    (dict(rank=2, lokr_factor=4), ("w1", "w2_a", "w2_b")),
]


def _layer(settings, dtype=torch.float64, seed=0):
    owner = nn.Sequential()
    owner.add_module("txt_in", nn.Linear(96, 192).to(dtype))
    spec = LoraSettings(network="lokr", targets="context", **settings)
    lora.attach_lora(owner, spec, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in lora.trainable_parameters(owner):
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.3)
    return owner, owner.txt_in


def test_factorization_is_lycoris_and_comfyuis():
    for dim in range(1, 1100):
        for factor in (-1, 1, 2, 3, 4, 8, 16, 64):
            assert lokr.factorization(dim, factor) == comfy_factorization(dim, factor), (dim, factor)
    assert lokr.factorization(3072) == (48, 64) and lokr.factorization(3072, 16) == (16, 192)


@pytest.mark.parametrize("settings,parts", STRUCTURES, ids=[str(s) for s, _ in STRUCTURES])
def test_structure_and_forward_equal_an_explicit_kron(settings, parts):
    owner, layer = _layer(settings)
    assert tuple(layer.parts()) == parts
    out_l, out_k = lokr.factorization(192, settings.get("lokr_factor", -1))
    in_m, in_n = lokr.factorization(96, settings.get("lokr_factor", -1))
    w = layer.weights()
    assert w.w1_matrix().shape == (out_l, in_m) and w.w2_matrix().shape == (out_k, in_n)
    both_full = "w1" in parts and "w2" in parts
    assert layer.scale == (1.0 if both_full else 2.0 / 2)  # alpha None = rank
    x = torch.randn(3, 5, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    delta = torch.kron(w.w1_matrix(), w.w2_matrix()) * w.scale
    torch.testing.assert_close(layer(x), layer.base_layer(x) + x @ delta.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lora.lora_state_dict(owner)["txt_in"].delta(), delta)


def test_alpha_scales_the_delta_only_when_a_part_is_a_product():
    _, decomposed = _layer(dict(rank=2, alpha=5.0))
    _, full = _layer(dict(rank=2, alpha=5.0, lokr_full_matrix=True))
    assert decomposed.scale == 2.5 and full.scale == 1.0  # ComfyUI's loader: alpha / rank, or 1 when all full


@pytest.mark.parametrize("settings,parts", STRUCTURES[:3], ids=[str(s) for s, _ in STRUCTURES[:3]])
def test_gradients_pass_float64_finite_differences(settings, parts):
    """torch's gradcheck: autograd through our reshaped two-matmul forward against central differences."""
    _, layer = _layer(settings)
    names = list(layer.parts())
    x = torch.randn(2, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)

    def forward(x, *factors):
        for name, value in zip(names, factors):
            layer._parameters[name] = value
        return layer(x)

    leaves = [p.detach().clone().requires_grad_() for p in layer.parts().values()]
    assert torch.autograd.gradcheck(forward, (x, *leaves), eps=1e-6, atol=1e-7)


def test_fresh_lokr_is_the_base_model_and_seeded_init_is_reproducible():
    def tree():
        owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
        return FluxTrainingAdapter.adopt(owner, checkpointing=False)

    spec = LoraSettings(network="lokr", rank=2, lokr_decompose_both=True, targets="all")
    a, b = tree(), tree()
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 16, 8, 8, generator=g), torch.tensor([0.5]), torch.randn(1, 4, 64, generator=g),
            torch.randn(1, 32, generator=g), torch.tensor([2.0]))
    with torch.no_grad():
        base = a.predict(*args)
        for adapter in (a, b):
            lora.attach_lora(adapter.module, spec)
            init_lora(adapter.module, spec, seed=11)
        assert torch.equal(a.predict(*args), base)
    pa, pb = lora.trainable_parameters(a.module), lora.trainable_parameters(b.module)
    assert [n for n, _ in pa] == [n for n, _ in pb] and all(torch.equal(x, y) for (_, x), (_, y) in zip(pa, pb))
    for name, p in pa:
        zero = name.endswith(("lokr_w2", "lokr_w2_b"))
        assert (p.abs().max() == 0) == zero, name
    trainable = {id(p) for p in a.module.parameters() if p.requires_grad}
    assert trainable == {id(p) for _, p in pa} and all(p.dtype == torch.float32 for _, p in pa)
    with pytest.raises(ValueError, match="already carries LoRA"):
        lora.attach_lora(a.module, spec)


def test_disable_gives_the_base_and_dropout_is_seeded_and_train_only():
    owner, layer = _layer(dict(rank=2, dropout=0.5))
    x = torch.randn(16, 96, dtype=torch.float64)
    with lora.lora_disabled(owner):
        torch.testing.assert_close(layer(x), layer.base_layer(x), rtol=0, atol=0)
    step = use_seeded_dropout(owner, 0.5)
    owner.train()
    step.value = 1
    first = layer(x)
    assert torch.equal(first, layer(x)) and not torch.equal(first, layer.eval()(x))
    step.value = 2
    assert not torch.equal(first, layer.train()(x))


def test_state_dict_round_trip_absorbs_a_different_alpha_and_names_a_structure_change():
    a_owner, _ = _layer(dict(rank=2, alpha=6.0))
    saved = {k: w.clone() for k, w in lora.lora_state_dict(a_owner).items()}
    b_owner, _ = _layer(dict(rank=2, alpha=1.0), seed=5)
    assert lora.load_lora_state_dict(b_owner, saved) == ["txt_in"]
    torch.testing.assert_close(lora.lora_state_dict(b_owner)["txt_in"].delta(), saved["txt_in"].delta())
    assert lora.lora_state_dict(b_owner)["txt_in"].alpha == 1.0

    c_owner, _ = _layer(dict(rank=2, lokr_full_matrix=True))
    with pytest.raises(ValueError, match="lokr_full_matrix"):
        lora.load_lora_state_dict(c_owner, saved, source="ckpt.safetensors")
    d_owner, _ = _layer(dict(rank=2))
    peft_owner = nn.Sequential()
    peft_owner.add_module("txt_in", nn.Linear(96, 192))
    lora.attach_lora(peft_owner, LoraSettings(targets="context", rank=2))
    with pytest.raises(ValueError, match="holds a LoRA .* set lora.network to lora"):
        lora.load_lora_state_dict(d_owner, lora.lora_state_dict(peft_owner), source="x.safetensors")
    with pytest.raises(ValueError, match="holds a LoKr .* set lora.network to lokr"):
        lora.load_lora_state_dict(peft_owner, saved, source="x.safetensors")


def test_settings_name_what_to_change():
    with pytest.raises(ConfigError, match="lora.lokr_factor"):
        LoraSettings(network="lokr", lokr_factor=0)
    with pytest.raises(ConfigError, match="lora.init.*LoKr"):
        LoraSettings(network="lokr", init="gaussian")
    with pytest.raises(ConfigError, match="lora.network"):
        LoraSettings(network="loha")
    with pytest.raises(ConfigError, match="run.lora_format.*LoKr"):
        TrainConfig.from_dict({"lora": {"network": "lokr"}, "run": {"lora_format": "diffusers"}})
    assert TrainConfig().lora.network == "lora"  # LoRA stays the default


def test_lokr_trains_on_a_quantized_base():
    """quanto's QLinear is an nn.Linear: LoKr wraps it as LoRA does, the factors get gradients, the
    quantized base none."""
    from flux_lora_lab.core.model import quant

    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=True)
    assert quant.quantize_base(adapter.module, "qint8") > 0
    spec = LoraSettings(network="lokr", rank=2, targets="attention")
    names = lora.attach_lora(adapter.module, spec)
    init_lora(adapter.module, spec, seed=1)
    for _, p in lora.trainable_parameters(adapter.module):
        p.requires_grad_(True)
    assert all(quant.is_quantized(adapter.module.get_submodule(n).base_layer) for n in names if "blocks" in n)
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 16, 8, 8, generator=g), torch.tensor([0.5]), torch.randn(1, 4, 64, generator=g),
            torch.randn(1, 32, generator=g), torch.tensor([2.0]))
    adapter.predict(*args).square().mean().backward()
    factors = {id(p) for _, p in lora.trainable_parameters(adapter.module)}
    with_grad = [p for p in adapter.module.parameters() if p.grad is not None]
    assert {id(p) for p in with_grad} == factors
    # At init only w2_b moves the output (w2_b = 0 zeroes the others' gradients, as LoRA's B does for A).
    assert all(p.grad.abs().max() > 0 for n, p in lora.trainable_parameters(adapter.module) if n.endswith("lokr_w2_b"))


@pytest.mark.parametrize("settings", [dict(network="lora", rank=4)] + [dict(network="lokr", **s) for s, _ in STRUCTURES],
                         ids=["lora"] + [str(s) for s, _ in STRUCTURES])
def test_the_memory_plans_parameter_count_is_what_attaching_trains(settings):
    """What TrainLoRA's memory check counts (nodes/_comfy/memory.py) equals the weights attach_lora makes."""
    adapter = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec("flux2-dev")), checkpointing=False)
    spec = LoraSettings(targets="all", train_modulation=True, **settings)
    names = lora.target_names(adapter.module, spec)
    planned = lora.parameter_count(adapter.module, names, spec)
    lora.attach_lora(adapter.module, spec)
    assert planned == sum(p.numel() for _, p in lora.trainable_parameters(adapter.module)) > 0


@pytest.mark.parametrize("settings", [dict(rank=2, lokr_factor=4), dict(rank=2, lokr_decompose_both=True), dict(rank=2, lokr_full_matrix=True)],
                         ids=["factor4", "both", "full"])
def test_the_backward_keeps_only_the_input_and_the_factors(settings):
    """Beyond what the base linear saves, a LoKr layer keeps its input and its factors, not the
    middle product w1 @ x (as many values per token as the layer's output)."""
    _, layer = _layer(settings)
    x = torch.randn(4, 96, dtype=torch.float64, requires_grad=True)

    def saved_bytes():
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(x)
        return total

    with_lokr = saved_bytes()
    with lokr.lokr_disabled(layer):
        base = saved_bytes()
    w = layer.weights()
    factors = w.w1_matrix().numel() + w.w2_matrix().numel() + sum(t.numel() for t in w.tensors().values())
    assert with_lokr - base <= (x.numel() + factors) * 8
