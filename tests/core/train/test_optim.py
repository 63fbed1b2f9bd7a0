"""Optimizers, LR schedules and EMA: exact values at key steps and exact resume."""

import copy
import math

import pytest
import torch

from flux_lora_lab.core.train import optim
from flux_lora_lab.core.config import OptimizerSettings


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.lora_A": torch.randn(4, 8, generator=g).requires_grad_(),
            "a.lora_B": torch.zeros(8, 4).requires_grad_()}


def loss_fn(params, step):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(3, 8, generator=g)
    y = x @ params["a.lora_A"].T @ params["a.lora_B"].T
    return (y - x).pow(2).mean()


def train(params, opt, sched, steps, start=0, ema=None):
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_fn(params, step).backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update()


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_schedule_values_at_key_steps(schedule):
    total, warm = 110, 10
    m = [optim.lr_multiplier(s, total, warm, schedule) for s in range(total)]
    assert m[0] == pytest.approx(0.1) and m[4] == pytest.approx(0.5) and m[9] == pytest.approx(1.0)
    assert m[10] == pytest.approx(1.0)  # first step after warmup: the peak
    expected_mid = {"constant": 1.0, "linear": 0.5, "cosine": 0.5}[schedule]
    assert m[60] == pytest.approx(expected_mid)  # halfway through the decay
    expected_q = {"constant": 1.0, "linear": 0.75, "cosine": 0.5 * (1 + math.cos(math.pi / 4))}[schedule]
    assert m[35] == pytest.approx(expected_q)
    assert m[-1] == pytest.approx({"constant": 1.0, "linear": 0.01, "cosine": 0.5 * (1 + math.cos(math.pi * 0.99))}[schedule])
    assert all(b <= a + 1e-12 for a, b in zip(m[10:], m[11:]))  # never rises after warmup


def test_scheduler_drives_optimizer_lr_and_no_warmup_starts_at_peak():
    p = torch.zeros(3, requires_grad=True)
    settings = OptimizerSettings(learning_rate=1e-3, lr_scheduler="linear", warmup_steps=4)
    opt = optim.build_optimizer(settings, [p])
    sched = optim.build_scheduler(opt, settings, total_steps=14)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert lrs[9] == pytest.approx(5e-4) and lrs[13] == pytest.approx(1e-4)
    assert optim.lr_multiplier(0, 10, 0, "cosine") == 1.0


def test_adamw_is_fused_on_cpu_and_matches_the_reference_math():
    params = make_params()
    settings = OptimizerSettings(learning_rate=1e-2, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6)
    opt = optim.build_optimizer(settings, list(params.values()))
    assert opt.param_groups[0]["fused"] is True
    ref_params = copy.deepcopy(params)
    ref = torch.optim.AdamW(list(ref_params.values()), lr=1e-2, weight_decay=0.1, betas=(0.8, 0.9),
                            eps=1e-6, foreach=False)
    for step in range(3):
        for o, ps in ((opt, params), (ref, ref_params)):
            o.zero_grad()
            loss_fn(ps, step).backward()
            o.step()
    for k in params:
        torch.testing.assert_close(params[k], ref_params[k], rtol=1e-6, atol=1e-7)


def test_param_groups_and_empty_params():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = optim.build_optimizer(OptimizerSettings(), [{"params": [a]}, {"params": [b], "lr": 5e-5}])
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 5e-5]
    with pytest.raises(ValueError, match="no parameters"):
        optim.build_optimizer(OptimizerSettings(), [])


def test_adafactor_moves_zero_initialised_lora_b_by_the_learning_rate():
    # torch's default Adafactor would move a zero tensor by lr * 1e-3 per step (relative step size)
    params = make_params()
    opt = optim.build_optimizer(OptimizerSettings(optimizer="adafactor", learning_rate=1e-4), list(params.values()))
    assert isinstance(opt, torch.optim.Adafactor)
    for step in range(2):
        before = params["a.lora_B"].detach().clone()
        opt.zero_grad()
        loss_fn(params, step).backward()
        opt.step()
        rms = (params["a.lora_B"] - before).pow(2).mean().sqrt().item()
        assert rms == pytest.approx(1e-4, rel=0.05)


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_optimizer_and_scheduler_state_round_trip_gives_identical_next_steps(name):
    settings = OptimizerSettings(optimizer=name, learning_rate=1e-2, lr_scheduler="cosine", warmup_steps=2)
    # uninterrupted: 6 steps
    full = make_params()
    opt = optim.build_optimizer(settings, list(full.values()))
    train(full, opt, optim.build_scheduler(opt, settings, 6), 6)
    # interrupted after 3: save states, rebuild everything fresh, load, continue 3
    part = make_params()
    opt = optim.build_optimizer(settings, list(part.values()))
    sched = optim.build_scheduler(opt, settings, 6)
    train(part, opt, sched, 3)
    saved = copy.deepcopy({"opt": opt.state_dict(), "sched": sched.state_dict(),
                           "params": {k: v.detach().clone() for k, v in part.items()}})
    resumed = {k: v.clone().requires_grad_() for k, v in saved["params"].items()}
    opt2 = optim.build_optimizer(settings, list(resumed.values()))
    sched2 = optim.build_scheduler(opt2, settings, 6)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    train(resumed, opt2, sched2, 3, start=3)
    for k in full:
        assert torch.equal(full[k], resumed[k]), k  # bit-identical


def test_ema_math_with_warmup():
    p = torch.zeros(3)
    ema = optim.LoraEMA([("w", p)], decay=0.9)
    expected = torch.zeros(3, dtype=torch.float64)
    for n in range(90):
        p.fill_(float(n + 1))
        d = min(0.9, (1 + n) / (10 + n))
        assert ema.current_decay() == pytest.approx(d)
        ema.update()
        expected = d * expected + (1 - d) * (n + 1)
    torch.testing.assert_close(ema.shadow["w"], expected.float(), rtol=1e-6, atol=1e-6)
    assert ema.current_decay() == 0.9  # warmup over once (1 + n) / (10 + n) > 0.9, i.e. n > 81


def test_ema_swap_in_and_state_round_trip():
    params = make_params()
    ema = optim.LoraEMA(params.items(), decay=0.99)
    with torch.no_grad():
        params["a.lora_B"].add_(1.0)
    ema.update()  # first update uses d = 0.1
    live = {k: v.detach().clone() for k, v in params.items()}
    with ema.swapped_in():
        torch.testing.assert_close(params["a.lora_B"], torch.full((8, 4), 0.9))
    for k in params:
        assert torch.equal(params[k], live[k])  # restored exactly
    state = copy.deepcopy(ema.state_dict())
    other = optim.LoraEMA(make_params(seed=1).items(), decay=0.5)
    other.load_state_dict(state)
    assert other.num_updates == 1 and other.decay == 0.99
    for k in ema.shadow:
        assert torch.equal(other.shadow[k], ema.shadow[k])
    with pytest.raises(ValueError, match="missing"):
        optim.LoraEMA([("x", torch.zeros(2))], 0.9).load_state_dict(state)
