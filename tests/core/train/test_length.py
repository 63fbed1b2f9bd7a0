"""train.epochs: converted to optimizer steps with the dataset's steps per epoch at batch_size x
gradient_accumulation, trained by the loop, and shown in the report the run emits."""

import pytest

from flux_lora_lab.core.config import ConfigError, TrainConfig
from flux_lora_lab.core.data import FolderSource
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.length import resolve_length, run_length_report, steps_per_epoch
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.data.test_dataset import _build, _mixed_folder
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner


def config(epochs, batch=1, accumulation=1, steps=1000, warmup=0):
    return TrainConfig.from_dict({"train": {"epochs": epochs, "batch_size": batch, "steps": steps,
                                            "mixed_precision": "no", "gradient_checkpointing": False},
                                  "optim": {"gradient_accumulation": accumulation, "warmup_steps": warmup},
                                  "lora": {"rank": 2}, "run": {"name": "ep", "save_every": 0, "sample_every": 0}})


def test_epochs_of_a_real_dataset_count_buckets_batches_and_accumulation(tmp_path):
    ds = _build(tmp_path, [FolderSource(_mixed_folder(tmp_path), resolutions=(64,))])
    # 21 samples in buckets of 9, 9 and 3: at batch 2 that is 5 + 5 + 2 = 12 micro-batches per pass
    assert ds.steps_per_epoch(2) == 12
    assert steps_per_epoch(ds, config(10, batch=2, accumulation=4)) == 3
    assert steps_per_epoch(ds, config(10, batch=2, accumulation=5)) == 3  # 12 / 5 rounds up
    assert resolve_length(config(10, batch=2, accumulation=4), ds).train.steps == 30
    assert resolve_length(config(3, batch=1), ds).train.steps == 63
    unchanged = config(0, steps=77)
    assert resolve_length(unchanged, ds) is unchanged


def test_warmup_longer_than_the_epochs_is_refused_when_the_length_is_known(tmp_path):
    ds = _build(tmp_path, [FolderSource(_mixed_folder(tmp_path), resolutions=(64,))])
    cfg = config(1, batch=2, accumulation=4, steps=10, warmup=5)  # steps 10 would allow it; epochs decide
    with pytest.raises(ConfigError, match="optim.warmup_steps.*3 steps of train.epochs 1"):
        resolve_length(cfg, ds)
    with pytest.raises(ConfigError, match="train.epochs.*outside"):
        config(-1)


def test_the_loop_trains_the_epochs_and_reports_them(tmp_path):
    data = SyntheticData(items=6)  # batch 2 -> 3 micro-batches a pass; accumulation 2 -> 2 steps a pass
    events = []
    job = TrainingJob(config(2, batch=2, accumulation=2), adopt(tiny_owner()), data, RunDir(tmp_path / "r"),
                      dataset_report={"images": 6, "suggested_steps": 8, "steps_per_epoch": 3, "batch_size": 2})
    train(job, RunControl(None), events.append)
    started = next(e for e in events if e.kind == "started")
    assert started.total_steps == 4 and started.config["train"]["epochs"] == 2
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3, 4]
    report = next(e for e in events if e.kind == "dataset_report").report
    assert (report["batch_size"], report["steps_per_epoch"], report["train_steps"], report["epochs"]) == (4, 2, 4, 2)
    assert report["suggested_epochs"] == 4.0


def test_a_steps_run_reports_its_length_in_epochs():
    report = run_length_report({"suggested_steps": 30}, SyntheticData(items=6), config(0, batch=2, steps=9))
    assert (report["steps_per_epoch"], report["train_steps"], report["epochs"]) == (3, 9, 3.0)
