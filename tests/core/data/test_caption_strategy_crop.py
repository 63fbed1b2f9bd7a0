"""Per-folder caption options (caption_strategy, caption dropout) and crop "none", and that changing
either re-encodes instead of reading a stale cache entry."""

import numpy as np
import pytest
import torch
from PIL import Image

from flux_lora_lab.core.data import DatasetError, DatasetSpec, FolderSource, build_dataset
from flux_lora_lab.core.data.buckets import place
from flux_lora_lab.core.data.encoders import encode_text
from flux_lora_lab.core.data.images import load_sample

from .fakes import FakeTextEncoder, FakeVAE, make_image


def _build(tmp_path, *sources, **options):
    spec = DatasetSpec(tuple(sources), cache_dir=tmp_path / "cache", **options)
    return build_dataset(spec, FakeVAE(), FakeTextEncoder())


def _captions(ds):
    return sorted(s.captions[0] for s in ds.samples)


def test_caption_strategies(tmp_path):
    folder = tmp_path / "imgs"
    make_image(folder / "red_car_on_a_road.png", seed=1, caption="from the file")
    make_image(folder / "blue  sky.png", seed=2)  # no caption file: only textfile would refuse
    by_name = _build(tmp_path, FolderSource(folder, resolutions=(64,), caption_strategy="filename"), trigger="ohwx")
    assert _captions(by_name) == ["ohwx, blue sky", "ohwx, red car on a road"]
    assert "2 from the filename" in by_name.report.text and by_name.report.data["captions"]["missing"] == []
    instance = _build(tmp_path, FolderSource(folder, resolutions=(64,), caption_strategy="instanceprompt",
                                             instance_prompt="a photo of {trigger} dog"), trigger="sks")
    assert _captions(instance) == ["a photo of sks dog"] * 2
    with pytest.raises(DatasetError, match="has no .txt caption file"):
        _build(tmp_path, FolderSource(folder, resolutions=(64,)))
    fallback = _build(tmp_path, FolderSource(folder, resolutions=(64,), missing_caption="trigger_only"), trigger="t")
    assert _captions(fallback) == ["t", "t, from the file"], "textfile keeps the missing_caption policies"
    with pytest.raises(DatasetError, match="needs an instance_prompt"):
        FolderSource(folder, caption_strategy="instanceprompt")
    with pytest.raises(DatasetError, match="caption_strategy='captions' is not supported"):
        FolderSource(folder, caption_strategy="captions")


def test_per_folder_caption_dropout_overrides_the_sets(tmp_path):
    drops = FolderSource(tmp_path / "a", resolutions=(64,), caption_dropout=0.9)
    keeps = FolderSource(tmp_path / "b", resolutions=(64,))
    for name in "ab":
        for i in range(2):
            make_image(tmp_path / name / f"{name}{i}.png", seed=ord(name) + i, caption=f"{name} caption {i}")
    ds = _build(tmp_path, drops, keeps)  # the set's dropout is 0: folder b never drops
    dropped = {"a": 0, "b": 0}
    for step in range(200):
        batch = ds.batch(step, 1, 3)
        if batch.captions == [""]:
            dropped[batch.paths[0].parent.name] += 1
            assert torch.all(batch.context == 0)
    assert dropped["b"] == 0 and 70 <= dropped["a"] <= 100  # ~100 steps on a at 0.9: far from 0 and from b
    other = _build(tmp_path, drops, keeps, caption_dropout=0.5)
    assert other.spec.caption_dropout_of(0) == 0.9 and other.spec.caption_dropout_of(1) == 0.5
    with pytest.raises(DatasetError, match="caption_dropout=1.0 of"):
        FolderSource(tmp_path / "a", caption_dropout=1.0)


def test_crop_none_resizes_the_whole_image_to_the_bucket(tmp_path):
    path = make_image(tmp_path / "wide" / "w.png", 100, 70, seed=4, caption="wide")
    placement = place(100, 70, 64, square_only=False, no_upscale=False, crop="none", seed=0, image_key="k")
    assert placement.resized == placement.bucket and placement.crop == (0, 0)
    pixels, _ = load_sample(path, placement, want_mask=False)
    whole = Image.open(path).convert("RGB").resize(placement.bucket, Image.Resampling.LANCZOS)
    np.testing.assert_array_equal((pixels.numpy() * 255).round().astype(np.uint8), np.asarray(whole))
    cropped = place(100, 70, 64, square_only=False, no_upscale=False, crop="center", seed=0, image_key="k")
    assert cropped.bucket == placement.bucket and cropped.resized != placement.resized


def test_changing_crop_or_caption_strategy_re_encodes(tmp_path):
    folder = tmp_path / "set"
    make_image(folder / "a_cat.png", 100, 70, seed=5, caption="a file caption")
    make_image(folder / "b_dog.png", 64, 64, seed=6, caption="another file caption")
    centre = _build(tmp_path, FolderSource(folder, resolutions=(64,)))
    none = _build(tmp_path, FolderSource(folder, resolutions=(64,), crop="none"))
    cache = none.report.data["cache"]
    assert cache["latents_encoded"] == 1 and cache["latents_reused"] == 1, \
        "the 100x70 image is re-encoded uncropped; the square one is the same pixels either way"
    wide = [i for i, s in enumerate(none.samples) if s.path.name == "a_cat.png"][0]
    assert none.samples[wide].latent_key != centre.samples[wide].latent_key
    encoder = FakeTextEncoder()
    by_name = _build(tmp_path, FolderSource(folder, resolutions=(64,), caption_strategy="filename"))
    assert by_name.report.data["cache"]["texts_encoded"] == 2 and by_name.report.data["cache"]["latents_reused"] == 2
    for step in range(by_name.steps_per_epoch(1)):
        batch = by_name.batch(step, 1, 0)
        expected = {"a_cat.png": "a cat", "b_dog.png": "b dog"}[batch.paths[0].name]
        assert batch.captions == [expected]
        torch.testing.assert_close(batch.context[0], encode_text(encoder, expected)["context"], rtol=0, atol=0)
    assert "crop: none (resized to the bucket, aspect stretched slightly)" in none.report.text
