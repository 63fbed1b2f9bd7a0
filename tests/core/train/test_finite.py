"""core/train/finite.py through the real loop: a NaN stops the run before the update, keeps the last good
checkpoint, and no LoRA file with a non-finite value is ever written."""

import math

import pytest
import torch
from safetensors.torch import load_file

from flux_lora_lab.core.model import lora
from flux_lora_lab.core.train.checkpoint import LoraFileInfo
from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.train.finite import NonFiniteError, likely_cause
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner

BAD_STEP = 3


def config(**optim) -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 2, "targets": "attention"},
        "optim": {"learning_rate": 1e-3, **optim},
        "train": {"steps": 6, "mixed_precision": "no", "gradient_checkpointing": False},
        "run": {"name": "nan", "save_every": 2, "sample_every": 0},
    })


def run_with(data, folder, cfg, adapter=None):
    events = []
    adapter = adapter or adopt(tiny_owner("flux1-dev", seed=2))
    job = TrainingJob(cfg, adapter, data, RunDir(folder))
    with pytest.raises(NonFiniteError) as failure:
        train(job, RunControl(None), events.append)
    return str(failure.value), events


def assert_only_good_files(folder):
    run_dir = RunDir(folder)
    assert not run_dir.final_lora_path.exists(), "a final LoRA was written"
    latest = run_dir.latest_checkpoint()
    assert latest.step == 2, "the checkpoint before the bad step is the newest"
    for tensor in load_file(str(latest.file("lora.safetensors"))).values():
        assert torch.isfinite(tensor).all()


def test_a_nan_latent_stops_the_run_at_its_step_and_keeps_the_checkpoint(tmp_path):
    data = SyntheticData(items=6)
    data.latents[BAD_STEP - 1] = float("nan")  # batch(step - 1) is step's batch
    message, events = run_with(data, tmp_path / "run", config())
    assert message.startswith(f"step {BAD_STEP}: the loss is not a finite number (loss nan")
    assert "checkpoint of step 2" in message and "nothing non-finite was saved" in message
    assert [e.step for e in events if e.kind == "step"] == [1, 2], "the bad step is not reported as trained"
    assert_only_good_files(tmp_path / "run")


def test_an_infinite_gradient_with_a_finite_loss_stops_the_run_too(tmp_path, monkeypatch):
    adapter = adopt(tiny_owner("flux1-dev", seed=2))
    calls = []

    def poison(grad):
        calls.append(1)
        return grad * math.inf if len(calls) == BAD_STEP else grad

    original_attach = lora.attach_lora

    def attach_and_poison(module, spec, **options):
        original_attach(module, spec, **options)
        next(p for _, p in lora.trainable_parameters(module)).register_hook(poison)

    monkeypatch.setattr(lora, "attach_lora", attach_and_poison)
    message, _ = run_with(SyntheticData(items=6), tmp_path / "run", config(), adapter)
    assert message.startswith(f"step {BAD_STEP}: the gradient is not a finite number") and "gradient norm inf" in message
    assert_only_good_files(tmp_path / "run")


def test_the_likely_cause_names_the_setting_to_change():
    assert "optim.learning_rate 0.05 is high" in likely_cause(config(learning_rate=5e-2))
    assert "optim.max_grad_norm 0" in likely_cause(config(max_grad_norm=0.0))
    assert "training_dtype fp32" in likely_cause(config())


def test_no_lora_file_is_written_with_a_non_finite_weight(tmp_path):
    weights = {"double_blocks.0.img_attn.qkv": lora.LoraWeights(torch.zeros(2, 8), torch.full((24, 2), math.nan), 2.0)}
    target = tmp_path / "lora.safetensors"
    with pytest.raises(NonFiniteError, match="48 non-finite values in double_blocks.0.img_attn.qkv.up"):
        LoraFileInfo("flux1", "", "", {}).write(target, weights, step=1)
    assert not target.exists()
