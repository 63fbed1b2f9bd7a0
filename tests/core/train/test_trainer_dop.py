"""DOP (seed 002): with it on, prompts without the trigger stay close to the base model, while prompts
with the trigger still move toward what is taught.

Two runs from the same seed on the same data teach the teacher's behaviour for trigger prompts; the
only difference is dop.enabled. The DOP twin of each prompt has the trigger token replaced by a class
token (what core/data builds from the class word).
"""

import pytest
import torch

from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.model import lora
from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, Taught, adopt, planted_teacher, tiny_owner

STEPS = 200


def dop_config(enabled: bool) -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 4, "targets": "attention"},
        "optim": {"learning_rate": 1e-2, "lr_scheduler": "linear", "weight_decay": 0.0, "max_grad_norm": 0.0},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform"},
        "dop": {"enabled": enabled, "class_word": "person", "multiplier": 1.0, "every_n_steps": 1},
        "train": {"steps": STEPS, "batch_size": 4, "mixed_precision": "no", "gradient_checkpointing": False},
        "run": {"name": "dop", "trigger": "ohwx", "save_every": 0, "sample_every": 0},
    })


def distances(student, teacher, data):
    """Mean squared distance, on held-out noise and sigmas, of trigger outputs to the teacher and of
    no-trigger (class-word) outputs to the base model."""
    g = torch.Generator().manual_seed(4242)
    x, context, pooled = data.latents, data.context, data.pooled
    sigmas, noise = torch.rand(x.shape[0], generator=g), torch.randn(x.shape, generator=g)
    s = sigmas.view(-1, 1, 1, 1)
    noisy = (1 - s) * x + s * noise
    with torch.no_grad():
        trigger = student.predict(noisy, sigmas, context, pooled, 1.0)
        no_trigger = student.predict(noisy, sigmas, data.dop_context, data.dop_pooled, 1.0)
        with lora.lora_disabled(student.module):
            base_trigger = student.predict(noisy, sigmas, context, pooled, 1.0)
            base_no_trigger = student.predict(noisy, sigmas, data.dop_context, data.dop_pooled, 1.0)
        taught = teacher.predict(noisy, sigmas, context, pooled, 1.0)
    mse = lambda a, b: (a - b).square().mean().item()  # noqa: E731
    return {"trigger_to_teacher": mse(trigger, taught), "base_to_teacher": mse(base_trigger, taught),
            "no_trigger_drift": mse(no_trigger, base_no_trigger)}


@pytest.mark.slow
def test_dop_keeps_no_trigger_outputs_near_the_base(tmp_path):
    owner = tiny_owner("flux1-dev", seed=5)
    targets = lora.target_names(adopt(owner).module, LoraSettings(rank=4, targets="attention"))
    teacher = planted_teacher(owner, targets, rank=2, scale=0.3)
    data = SyntheticData(items=16)
    results = {}
    for enabled in (False, True):
        student = adopt(owner)
        train(TrainingJob(dop_config(enabled), Taught(student, teacher, data), data, RunDir(tmp_path / str(enabled))),
              RunControl(None), lambda e: None)
        results[enabled] = distances(student, teacher, data)
    print(f"DOP off: {results[False]}\nDOP on:  {results[True]}")
    off, on = results[False], results[True]
    # Without DOP the change leaks into prompts without the trigger; with DOP it leaks far less.
    assert on["no_trigger_drift"] < 0.5 * off["no_trigger_drift"]
    # With DOP the trigger prompts still learn: most of the way from the base to the teacher.
    assert on["trigger_to_teacher"] < 0.5 * on["base_to_teacher"]


def test_dop_every_n_steps_runs_the_preservation_pass_on_every_nth_step_only(tmp_path):
    """dop.every_n_steps = 3 over 7 steps: the class-word pass (a frozen prior, then the LoRA's
    prediction) follows the main pass on steps 3 and 6 only."""
    data = SyntheticData(items=4)
    class_token = data.dop_context[0, 0]
    config = dop_config(True).with_overrides({"dop": {"every_n_steps": 3}, "train": {"steps": 7, "batch_size": 1}})
    student = adopt(tiny_owner("flux1-dev", seed=5))
    passes, predict = [], student.predict

    def recording(latents, sigmas, context, pooled=None, guidance=None):
        passes.append("dop" if torch.equal(context[0, 0], class_token) else "main")
        return predict(latents, sigmas, context, pooled, guidance)

    student.predict = recording
    train(TrainingJob(config, student, data, RunDir(tmp_path / "every3")), RunControl(None), lambda e: None)
    steps = " ".join(passes).replace("main dop dop", "main+dop").split()
    assert steps == ["main", "main", "main+dop", "main", "main", "main+dop", "main"]
