"""LoRA files: exact key layouts (kohya with explicit alphas; diffusers and Flux.2 with alpha folded into
the up weights), the same delta read back, self-describing metadata, atomic writes, clear errors."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from flux_lora_lab.core.model import lora_format
from flux_lora_lab.core.model.lora import LoraWeights

NAMES = ["txt_in", "double_blocks.0.img_attn.qkv", "double_blocks.1.txt_mlp.2", "double_blocks.0.img_mod.lin", "single_blocks.12.linear1", "single_blocks.3.modulation.lin"]
SHAPES = {"txt_in": (64, 64), "double_blocks.0.img_attn.qkv": (192, 64), "double_blocks.1.txt_mlp.2": (64, 256), "double_blocks.0.img_mod.lin": (384, 64),
          "single_blocks.12.linear1": (448, 64), "single_blocks.3.modulation.lin": (192, 64)}


def _weights(rank=4, alpha=8.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: LoraWeights(down=torch.randn(rank, SHAPES[n][1], generator=g), up=torch.randn(SHAPES[n][0], rank, generator=g), alpha=alpha) for n in NAMES}


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_flux1_kohya_keys_exactly(tmp_path):
    path = lora_format.save_lora(tmp_path / "a.safetensors", _weights(), "flux1")
    tensors, _ = _read(path)
    expected = {f"lora_unet_{stem}.{part}" for stem in ["txt_in", "double_blocks_0_img_attn_qkv", "double_blocks_1_txt_mlp_2", "double_blocks_0_img_mod_lin",
                                                         "single_blocks_12_linear1", "single_blocks_3_modulation_lin"]
                for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert set(tensors) == expected
    assert tensors["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape == (4, 64)
    assert tensors["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"].shape == (192, 4)
    alpha = tensors["lora_unet_single_blocks_12_linear1.alpha"]
    assert alpha.ndim == 0 and alpha.dtype == torch.float32 and alpha.item() == 8.0


def test_flux2_diffusion_model_keys_exactly_with_alpha_folded(tmp_path):
    """diffusers' Flux.2 reader refuses `.alpha` keys; without them every reader applies scale 1."""
    weights = _weights(rank=4, alpha=8.0)
    path = lora_format.save_lora(tmp_path / "b.safetensors", weights, "flux2")
    tensors, meta = _read(path)
    assert set(tensors) == {f"diffusion_model.{n}.{p}" for n in NAMES for p in ("lora_A.weight", "lora_B.weight")}
    assert tensors["diffusion_model.double_blocks.1.txt_mlp.2.lora_A.weight"].shape == (4, 256)
    assert torch.equal(tensors["diffusion_model.double_blocks.1.txt_mlp.2.lora_B.weight"], weights["double_blocks.1.txt_mlp.2"].up * 2)
    assert (meta["fluxlab.layout"], meta["fluxlab.alpha"]) == ("bfl", "8.0")


DIFFUSERS_PARTS = {  # BFL name -> (diffusers modules, rows of up each takes)
    "txt_in": (["context_embedder"], [64]),
    "double_blocks.0.img_attn.qkv": ([f"transformer_blocks.0.attn.to_{x}" for x in "qkv"], [64] * 3),
    "double_blocks.1.txt_mlp.2": (["transformer_blocks.1.ff_context.net.2"], [64]),
    "double_blocks.0.img_mod.lin": (["transformer_blocks.0.norm1.linear"], [384]),
    "single_blocks.12.linear1": ([f"single_transformer_blocks.12.attn.to_{x}" for x in "qkv"] + ["single_transformer_blocks.12.proj_mlp"], [64, 64, 64, 256]),
    "single_blocks.3.modulation.lin": (["single_transformer_blocks.3.norm.linear"], [192]),
}


def test_flux1_diffusers_layout_keys_exactly(tmp_path):
    """ai-toolkit's layout: fused layers split per diffusers module, one shared down, alpha folded."""
    weights = _weights(rank=4, alpha=2.0)
    tensors, meta = _read(lora_format.save_lora(tmp_path / "d.safetensors", weights, "flux1", layout="diffusers"))
    assert meta["fluxlab.layout"] == "diffusers"
    assert set(tensors) == {f"transformer.{m}.{ab}.weight" for mods, _ in DIFFUSERS_PARTS.values() for m in mods for ab in ("lora_A", "lora_B")}
    for name, (modules, rows) in DIFFUSERS_PARTS.items():
        ups = [tensors[f"transformer.{m}.lora_B.weight"] for m in modules]
        assert [u.shape[0] for u in ups] == rows, name
        assert torch.equal(torch.cat(ups), weights[name].up * 0.5), name
        for m in modules:
            assert torch.equal(tensors[f"transformer.{m}.lora_A.weight"], weights[name].down), m


def test_the_final_adaln_is_swapped_as_diffusers_stores_it(tmp_path):
    w = LoraWeights(down=torch.randn(2, 8), up=torch.arange(12.0).reshape(6, 2), alpha=2.0)
    tensors, _ = _read(lora_format.save_lora(tmp_path / "s.safetensors", {"final_layer.adaLN_modulation.1": w}, "flux1", layout="diffusers"))
    assert torch.equal(tensors["transformer.norm_out.linear.lora_B.weight"], torch.cat([w.up[3:], w.up[:3]]))
    back = lora_format.load_lora(tmp_path / "s.safetensors").weights["final_layer.adaLN_modulation.1"]
    assert torch.equal(back.up, w.up)


@pytest.mark.parametrize("family, layout", [("flux1", "kohya"), ("flux1", "diffusers"), ("flux2", "kohya")])
def test_round_trip_with_metadata(tmp_path, family, layout):
    weights = _weights(rank=3, alpha=1.5)
    config = {"lora": {"rank": 3, "alpha": 1.5}, "lr": 1e-4}
    path = lora_format.save_lora(tmp_path / "c.safetensors", weights, family, step=125, trigger="ohwx", base_fingerprint="sha256:abc",
                                 config=config, extra_metadata={"note": "hi", "buckets": [512, 768]}, dtype=torch.bfloat16, layout=layout)
    _, meta = _read(path)
    assert meta["fluxlab.format_version"] == lora_format.FORMAT_VERSION and meta["fluxlab.family"] == family
    assert (meta["fluxlab.step"], meta["fluxlab.rank"], meta["fluxlab.alpha"], meta["fluxlab.trigger"]) == ("125", "3", "1.5", "ohwx")
    assert meta["fluxlab.base_fingerprint"] == "sha256:abc" and json.loads(meta["fluxlab.targets"]) == NAMES
    assert meta["note"] == "hi" and json.loads(meta["buckets"]) == [512, 768]

    loaded = lora_format.load_lora(path, family=family, rank=3)
    assert loaded.family == family and loaded.rank == 3 and loaded.step == 125 and loaded.config == config
    assert set(loaded.weights) == set(NAMES)
    folded = (family, layout) != ("flux1", "kohya")
    for name, w in weights.items():
        got = loaded.weights[name]
        assert got.alpha == (3.0 if folded else 1.5) and got.down.dtype == torch.bfloat16 and got.up.dtype == torch.bfloat16
        torch.testing.assert_close(got.down.float(), w.down.to(torch.bfloat16).float())
        # the change every reader applies is the trained one, to bf16's precision
        torch.testing.assert_close(got.delta(), w.delta(), rtol=2e-2, atol=2e-2)


def test_diffusers_layout_errors_name_the_file(tmp_path):
    path = lora_format.save_lora(tmp_path / "d.safetensors", _weights(), "flux1", layout="diffusers")
    tensors, meta = _read(path)
    tensors["transformer.transformer_blocks.0.attn.to_k.lora_A.weight"] = torch.randn(4, 64)
    save_file(tensors, str(tmp_path / "split.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"split\.safetensors: .*to_q, .*to_k, .*to_v have different lora_A .*fused double_blocks\.0\.img_attn\.qkv"):
        lora_format.load_lora(tmp_path / "split.safetensors")
    del tensors["transformer.transformer_blocks.0.attn.to_v.lora_B.weight"]
    save_file(tensors, str(tmp_path / "part.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"part\.safetensors: double_blocks\.0\.img_attn\.qkv lacks transformer\.transformer_blocks\.0\.attn\.to_v\.lora_B"):
        lora_format.load_lora(tmp_path / "part.safetensors")
    save_file({"transformer.pos_embed.lora_A.weight": torch.zeros(2, 4), "transformer.pos_embed.lora_B.weight": torch.zeros(4, 2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ValueError, match=r"odd\.safetensors: key 'transformer\.pos_embed\.lora_A\.weight' names no Flux\.1 linear"):
        lora_format.load_lora(tmp_path / "odd.safetensors")
    with pytest.raises(ValueError, match=r"'double_stream_modulation_img\.lin' has no diffusers Flux\.1 name; save it in the 'kohya' layout"):
        lora_format.save_lora(tmp_path / "x.safetensors", {"double_stream_modulation_img.lin": _weights()["txt_in"]}, "flux1", layout="diffusers")
    with pytest.raises(ValueError, match="unknown LoRA layout 'peft'"):
        lora_format.save_lora(tmp_path / "x.safetensors", _weights(), "flux1", layout="peft")


def test_the_layout_setting_offers_exactly_the_layouts_files_have():
    from flux_lora_lab.core.config import RunSettings
    from dataclasses import fields

    (meta,) = [f.metadata for f in fields(RunSettings) if f.name == "lora_format"]
    assert tuple(meta["choices"]) == lora_format.LAYOUTS


def test_wrong_family_missing_keys_and_rank_mismatch_name_the_file(tmp_path):
    path = lora_format.save_lora(tmp_path / "f1.safetensors", _weights(), "flux1")
    with pytest.raises(ValueError, match=r"f1\.safetensors is a Flux\.1 LoRA but the model is Flux\.2"):
        lora_format.load_lora(path, family="flux2")
    with pytest.raises(ValueError, match=r"f1\.safetensors: .* has rank 4 but rank 8 was expected"):
        lora_format.load_lora(path, rank=8)

    tensors, meta = _read(path)
    del tensors["lora_unet_double_blocks_0_img_attn_qkv.alpha"]  # read as every loader reads it: alpha = rank
    save_file(tensors, str(tmp_path / "noalpha.safetensors"), metadata=meta)
    assert lora_format.load_lora(tmp_path / "noalpha.safetensors").weights["double_blocks.0.img_attn.qkv"].alpha == 4.0
    del tensors["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"]
    save_file(tensors, str(tmp_path / "noup.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"noup\.safetensors: double_blocks\.0\.img_attn\.qkv lacks its up tensor"):
        lora_format.load_lora(tmp_path / "noup.safetensors")

    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 64), "model.diffusion_model.x.weight": torch.zeros(1)},
              str(tmp_path / "mixed.safetensors"))
    with pytest.raises(ValueError, match=r"mixed\.safetensors is not a Flux LoRA .*model\.diffusion_model\.x\.weight"):
        lora_format.load_lora(tmp_path / "mixed.safetensors")
    save_file({"lora_unet_double_blocks_0_img_attnqkv.lora_down.weight": torch.zeros(4, 64)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ValueError, match=r"odd\.safetensors: key stem 'double_blocks_0_img_attnqkv' names no Flux linear"):
        lora_format.load_lora(tmp_path / "odd.safetensors")
    with pytest.raises(FileNotFoundError, match="nothere"):
        lora_format.load_lora(tmp_path / "nothere.safetensors")


def test_save_rejects_names_and_metadata_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="'double_blocks.0.img_attn.norm' is not a Flux linear"):
        lora_format.save_lora(tmp_path / "x.safetensors", {"double_blocks.0.img_attn.norm": _weights()["txt_in"]}, "flux1")
    with pytest.raises(ValueError, match="metadata keys must be strings"):
        lora_format.save_lora(tmp_path / "x.safetensors", _weights(), "flux1", extra_metadata={3: "x"})
    with pytest.raises(ValueError, match="unknown model family 'sd3'"):
        lora_format.save_lora(tmp_path / "x.safetensors", _weights(), "sd3")
    assert not list(tmp_path.iterdir())


def test_a_failing_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = lora_format.save_lora(tmp_path / "lora.safetensors", _weights(seed=0), "flux1", step=1)
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        lora_format.save_lora(path, _weights(seed=1), "flux1", step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["lora.safetensors"], "the temp file must be cleaned up"
    assert lora_format.load_lora(path).step == 1


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\""])
def test_an_unreadable_file_is_named_with_what_it_is(tmp_path, content):
    """Measured before: `SafetensorError: header too large`, naming no file (e.g. as init_lora)."""
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"LoRA file .*broken.safetensors \({len(content)} bytes\) cannot be read"):
        lora_format.load_lora(path)
