"""Resume is exact: stop at step k, resume, finish at N gives the LoRA of an uninterrupted run, bit for bit.

The run exercises everything a resume must restore: AdamW moments, a warmup + cosine schedule, the
EMA shadow, gradient accumulation, LoRA dropout (random per step), balanced timestep sampling and
the data position. Breaking any of them (e.g. not restoring the optimizer) changes the final bits.
"""

import pytest
import torch
from safetensors.torch import load_file

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner

STEPS, STOP_AT = 8, 3


def resume_config() -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 4, "alpha": 2.0, "dropout": 0.1, "targets": "all"},
        "optim": {"learning_rate": 5e-3, "lr_scheduler": "cosine", "warmup_steps": 2,
                  "gradient_accumulation": 2, "max_grad_norm": 1.0},
        "flow": {"timestep_sampling": "balanced", "loss_weighting": "bell_shaped"},
        "train": {"steps": STEPS, "batch_size": 2, "mixed_precision": "no", "gradient_checkpointing": True,
                  "ema": True, "ema_decay": 0.9},
        "run": {"name": "resume", "save_every": 0, "sample_every": 0},
    })


def run(owner, folder, control=None, on_event=None):
    events = []

    def emit(event):
        events.append(event)
        if on_event is not None:
            on_event(event)

    job = TrainingJob(resume_config(), adopt(owner, checkpointing=True), SyntheticData(items=6), RunDir(folder))
    result = train(job, control or RunControl(None), emit)
    return result, events


def raw_lora_after(folder):
    """The trained (non-EMA) weights and the EMA weights users get, from the last checkpoint."""
    checkpoint = RunDir(folder).latest_checkpoint()
    return load_file(str(checkpoint.file("lora.safetensors")))


@pytest.mark.slow
def test_stop_and_resume_equals_uninterrupted_run(tmp_path):
    owner = tiny_owner("flux1-dev", seed=3)
    straight, _ = run(owner, tmp_path / "straight")

    control = RunControl(None)
    stopped_at, first = run(owner, tmp_path / "resumed", control,
                            on_event=lambda e: control.stop() if e.kind == "step" and e.step == STOP_AT else None)
    assert first[-1].kind == "finished" and first[-1].stopped_early and first[-1].step == STOP_AT
    assert RunDir(tmp_path / "resumed").latest_checkpoint().step == STOP_AT
    assert not (tmp_path / "resumed" / "lora_final.safetensors").exists()

    resumed, second = run(owner, tmp_path / "resumed")
    started = next(e for e in second if e.kind == "started")
    assert started.start_step == STOP_AT
    assert [e.step for e in second if e.kind == "step"] == list(range(STOP_AT + 1, STEPS + 1))

    expected, got = load_file(str(straight)), load_file(str(resumed))
    assert expected.keys() == got.keys() and len(expected) > 0
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{key} differs after resume"
    # The file is fp16 (run.save_dtype's default) while the resume state keeps fp32 weights: the
    # bitwise equality above holds because resume reads the latter, never the rounded file.
    checkpoint = RunDir(tmp_path / "resumed").latest_checkpoint()
    assert {t.dtype for k, t in load_file(str(checkpoint.file("lora.safetensors"))).items()
            if not k.endswith(".alpha")} == {torch.float16}
    raw = {k: t for k, t in load_file(str(checkpoint.file("optimizer_state.safetensors"))).items() if "lora_raw" in k}
    assert raw and {t.dtype for t in raw.values()} == {torch.float32}
    # The raw (non-EMA) weights and optimizer state at the end agree too.
    a = load_file(str(RunDir(tmp_path / "straight").latest_checkpoint().file("optimizer_state.safetensors")))
    b = load_file(str(RunDir(tmp_path / "resumed").latest_checkpoint().file("optimizer_state.safetensors")))
    for key in a:
        if not key.startswith("/rng"):
            assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_requeue_of_a_finished_run_trains_nothing_more(tmp_path):
    owner = tiny_owner("flux1-schnell", seed=1)
    final, _ = run(owner, tmp_path / "r")
    before = load_file(str(final))
    again, events = run(owner, tmp_path / "r")
    assert again == final
    assert [e.kind for e in events] == ["started", "info", "finished"]
    assert events[1].message.startswith(f"run 'r' finished at step {STEPS}; to train it further, raise train_steps")
    after = load_file(str(final))
    assert all(torch.equal(before[k], after[k]) for k in before)
