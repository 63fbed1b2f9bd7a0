"""Regularisation folders: their share of each epoch, their loss weight in the batch, captions without
the trigger, the report, and the settings' errors."""

from collections import Counter

import pytest
import torch

from flux_lora_lab.core.data import DatasetError, DatasetSpec, FolderSource, build_dataset
from flux_lora_lab.core.presets import suggested_steps

from .fakes import FakeTextEncoder, FakeVAE, make_image


def _folder(tmp_path, name, count, caption, shapes=((64, 64),), seed=0):
    folder = tmp_path / name
    for i in range(count):
        w, h = shapes[i % len(shapes)]
        make_image(folder / f"{name}_{i}.png", w, h, seed=seed + i, caption=f"{caption} {i}")
    return folder


def _build(tmp_path, *sources, **options):
    spec = DatasetSpec(tuple(sources), cache_dir=tmp_path / "cache", trigger="ohwx", **options)
    return build_dataset(spec, FakeVAE(), FakeTextEncoder())


def _is_reg(ds, index):
    return ds.spec.sources[ds.samples[index].source_index].regularisation


@pytest.mark.parametrize("ratio, expected_reg", [(0.5, 6), (0.25, 2), (0.75, 18)])
def test_reg_folder_makes_up_its_ratio_of_every_epoch(tmp_path, ratio, expected_reg):
    train = FolderSource(_folder(tmp_path, "2_subject", 3, "photo"), resolutions=(64,))  # 3 images x 2 = 6
    reg = FolderSource(_folder(tmp_path, "reg", 5, "a person", shapes=((64, 64), (96, 48)), seed=50),
                       resolutions=(64,), role="regularisation", reg_ratio=ratio, loss_weight=0.5)
    ds = _build(tmp_path, train, reg)
    assert len(ds) == 6 + expected_reg and ds.schedule.reg_draws(1) == expected_reg
    steps = ds.steps_per_epoch(2)
    used_reg = Counter()
    for epoch in range(4):
        seen = Counter()
        for step in range(epoch * steps, (epoch + 1) * steps):
            indices = ds.batch_indices(step, 2, 11)
            assert len({ds.samples[i].placement.bucket for i in indices}) == 1, "one bucket per batch"
            seen.update(indices)
        assert sum(n for i, n in seen.items() if _is_reg(ds, i)) == expected_reg
        assert {i: n for i, n in seen.items() if not _is_reg(ds, i)} == {i: 2 for i in range(3)}
        used_reg.update({i: n for i, n in seen.items() if _is_reg(ds, i)})
    assert len(used_reg) == 5, "over the epochs every reg image is drawn"
    for pool in ds.schedule.reg:  # each drawn once before any is drawn again
        counts = [used_reg[i] for i in pool.entries]
        assert max(counts) - min(counts) <= 1, counts
    rebuilt = _build(tmp_path, train, reg)
    for step in (0, 3, steps + 1, 5 * steps + 2):  # resume anywhere: same batch
        a, b = ds.batch(step, 2, 11), rebuilt.batch(step, 2, 11)
        assert a.paths == b.paths and a.captions == b.captions
        torch.testing.assert_close(a.loss_weights, b.loss_weights, rtol=0, atol=0)
    first = [ds.batch_indices(s, 2, 11) for s in range(steps)]
    second = [ds.batch_indices(s, 2, 11) for s in range(steps, 2 * steps)]
    assert first != second


def test_reg_quota_is_spread_over_buckets_in_proportion(tmp_path):
    train = FolderSource(_folder(tmp_path, "subject", 4, "photo"), resolutions=(64,), repeats=2)  # 8 samples
    reg = FolderSource(_folder(tmp_path, "reg", 4, "a person", shapes=((64, 64), (64, 64), (64, 64), (96, 48))),
                       resolutions=(64,), role="regularisation")
    ds = _build(tmp_path, train, reg)
    quotas = {pool.bucket: pool.draws for pool in ds.schedule.reg}
    assert quotas == {(64, 64): 6, (80, 48): 2}  # 8 draws, 3:1 like the reg images' shapes


def test_batch_carries_folder_weights_and_reg_captions_have_no_trigger(tmp_path):
    train = FolderSource(_folder(tmp_path, "subject", 2, "photo"), resolutions=(64,), loss_weight=2.0)
    reg = FolderSource(_folder(tmp_path, "reg", 2, "a person"), resolutions=(64,), role="regularisation",
                       loss_weight=0.25)
    ds = _build(tmp_path, train, reg)
    seen = set()
    for step in range(ds.steps_per_epoch(1) * 3):
        batch = ds.batch(step, 1, 0)
        reg_sample = batch.paths[0].parent.name == "reg"
        assert batch.loss_weights.tolist() == [0.25 if reg_sample else 2.0]
        assert batch.captions[0].startswith("a person" if reg_sample else "ohwx, photo")
        seen.add(reg_sample)
    assert seen == {True, False}
    assert ds.report.data["captions"]["with_trigger"] == 2 and ds.report.data["captions"]["trained_images"] == 2


def test_report_shows_reg_samples_per_epoch_and_weight(tmp_path):
    train = FolderSource(_folder(tmp_path, "3_subject", 2, "photo"), resolutions=(64,))
    reg = FolderSource(_folder(tmp_path, "reg", 3, "a person"), resolutions=(64,), role="regularisation",
                       reg_ratio=0.4, loss_weight=0.7)
    ds = _build(tmp_path, train, reg)
    folder = ds.report.data["folders"][1]
    assert folder["role"] == "regularisation" and folder["reg_samples_per_epoch"] == 4  # round(6 * 0.4 / 0.6)
    assert ds.report.data["samples_per_epoch"] == 10
    assert ("regularisation: 4 reg samples per epoch (with 6 training samples), loss weight 0.7, "
            "captions without the trigger") in ds.report.text
    assert "Trigger 'ohwx' in 2/2 training captions." in ds.report.text
    assert ds.report.data["suggested_steps_by_preset"]["style"] == suggested_steps("style", 2) == 300  # not 5 images


def test_fingerprint_follows_folder_roles_and_weights(tmp_path):
    folder = _folder(tmp_path, "subject", 2, "photo")
    plain = _build(tmp_path, FolderSource(folder, resolutions=(64,))).fingerprint
    assert _build(tmp_path, FolderSource(folder, resolutions=(64,))).fingerprint == plain
    assert _build(tmp_path, FolderSource(folder, resolutions=(64,), loss_weight=0.5)).fingerprint != plain
    assert _build(tmp_path, FolderSource(folder, resolutions=(64,), caption_dropout=0.1)).fingerprint != plain


def test_reg_settings_errors_name_the_fix(tmp_path):
    folder = _folder(tmp_path, "reg", 1, "a person")
    with pytest.raises(DatasetError, match="training images \\(role 'train'\\) to the regularisation node"):
        _build(tmp_path, FolderSource(folder, role="regularisation"))
    with pytest.raises(DatasetError, match="add up to 1"):
        _build(tmp_path, FolderSource(folder), FolderSource(folder, role="regularisation", reg_ratio=0.6),
               FolderSource(folder, role="regularisation", reg_ratio=0.4))
    with pytest.raises(DatasetError, match="reg_ratio=1.0 of regularisation folder"):
        FolderSource(folder, role="regularisation", reg_ratio=1.0)
    with pytest.raises(DatasetError, match="role='trainer' is not supported"):
        FolderSource(folder, role="trainer")
