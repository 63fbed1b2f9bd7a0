"""Each optional optimizer through the real loop and checkpoint files: stop at step k, resume, finish
at N equals the uninterrupted run bit for bit (the state of bitsandbytes, Prodigy, Lion and
schedule-free AdamW is all in optimizer_state.safetensors), and the saved LoRA is trained.

Rank 16 on the tiny Flux gives LoRA matrices of 4096+ values on the MLPs, so adamw8bit runs its
8-bit state (asserted from the checkpoint), not only its fp32 path for small tensors.
"""

import pytest
import torch
from safetensors.torch import load_file

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner

STEPS, STOP_AT = 6, 2
RATES = {"adamw8bit": 5e-3, "prodigy": 1.0, "lion": 5e-4, "adamw_schedulefree": 5e-3}


def config(name: str) -> TrainConfig:
    schedule_free = name == "adamw_schedulefree"
    return TrainConfig.from_dict({
        "lora": {"rank": 16, "targets": "all"},
        "optim": {"optimizer": name, "learning_rate": RATES[name], "warmup_steps": 1,
                  "lr_scheduler": "constant" if schedule_free else "cosine", "gradient_accumulation": 2},
        "train": {"steps": STEPS, "batch_size": 2, "mixed_precision": "no", "ema": not schedule_free,
                  "ema_decay": 0.9},
        "run": {"name": "opt", "save_every": 0, "sample_every": 0},
    })


def run(name, owner, folder, control=None, stop_at=None):
    control = control or RunControl(None)

    def emit(event):
        if stop_at is not None and event.kind == "step" and event.step == stop_at:
            control.stop()

    job = TrainingJob(config(name), adopt(owner), SyntheticData(items=6), RunDir(folder))
    return train(job, control, emit)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RATES))
def test_optimizer_resumes_bit_for_bit_through_the_checkpoint(name, tmp_path):
    owner = tiny_owner("flux1-dev", seed=3)
    straight = run(name, owner, tmp_path / "straight")
    run(name, owner, tmp_path / "resumed", stop_at=STOP_AT)
    assert RunDir(tmp_path / "resumed").latest_checkpoint().step == STOP_AT
    resumed = run(name, owner, tmp_path / "resumed")

    expected, got = load_file(str(straight)), load_file(str(resumed))
    assert expected.keys() == got.keys() and len(expected) > 0
    ups = [k for k in expected if k.endswith("lora_up.weight")]
    assert ups and any(expected[k].abs().max() > 0 for k in ups), "the LoRA did not move from its zero init"
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{name}: {key} differs after resume"
    state = load_file(str(RunDir(tmp_path / "resumed").latest_checkpoint().file("optimizer_state.safetensors")))
    if name == "adamw8bit":
        assert any(t.dtype == torch.uint8 for t in state.values()), "no 8-bit optimizer state was saved"


def test_prodigy_at_the_default_rate_trains_at_one_and_says_so(tmp_path):
    cfg = config("prodigy").with_overrides({"optim": {"learning_rate": 1e-4, "lr_scheduler": "constant"},
                                           "train": {"steps": 2}})
    events = []
    train(TrainingJob(cfg, adopt(tiny_owner()), SyntheticData(items=6), RunDir(tmp_path / "p")), RunControl(None),
          events.append)
    assert any(e.kind == "info" and "training at 1 (Prodigy finds its own step size" in e.message for e in events)
    assert [e.lr for e in events if e.kind == "step"] == [1.0, 1.0]  # warmup 1 step: at the peak from step 1
