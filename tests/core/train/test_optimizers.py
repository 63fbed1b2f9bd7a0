"""Every `optim.optimizer` value runs: it moves a LoRA toward a planted low-rank target, its state
survives the checkpoint file format (core/train/state_io.py) so the next steps are bit for bit those
of an uninterrupted run, and a missing package is an error that names the pip command.

The LoRA here is 8 x 512 (4096 values per matrix): the size from which bitsandbytes keeps 8-bit
state, so adamw8bit is tested on its 8-bit path (asserted), not on its fp32 fallback for small tensors.
"""

import copy
import dataclasses
import re

import pytest
import torch

from flux_lora_lab.core.config import ConfigError, TrainConfig
from flux_lora_lab.core.sections import OptimizerSettings
from flux_lora_lab.core.train import optim
from flux_lora_lab.core.train.state_io import load_state, save_state

RANK, WIDTH = 8, 512
# Peak rates of the optimizers at which this problem trains (Lion's sign updates want ~10x less than Adam).
RATES = {"adamw": 3e-3, "adamw8bit": 3e-3, "adafactor": 3e-3, "prodigy": 1.0, "lion": 3e-3,
         "adamw_schedulefree": 1e-2}


def lora_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"lora_A": (torch.randn(RANK, WIDTH, generator=g) / WIDTH**0.5).requires_grad_(),
            "lora_B": torch.zeros(WIDTH, RANK).requires_grad_()}


def target_delta():
    g = torch.Generator().manual_seed(99)
    return torch.randn(WIDTH, 2, generator=g) @ torch.randn(2, WIDTH, generator=g) / WIDTH**0.5


def loss_fn(params, step, delta):
    x = torch.randn(64, WIDTH, generator=torch.Generator().manual_seed(1000 + step))
    return (x @ params["lora_A"].T @ params["lora_B"].T - x @ delta.T).pow(2).mean()


def settings(name, **extra):
    return OptimizerSettings(optimizer=name, learning_rate=RATES[name], warmup_steps=2, **extra)


def train(params, opt, sched, steps, start=0, delta=None):
    delta = target_delta() if delta is None else delta
    losses = []
    for step in range(start, start + steps):
        opt.zero_grad()
        loss = loss_fn(params, step, delta)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def test_the_table_is_the_settings_choices():
    choices = dict(dataclasses.fields(OptimizerSettings)[0].metadata)["choices"]
    assert tuple(optim.OPTIMIZERS) == choices
    assert optim.available_optimizers() == list(optim.OPTIMIZERS)  # requirements.txt installs every one


def test_every_optional_optimizer_is_a_requirement_of_the_pack():
    """ComfyUI Manager installs requirements.txt, the registry pyproject's dependencies: both list them."""
    import tomllib
    from pathlib import Path

    root = Path(optim.__file__).resolve().parents[2]
    lines = [line.split("#")[0].strip() for line in (root / "requirements.txt").read_text().splitlines()]
    listed = {line for line in lines if line}
    assert set(tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]) == listed
    names = {re.split(r"[<>=;\s]", line, maxsplit=1)[0] for line in listed}
    assert {spec.package for spec in optim.OPTIMIZERS.values() if spec.package} <= names


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_each_optimizer_moves_the_lora_toward_the_target(name):
    params = lora_params()
    before = loss_fn(params, 10_000, target_delta()).item()  # a held-out batch: batches vary by ~30 %
    s = settings(name)
    opt = optim.build_optimizer(s, list(params.values()))
    train(params, opt, optim.build_scheduler(opt, s, 60), 60)
    with optim.averaged_weights_swapped_in(opt):
        after = loss_fn(params, 10_000, target_delta()).item()
    assert after < 0.3 * before, f"{name}: held-out loss {before:.4f} -> {after:.4f}"
    if name == "adamw8bit":
        state = opt.state[params["lora_A"]]
        assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_state_saved_to_a_file_resumes_bit_for_bit(name, tmp_path):
    s = settings(name, lr_scheduler="constant" if name == "adamw_schedulefree" else "cosine")
    full = lora_params()
    opt = optim.build_optimizer(s, list(full.values()))
    train(full, opt, optim.build_scheduler(opt, s, 8), 8)

    part = lora_params()
    opt = optim.build_optimizer(s, list(part.values()))
    sched = optim.build_scheduler(opt, s, 8)
    train(part, opt, sched, 4)
    with optim.averaged_weights_swapped_in(opt):  # what a checkpoint does before it saves: must not disturb
        pass
    save_state(tmp_path / "state.safetensors", {"opt": opt.state_dict(), "sched": sched.state_dict(),
                                                "params": {k: v.detach() for k, v in part.items()}})
    saved = load_state(tmp_path / "state.safetensors")
    resumed = {k: v.clone().requires_grad_() for k, v in saved["params"].items()}
    opt2 = optim.build_optimizer(s, list(resumed.values()))
    sched2 = optim.build_scheduler(opt2, s, 8)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    train(resumed, opt2, sched2, 4, start=4)
    for k in full:
        assert torch.equal(full[k], resumed[k]), f"{name}: {k} differs after resume"


def test_schedule_free_swaps_in_its_average_and_back_exactly():
    params = lora_params()
    s = settings("adamw_schedulefree")
    opt = optim.build_optimizer(s, list(params.values()))
    train(params, opt, optim.build_scheduler(opt, s, 5), 5)
    live = {k: v.detach().clone() for k, v in params.items()}
    with optim.averaged_weights_swapped_in(opt):
        averaged = params["lora_B"].detach().clone()
    assert not torch.equal(averaged, live["lora_B"])  # x (the average) is not y (where gradients are taken)
    assert all(torch.equal(params[k], live[k]) for k in params)
    assert opt.param_groups[0]["train_mode"]


def test_a_missing_package_names_the_pip_command(monkeypatch):
    fake = dataclasses.replace(optim.OPTIMIZERS["lion"], module="no_such_lion_module", package="lion-pytorch")
    monkeypatch.setitem(optim.OPTIMIZERS, "lion", fake)
    assert "lion" not in optim.available_optimizers()
    with pytest.raises(RuntimeError, match=r"needs the 'lion-pytorch' package.*`pip install lion-pytorch`.*"
                                           r"one this Python has: adamw, adamw8bit, adafactor, prodigy, adamw_schedulefree"):
        optim.build_optimizer(OptimizerSettings(optimizer="lion"), [torch.zeros(2, requires_grad=True)])


def test_lion_at_adams_default_betas_uses_its_own():
    assert OptimizerSettings(optimizer="lion").effective_betas == (0.9, 0.99)
    assert OptimizerSettings(optimizer="lion", betas=(0.95, 0.98)).effective_betas == (0.95, 0.98)
    assert OptimizerSettings(optimizer="adamw").effective_betas == (0.9, 0.999)
    opt = optim.build_optimizer(OptimizerSettings(optimizer="lion"), [torch.zeros(2, requires_grad=True)])
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)


def test_prodigy_takes_the_default_rate_as_one_and_refuses_other_adam_rates():
    assert OptimizerSettings(optimizer="prodigy").effective_learning_rate == 1.0
    assert OptimizerSettings(optimizer="prodigy", learning_rate=0.5).effective_learning_rate == 0.5
    assert OptimizerSettings(optimizer="adamw").effective_learning_rate == 1e-4
    opt = optim.build_optimizer(OptimizerSettings(optimizer="prodigy"), [torch.zeros(2, requires_grad=True)])
    assert opt.param_groups[0]["lr"] == 1.0
    with pytest.raises(ConfigError, match="use 1.0"):
        OptimizerSettings(optimizer="prodigy", learning_rate=2e-4)


def test_schedule_free_refuses_a_decay_schedule_and_an_ema():
    with pytest.raises(ConfigError, match="optim.lr_scheduler.*use 'constant'"):
        OptimizerSettings(optimizer="adamw_schedulefree", lr_scheduler="cosine")
    with pytest.raises(ConfigError, match="train.ema.*turn train.ema off"):
        TrainConfig.from_dict({"optim": {"optimizer": "adamw_schedulefree"}, "train": {"ema": True}})


def test_state_file_keeps_bitsandbytes_quantisation_state(tmp_path):
    params = lora_params()
    opt = optim.build_optimizer(settings("adamw8bit"), list(params.values()))
    train(params, opt, optim.build_scheduler(opt, settings("adamw8bit"), 2), 2)
    state = copy.deepcopy(opt.state_dict())
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    quant = back["state"][0]["__bnb_optimizer_quant_state__"]
    assert quant["state1"].dtype == torch.uint8
    assert torch.equal(quant["state1"], state["state"][0]["__bnb_optimizer_quant_state__"]["state1"])
