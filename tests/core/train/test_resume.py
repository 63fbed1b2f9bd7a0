"""core/train/resume.py: a run folder is resumed only by the same base, data and LoRA shape, and the other
choices never touch the old run's files."""

import os

import pytest

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.train.resume import ResumeMismatch, check_resume, differences, settle_run, trained_on
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner

BASE, DATA = "flux1:aaaa", "d1"


def config(**lora) -> TrainConfig:
    return TrainConfig.from_dict({"lora": {"rank": 2, "targets": "attention", **lora},
                                  "train": {"steps": 2, "mixed_precision": "no", "gradient_checkpointing": False},
                                  "run": {"name": "r", "save_every": 1, "sample_every": 0}})


def trained_run(root, cfg=None, base=BASE, data=DATA):
    cfg = cfg or config()
    job = TrainingJob(cfg, adopt(tiny_owner("flux1-dev", seed=1)), SyntheticData(items=2), RunDir(root / cfg.run.name),
                      base_fingerprint=base, dataset_fingerprint=data)
    train(job, RunControl(None), lambda e: None)
    return root / cfg.run.name


def snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("change,words", [
    (dict(base="flux1:bbbb"), ["other base weights", "flux1:aaaa", "now flux1:bbbb"]),
    (dict(base="flux2:aaaa"), ["another model family (flux1, now flux2)"]),
    (dict(data="d2"), ["another dataset", "d1", "now d2"]),
    (dict(cfg=config(rank=4)), ["lora.rank 2, now 4", "lora.alpha 2, now 4"]),
    (dict(cfg=config(targets="all")), ["lora.targets 'attention', now 'all'"]),
    (dict(cfg=config(alpha=1.0)), ["lora.alpha 2, now 1"]),
])
def test_resuming_on_something_else_is_refused_and_touches_nothing(tmp_path, change, words):
    folder = trained_run(tmp_path)
    before = snapshot(folder)
    cfg = change.get("cfg", config())
    with pytest.raises(ResumeMismatch) as refused:
        trained_run(tmp_path, cfg, change.get("base", BASE), change.get("data", DATA))
    text = str(refused.value)
    for word in words:
        assert word in text
    assert "Nothing was changed" in text and "'new run' (trains fresh as 'r_2')" in text
    assert snapshot(folder) == before, "the old run's files were touched"
    with pytest.raises(ResumeMismatch):  # and the node's check, before any thread or file, says the same
        settle_run(tmp_path, cfg, "resume", change.get("base", BASE), change.get("data", DATA))


def test_the_same_run_resumes_and_older_checkpoints_without_a_record_are_not_judged(tmp_path):
    folder = trained_run(tmp_path)
    assert check_resume(RunDir(folder), config(), BASE, DATA).step == 2
    assert differences({"config": {}}, config(), BASE, DATA) == []
    assert differences(trained_on(config(), "", ""), config(), BASE, DATA) == []


@pytest.mark.parametrize("choice", ["new run", "new run from its LoRA"])
def test_the_other_choices_train_under_the_next_free_name(tmp_path, choice):
    folder = trained_run(tmp_path)
    before = snapshot(folder)
    (tmp_path / "r_2").mkdir()
    settled, note = settle_run(tmp_path, config(rank=2), choice, "flux1:other", "d9")
    assert settled.run.name == "r_3" and "'r' exists and is kept; training as 'r_3'" in note
    if choice == "new run":
        assert settled.lora.init_lora == ""
    else:
        assert settled.lora.init_lora == str(folder / "checkpoint_000002" / "lora.safetensors")
        assert "starting from the LoRA of its step 2" in note
    trained_run(tmp_path, settled, "flux1:other", "d9")
    assert snapshot(folder) == before
    assert RunDir(tmp_path / "r_3").final_lora_path.is_file()


def test_a_name_not_used_yet_trains_as_itself_whatever_the_choice(tmp_path):
    for choice in ("resume", "new run"):
        settled, note = settle_run(tmp_path, config(), choice, BASE, DATA)
        assert settled.run.name == "r" and note is None
    with pytest.raises(ValueError, match="on_existing_run 'overwrite' is not one of"):
        settle_run(tmp_path, config(), "overwrite", BASE, DATA)
    os.makedirs(tmp_path / "r")
    with pytest.raises(ResumeMismatch, match="has no checkpoint to start from"):
        settle_run(tmp_path, config(), "new run from its LoRA", BASE, DATA)
