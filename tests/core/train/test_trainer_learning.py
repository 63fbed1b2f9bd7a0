"""Learning is shown, not assumed: the real training loop recovers a planted low-rank change.

Teacher = the tiny real Flux + W += U V^T (rank 2) on every layer the LoRA targets (written into a
copy of the float weights). For quantized bases (qint8, qint4) the teacher is the same quantized base
plus the planted rank-2 branch (the change cannot be written into quantized weights without adding
quantization error of its own). The student is that base with a fresh rank-4 LoRA, trained by
`core.train.trainer.train` to match the teacher's predictions. On held-out inputs (latents, prompts,
noise, sigmas the loop never saw) the error must fall by >= 90 % and the student must reproduce the
teacher.
"""

import pytest
import torch

from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.model import lora, quant
from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import (SyntheticData, Taught, adopt, planted_lora_teacher, planted_teacher,
                                               tiny_owner)

STEPS = 300


def learning_config(steps: int = STEPS) -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 4, "targets": "attention"},
        "optim": {"learning_rate": 2e-2, "lr_scheduler": "linear", "weight_decay": 0.0, "max_grad_norm": 0.0},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform", "guidance": 1.0},
        "train": {"steps": steps, "batch_size": 8, "mixed_precision": "no", "gradient_checkpointing": False},
        "run": {"name": "learn", "save_every": 0, "sample_every": 0},
    })


def held_out(generator_seed: int = 999, items: int = 8):
    g = torch.Generator().manual_seed(generator_seed)
    x = torch.randn(items, 16, 8, 8, generator=g)
    context, pooled = torch.randn(items, 8, 64, generator=g), torch.randn(items, 32, generator=g)
    sigmas, noise = torch.rand(items, generator=g), torch.randn(items, 16, 8, 8, generator=g)
    s = sigmas.view(-1, 1, 1, 1)
    return (1 - s) * x + s * noise, sigmas, context, pooled


@torch.no_grad()
def predictions(student, teacher):
    noisy, sigmas, context, pooled = held_out()
    with lora.lora_disabled(student.module):
        base = student.predict(noisy, sigmas, context, pooled, 1.0)
    return base, student.predict(noisy, sigmas, context, pooled, 1.0), teacher.predict(noisy, sigmas, context, pooled, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "qint8", "qint4"])
def test_training_recovers_planted_low_rank_change(tmp_path, quantize):
    owner = tiny_owner()
    student = adopt(owner)
    if quantize != "none":
        quant.quantize_base(student.module, quantize)
    config = learning_config()
    if quantize == "none":
        targets = lora.target_names(student.module, LoraSettings(rank=4, targets="attention"))
        teacher = planted_teacher(owner, targets, rank=2, scale=0.2)
    else:
        teacher = planted_lora_teacher(owner, quantize, "attention", rank=2, scale=0.2)

    losses = []
    data = SyntheticData(items=64)
    train(TrainingJob(config, Taught(student, teacher, data), data, RunDir(tmp_path / "run")),
          RunControl(None), lambda event: losses.append(event.loss) if event.kind == "step" else None)

    assert len(losses) == STEPS
    assert data.seeds == {config.train.seed}, "the data is drawn with the run's train.seed"
    base, trained, target = predictions(student, teacher)
    before = (base - target).square().mean().item()
    after = (trained - target).square().mean().item()
    recovered = ((trained - target).norm() / (base - target).norm()).item()
    print(f"{quantize}: held-out mse {before:.3e} -> {after:.3e} ({1 - after / before:.1%} lower); "
          f"residual {recovered:.2f} of the planted change; train loss {losses[0]:.3e} -> {losses[-1]:.3e}")
    assert after <= 0.10 * before, f"held-out error fell only {1 - after / before:.1%} (need >= 90 %)"
    assert recovered < 0.3, f"student is still {recovered:.2f} of the planted change away from the teacher"
