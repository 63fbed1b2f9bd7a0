"""batch(step): pure in (seed, step), one bucket per batch, repeats counted; multi-folder sets,
caption dropout, token shuffle, DOP captions, padding, loss masks, and the report."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from flux_lora_lab.core.data import DatasetSpec, FolderSource, build_dataset
from flux_lora_lab.core.data.report import for_run
from flux_lora_lab.core.presets import suggested_steps

from .fakes import FakeTextEncoder, FakeVAE, make_image


def _mixed_folder(tmp_path, name="3_maya", count=7):
    folder = tmp_path / name
    shapes = [(64, 64), (96, 48), (48, 96), (64, 64), (96, 48), (64, 64), (80, 48)]
    for i in range(count):
        w, h = shapes[i % len(shapes)]
        make_image(folder / f"i{i}.png", w, h, seed=i, caption=f"mchar, tag{i}, red, blue, green")
    return folder


def _build(tmp_path, sources, **options):
    spec = DatasetSpec(tuple(sources), cache_dir=tmp_path / "cache", trigger="mchar", **options)
    return build_dataset(spec, FakeVAE(), FakeTextEncoder())


def test_schedule_is_pure_one_bucket_and_counts_repeats(tmp_path):
    ds = _build(tmp_path, [FolderSource(_mixed_folder(tmp_path), resolutions=(64,))])
    assert ds.image_count == 7 and len(ds) == 21  # kohya "3_" -> 3 repeats
    buckets = {k: len(v) for k, v in ds.buckets.items()}
    assert buckets == {(64, 64): 3, (80, 48): 3, (48, 80): 1}  # 96x48 and 80x48 share the nearest bucket
    expected_steps = sum(-(-3 * n // 2) for n in buckets.values())
    assert ds.steps_per_epoch(2) == expected_steps
    for epoch in range(3):
        seen = Counter()
        for step in range(epoch * expected_steps, (epoch + 1) * expected_steps):
            indices = ds.batch_indices(step, 2, 7)
            assert len({ds.samples[i].placement.bucket for i in indices}) == 1
            seen.update(indices)
        assert seen == Counter({i: 3 for i in range(7)})  # every sample exactly `repeats` times per epoch
    again = _build(tmp_path, [FolderSource(tmp_path / "3_maya", resolutions=(64,))])
    for step in [0, 5, 13, 40, 1000]:  # resume at any step = same batch, no loader state
        a, b = ds.batch(step, 2, 7), again.batch(step, 2, 7)
        assert a.paths == b.paths and a.captions == b.captions
        torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
    orders = [[ds.batch_indices(s, 2, 7) for s in range(e * expected_steps, (e + 1) * expected_steps)] for e in range(3)]
    assert orders[0] != orders[1] != orders[2]  # reshuffled each epoch
    assert [ds.batch_indices(s, 2, 8) for s in range(expected_steps)] != orders[0], "the run's seed orders the data"
    built_other = _build(tmp_path, [FolderSource(tmp_path / "3_maya", resolutions=(64,))], seed=8)
    assert [built_other.batch_indices(s, 2, 7) for s in range(expected_steps)] == orders[0], \
        "the dataset's own seed fixes crops and shuffle orders, not the run's data order"
    assert ds.steps_per_epoch(1) == 21 and len(ds.batch_indices(0, 1, 7)) == 1


def test_batch_tensors(tmp_path):
    ds = _build(tmp_path, [FolderSource(_mixed_folder(tmp_path), resolutions=(64,))])
    for step in range(ds.steps_per_epoch(3)):
        batch = ds.batch(step, 3, 0)
        b = len(batch.paths)
        w, h = ds.samples[ds.batch_indices(step, 3, 0)[0]].placement.bucket
        assert batch.latents.shape == (b, 4, h // 8, w // 8)
        assert batch.context.shape[0] == b and batch.context.shape[2] == 8
        assert batch.pooled.shape == (b, 4)
        assert batch.loss_mask is None and batch.dop_context is None and batch.dop_captions is None
        lengths = [len(c.replace(",", " ").split()) for c in batch.captions]
        assert batch.context.shape[1] == max(lengths)  # padded to the longest caption, with zeros
        for row, n in enumerate(lengths):
            assert torch.all(batch.context[row, n:] == 0)


def test_multi_folder_own_resolutions_and_repeats(tmp_path):
    chars = _mixed_folder(tmp_path, "40_maya_char", count=3)
    body = tmp_path / "bodies"
    for i in range(2):
        make_image(body / f"b{i}.png", 96, 96, seed=10 + i, caption=f"body {i}")
    first = DatasetSpec((FolderSource(chars, resolutions=(64,)),), cache_dir=tmp_path / "cache", trigger="mchar")
    second = DatasetSpec((FolderSource(body, resolutions=(64, 96), repeats=20),), cache_dir=tmp_path / "cache", trigger="mchar")
    spec = second.chained_after(first)
    assert [s.folder for s in spec.sources] == [chars, body] and len(first.sources) == 1
    ds = build_dataset(spec, FakeVAE(), FakeTextEncoder())
    assert ds.image_count == 5
    assert len(ds) == 3 * 40 + 2 * 2 * 20
    assert {s.placement.resolution for s in ds.samples if s.path.parent == body} == {64, 96}
    folders = ds.report.data["folders"]
    assert [f["images"] for f in folders] == [3, 2] and folders[1]["repeats"] == {"20": 2}
    assert folders[0]["repeats"] == {"40": 3}
    assert json.loads(json.dumps(ds.report.data)) == ds.report.data  # the panel event carries it as JSON
    assert {s.placement.bucket for s in ds.samples} == {(64, 64), (80, 48), (48, 80), (96, 96)}
    assert ds.steps_per_epoch(1) == len(ds)


def test_caption_dropout_rate_and_empty_encoding(tmp_path):
    ds = _build(tmp_path, [FolderSource(_mixed_folder(tmp_path), resolutions=(64,), repeats=30)], caption_dropout=0.25)
    captions = [ds.batch(step, 1, 0).captions[0] for step in range(400)]
    rate = captions.count("") / len(captions)
    assert 0.18 < rate < 0.32, rate
    dropped = next(step for step in range(400) if ds.batch(step, 1, 0).captions[0] == "")
    assert torch.all(ds.batch(dropped, 1, 0).context == 0)  # the fake encodes "" as one zero row


def test_token_shuffle_uses_precomputed_variants(tmp_path):
    text = FakeTextEncoder()
    spec = DatasetSpec((FolderSource(_mixed_folder(tmp_path, count=2), resolutions=(64,), repeats=50),),
                       cache_dir=tmp_path / "cache", trigger="mchar", shuffle_tokens=True, keep_tokens=1)
    ds = build_dataset(spec, FakeVAE(), text)
    encoded_at_build = len(text.calls)
    assert encoded_at_build > 2
    seen = {ds.batch(step, 1, 0).captions[0] for step in range(200)}
    assert len(seen) > 4 and all(c.startswith("mchar, ") for c in seen)
    assert len(text.calls) == encoded_at_build  # nothing encoded during training
    assert seen <= set(text.calls)


def test_dop_class_captions(tmp_path):
    folder = tmp_path / "set"
    make_image(folder / "a.png", caption="{trigger} in a red dress")
    make_image(folder / "b.png", caption="portrait")
    spec = DatasetSpec((FolderSource(folder, resolutions=(64,)),), cache_dir=tmp_path / "c",
                       trigger="mchar", class_word="woman")
    ds = build_dataset(spec, FakeVAE(), FakeTextEncoder())
    batch = ds.batch(0, 2, 0)
    assert sorted(batch.captions) == ["mchar in a red dress", "mchar, portrait"]
    assert sorted(batch.dop_captions) == ["woman in a red dress", "woman, portrait"]
    assert batch.dop_context.shape == batch.context.shape and batch.dop_pooled.shape == batch.pooled.shape
    assert not torch.equal(batch.dop_context, batch.context)
    reference = FakeTextEncoder().encode(batch.dop_captions[0])[0]
    torch.testing.assert_close(batch.dop_context[0, : reference.shape[0]], reference)


def test_alpha_loss_mask_in_batch(tmp_path):
    folder = tmp_path / "set"
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = 128
    rgba[:, 32:, 3] = 255
    folder.mkdir()
    Image.fromarray(rgba, "RGBA").save(folder / "cut.png")
    (folder / "cut.txt").write_text("cut")
    make_image(folder / "plain.png", caption="plain")
    spec = DatasetSpec((FolderSource(folder, resolutions=(64,), alpha_as_mask=True),), cache_dir=tmp_path / "c")
    batch = build_dataset(spec, FakeVAE(), FakeTextEncoder()).batch(0, 2, 0)
    assert batch.loss_mask.shape == (2, 1, 8, 8)
    masked = batch.paths.index(folder / "cut.png")
    assert torch.all(batch.loss_mask[masked, 0, :, :4] == 0) and torch.all(batch.loss_mask[masked, 0, :, 4:] == 1)
    assert torch.all(batch.loss_mask[1 - masked] == 1)


def test_report_duplicates_histogram_and_suggestion(tmp_path):
    folder = _mixed_folder(tmp_path, "set", count=4)
    shutil.copy(folder / "i0.png", folder / "copy_of_i0.png")
    (folder / "copy_of_i0.txt").write_text("copy")
    ds = _build(tmp_path, [FolderSource(folder, resolutions=(64,))])
    data = ds.report.data
    assert data["duplicates"] == [[str(folder / "copy_of_i0.png"), str(folder / "i0.png")]]
    assert "Duplicate content" in ds.report.text
    assert sum(data["buckets"].values()) == 5 and "64px 64x64" in data["buckets"]
    assert data["steps_per_epoch"] == ds.steps_per_epoch(1) == 5 and data["batch_size"] == 1
    # The character preset accumulates 4 micro-batches per step (seed 000): Astria's 300 images shown = 75 steps.
    assert data["suggested_steps_by_preset"] == {"character": 75, "concept": 300, "style": 500}
    assert "Suggested steps: character 75, concept 300, style 500." in ds.report.text
    run = for_run(data, ds, 2, "style")  # the run's batch (batch size x accumulation) and preset
    assert (run["batch_size"], run["steps_per_epoch"], run["suggested_steps"], run["suggested_epochs"]) == (2, 4, 500, 125.0)  # buckets of 3, 1 and 1 at batch 2
    assert for_run(data, ds, 1, "custom")["suggested_steps"] is None
    assert suggested_steps("character", 20) == 135 and suggested_steps("style", 20) == 2000
    assert suggested_steps("concept", 5) == 300
    assert data["captions"]["with_trigger"] == 5


def test_step_must_be_non_negative(tmp_path):
    ds = _build(tmp_path, [FolderSource(_mixed_folder(tmp_path, count=1), resolutions=(64,))])
    with pytest.raises(ValueError, match="step"):
        ds.batch(-1, 1, 0)
