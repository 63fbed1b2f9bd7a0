"""core/train/evaluation.py and the trainer's eval loss: fixed samples, noise levels and noise, so the
score moves only when the LoRA does; scored before step 1 (the base) and at every checkpoint, kept
across a resume."""

import json

import pytest
import torch

from flux_lora_lab.core import seeding
from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.model import lora
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.train.evaluation import eval_loss, eval_sigmas
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, Taught, adopt, planted_teacher, tiny_owner


def config(steps: int, save_every: int = 5) -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 4, "targets": "attention"},
        "optim": {"learning_rate": 2e-2, "weight_decay": 0.0, "max_grad_norm": 0.0},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform", "guidance": 1.0},
        "train": {"steps": steps, "batch_size": 4, "mixed_precision": "no", "gradient_checkpointing": False},
        "run": {"name": "eval", "save_every": save_every, "sample_every": 0, "eval_timesteps": 3},
    })


def test_noise_levels_are_evenly_inside_the_interval():
    torch.testing.assert_close(eval_sigmas(4), torch.tensor([0.2, 0.4, 0.6, 0.8]))
    with pytest.raises(ValueError, match="run.eval_timesteps"):
        eval_sigmas(0)


def test_eval_loss_is_the_mean_flow_loss_over_samples_and_levels():
    """Against the flow-matching loss written out by hand for each (sample, sigma)."""
    adapter = adopt(tiny_owner("flux1-dev", seed=1))
    data = SyntheticData(items=3)

    def predict(noisy, sigmas, context, pooled):
        return adapter.predict(noisy, sigmas, context, pooled, 1.0)

    expected = []
    with torch.no_grad():
        for i in range(3):
            batch = data.batch(i, 1, 0)
            noise = torch.randn((2, *batch.latents.shape[1:]), generator=seeding.generator(0, "eval noise", i))
            for k, sigma in enumerate((1 / 3, 2 / 3)):
                x = batch.latents[0]
                noisy = (1 - sigma) * x + sigma * noise[k]
                pred = predict(noisy[None], torch.tensor([sigma]), batch.context, batch.pooled)[0]
                expected.append((pred - (noise[k] - x)).pow(2).mean().item())
    score = eval_loss(predict, data, 2, torch.device("cpu"))
    assert score == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert eval_loss(predict, data, 2, torch.device("cpu")) == score, "fixed noise: the same model scores the same"


def _run(tmp_path, steps, folder="run"):
    owner = tiny_owner("flux1-dev", seed=3)
    student = adopt(owner)
    targets = lora.target_names(student.module, LoraSettings(rank=4, targets="attention"))
    teacher = planted_teacher(owner, targets, rank=2, scale=0.3)
    data = SyntheticData(items=8)
    events = []
    train(TrainingJob(config(steps), Taught(student, teacher, data), data, RunDir(tmp_path / folder), eval_data=data),
          RunControl(None), events.append)
    return [(e.step, e.loss) for e in events if e.kind == "eval_loss"], tmp_path / folder


def test_the_run_scores_the_base_and_every_checkpoint_and_the_score_falls_as_it_learns(tmp_path):
    """The eval set is the taught data, so its loss is the student's distance to the teacher."""
    evals, run = _run(tmp_path, 15)
    assert [s for s, _ in evals] == [0, 5, 10, 15]
    losses = [v for _, v in evals]
    assert losses[-1] < 0.85 * losses[0], losses  # measured: 0.134 -> 0.099 in 15 steps (fixed noise: no jitter)
    state = json.loads(next(run.glob("checkpoint_000015/training_state.json")).read_text())
    assert [tuple(p) for p in state["state"]["eval_losses"]] == evals
    assert "eval-point" in (run / "learning_curve.svg").read_text()


def test_a_resumed_run_keeps_its_eval_history_and_scores_as_if_never_stopped(tmp_path):
    whole, _ = _run(tmp_path, 15, "whole")
    _run(tmp_path, 10, "split")
    resumed, run = _run(tmp_path, 15, "split")
    assert [s for s, _ in resumed] == [15], "a resumed run scores only its new checkpoints"
    state = json.loads((run / "checkpoint_000015" / "training_state.json").read_text())
    history = [tuple(p) for p in state["state"]["eval_losses"]]
    assert [s for s, _ in history] == [0, 5, 10, 15]
    for (_, a), (_, b) in zip(history, whole):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)
