"""LoRA attachment: presets, block selection, scale, disabling, state dicts, and the merge guard."""

import pytest
import torch
from torch import nn

from tests.comfy_host import import_comfy

import_comfy()

from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.model import lora  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402


def _tree(variant="flux1-dev"):
    owner = build_tiny_flux_transformer(TinyFluxSpec(variant))
    return owner, FluxTrainingAdapter.adopt(owner, checkpointing=False)


def _suffixes(names):
    return sorted({n.split(".", 2)[2] if n.startswith(("double_blocks", "single_blocks")) else n for n in names})



def _delta(module, name: str) -> torch.Tensor:
    return lora.lora_state_dict(module)[name].delta().float()

def test_presets_select_the_documented_linears():
    _, adapter = _tree("flux1-dev")
    m = adapter.module
    names = lambda **kw: lora.target_names(m, LoraSettings(**kw))  # noqa: E731
    attn = ["img_attn.proj", "img_attn.qkv", "linear1", "linear2", "txt_attn.proj", "txt_attn.qkv"]
    mlp = ["img_mlp.0", "img_mlp.2", "txt_mlp.0", "txt_mlp.2"]
    assert _suffixes(names(targets="attention")) == attn
    assert len(names(targets="attention")) == 2 * 4 + 2 * 2
    assert _suffixes(names(targets="all")) == sorted(attn + mlp)
    assert not any(n.startswith("single") for n in names(targets="mmdit"))
    assert _suffixes(names(targets="mmdit")) == sorted(["img_attn.proj", "img_attn.qkv", "txt_attn.proj", "txt_attn.qkv"] + mlp)
    assert _suffixes(names(targets="context")) == ["txt_attn.proj", "txt_attn.qkv", "txt_in", "txt_mlp.0", "txt_mlp.2"]
    # Modulations only on request, and only for the streams the preset touches.
    assert _suffixes(set(names(targets="all", train_modulation=True)) - set(names(targets="all"))) == ["img_mod.lin", "modulation.lin", "txt_mod.lin"]
    assert _suffixes(set(names(targets="context", train_modulation=True)) - set(names(targets="context"))) == ["txt_mod.lin"]


def test_flux2_shared_modulations_follow_train_modulation():
    _, adapter = _tree("flux2-dev")
    extra = set(lora.target_names(adapter.module, LoraSettings(targets="mmdit", train_modulation=True)))
    extra -= set(lora.target_names(adapter.module, LoraSettings(targets="mmdit")))
    assert sorted(extra) == ["double_stream_modulation_img.lin", "double_stream_modulation_txt.lin"]


def test_comfy_tree_and_training_tree_give_the_same_targets():
    owner, adapter = _tree("flux2-dev")
    spec = LoraSettings(targets="all", train_modulation=True)
    assert lora.target_names(owner, spec) == lora.target_names(adapter.module, spec)


def test_block_selection_include_and_exclude():
    _, adapter = _tree()
    spec = LoraSettings(targets="attention", blocks="double:1,single:0-1", exclude_blocks="single:1")
    names = lora.target_names(adapter.module, spec)
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in names} == {"double_blocks.1", "single_blocks.0"}
    assert lora.parse_blocks("double:0,2,5-7, single:20-22") == {"double": frozenset({0, 2, 5, 6, 7}), "single": frozenset({20, 21, 22})}
    assert lora.parse_blocks({"double": [0, 1], "single": "3-4"}) == {"double": frozenset({0, 1}), "single": frozenset({3, 4})}


@pytest.mark.parametrize(
    "text,fragment",
    [("triple:0", "'triple'"), ("0-3", "'0-3'"), ("double:x", "'double:x'"), ("double:5-2", "'double:5-2'"), ("double:1,", "''")],
)
def test_bad_block_tokens_are_named(text, fragment):
    with pytest.raises(ValueError, match="blocks") as err:
        LoraSettings(blocks=text)
    assert fragment in str(err.value)


def test_out_of_range_block_names_the_model_depth():
    _, adapter = _tree()
    with pytest.raises(ValueError, match=r"single block 7 does not exist; this model has 2 single blocks \(0-1\)"):
        lora.target_names(adapter.module, LoraSettings(blocks="single:7"))


@pytest.mark.parametrize("kw", [dict(rank=0), dict(alpha=0), dict(dropout=1.0), dict(init="pissa"), dict(targets="qkv")])
def test_spec_validation(kw):
    with pytest.raises(ValueError):
        LoraSettings(**kw)


def test_attach_injects_in_place_and_leaves_the_owner_alone():
    owner, adapter = _tree()
    owner_linears = {name: type(m) for name, m in owner.named_modules() if isinstance(m, nn.Linear)}
    before = dict(vars(adapter.module))
    names = lora.attach_lora(adapter.module, LoraSettings(targets="all", rank=4))
    assert type(adapter.module).__name__ == "TrainFlux" and set(vars(adapter.module)) == set(before)
    assert list(lora.lora_layers(adapter.module)) == names
    assert {name: type(m) for name, m in owner.named_modules() if isinstance(m, nn.Linear)} == owner_linears
    trainable = [p for p in adapter.module.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for _, p in lora.trainable_parameters(adapter.module)}
    assert all(p.dtype == torch.float32 for p in trainable) and len(trainable) == 2 * len(names)
    with pytest.raises(ValueError, match="already carries LoRA"):
        lora.attach_lora(adapter.module, LoraSettings())


@pytest.mark.parametrize("init", ["default", "gaussian"])
def test_fresh_lora_is_the_identity_and_disable_gives_the_base(init):
    _, adapter = _tree()
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 16, 8, 8, generator=g), torch.tensor([0.5]), torch.randn(1, 4, 64, generator=g), torch.randn(1, 32, generator=g), torch.tensor([2.0]))
    with torch.no_grad():
        base = adapter.predict(*args)
        lora.attach_lora(adapter.module, LoraSettings(init=init, rank=4))
        assert torch.equal(adapter.predict(*args), base)
        for _, p in lora.trainable_parameters(adapter.module):
            p.normal_(0, 0.2, generator=g)
        moved = adapter.predict(*args)
        with lora.lora_disabled(adapter.module):
            assert torch.equal(adapter.predict(*args), base)
        assert torch.equal(adapter.predict(*args), moved) and not torch.equal(moved, base)
    assert all(p.requires_grad for _, p in lora.trainable_parameters(adapter.module))


def test_scale_is_alpha_over_rank_like_comfyui():
    layer_owner = nn.Sequential()
    layer_owner.add_module("txt_in", nn.Linear(8, 6))
    lora.attach_lora(layer_owner, LoraSettings(targets="context", rank=2, alpha=5.0))
    g = torch.Generator().manual_seed(0)
    down, up = torch.randn(2, 8, generator=g), torch.randn(6, 2, generator=g)
    lora.load_lora_state_dict(layer_owner, {"txt_in": lora.LoraWeights(down=down, up=up, alpha=5.0)})
    x = torch.randn(3, 8, generator=g)
    base = layer_owner.txt_in.base_layer
    expected = base(x) + x @ (5.0 / 2 * up @ down).T
    torch.testing.assert_close(layer_owner.txt_in(x), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(_delta(layer_owner, "txt_in"), 2.5 * up @ down)


def test_state_dict_round_trip_rescales_a_different_alpha_and_rejects_a_rank_change():
    _, a = _tree()
    lora.attach_lora(a.module, LoraSettings(rank=4, alpha=4.0, targets="attention"))
    for _, p in lora.trainable_parameters(a.module):
        torch.nn.init.normal_(p, 0, 0.1)
    saved = {k: lora.LoraWeights(w.down.clone(), w.up.clone(), w.alpha) for k, w in lora.lora_state_dict(a.module).items()}

    _, b = _tree()
    lora.attach_lora(b.module, LoraSettings(rank=4, alpha=1.0, targets="attention"))
    lora.load_lora_state_dict(b.module, saved)
    for name in saved:
        torch.testing.assert_close(_delta(b.module, name), _delta(a.module, name), rtol=1e-6, atol=1e-7)
        assert lora.lora_state_dict(b.module)[name].alpha == 1.0

    _, c = _tree()
    lora.attach_lora(c.module, LoraSettings(rank=8, targets="attention"))
    with pytest.raises(ValueError, match="has rank 4 .* set rank to 4"):
        lora.load_lora_state_dict(c.module, saved, source="ckpt.safetensors")
    _, d = _tree()
    lora.attach_lora(d.module, LoraSettings(rank=4, targets="mmdit"))
    with pytest.raises(ValueError, match="missing .* unexpected .*single_blocks"):
        lora.load_lora_state_dict(d.module, saved)

    # init_lora into a wider target set: the file's layers load, the others stay at delta 0.
    _, e = _tree()
    lora.attach_lora(e.module, LoraSettings(rank=4, targets="all"))
    with pytest.raises(ValueError, match="missing"):
        lora.load_lora_state_dict(e.module, saved)
    assert lora.load_lora_state_dict(e.module, saved, strict=False) == list(saved)
    assert _delta(e.module, "double_blocks.0.img_mlp.0").abs().max() == 0
    torch.testing.assert_close(_delta(e.module, "single_blocks.0.linear1"), _delta(a.module, "single_blocks.0.linear1"))


def test_merging_is_refused_on_every_attached_layer():
    owner, adapter = _tree()
    lora.attach_lora(adapter.module, LoraSettings(rank=4))
    before = owner.double_blocks[0].img_attn.qkv.weight.clone()
    for name, layer in lora.lora_layers(adapter.module).items():
        with pytest.raises(RuntimeError, match=f"refusing to merge the LoRA into {name}"):
            layer.merge()
    assert torch.equal(owner.double_blocks[0].img_attn.qkv.weight, before)


def test_dropout_applies_only_in_train_mode():
    m = nn.Sequential()
    m.add_module("txt_in", nn.Linear(16, 16))
    lora.attach_lora(m, LoraSettings(targets="context", rank=4, dropout=0.5))
    for _, p in lora.trainable_parameters(m):
        torch.nn.init.normal_(p)
    x = torch.randn(64, 16)
    m.eval()
    assert torch.equal(m.txt_in(x), m.txt_in(x))
    m.train()
    assert not torch.equal(m.txt_in(x), m.txt_in(x))
