"""state_io: optimizer / scheduler / RNG state through safetensors + JSON, restored exactly."""

import math

import numpy as np
import pytest
import torch

from flux_lora_lab.core.train import state_io


def _model_and_opt(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    return model, opt, sched


def _step(model, opt, sched, x):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    sched.step()


def test_adamw_round_trip_gives_identical_next_step(tmp_path):
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    model, opt, sched = _model_and_opt()
    for _ in range(3):
        _step(model, opt, sched, x)
    state_io.save_state(tmp_path / "optimizer_state.safetensors",
                        {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "model": model.state_dict()})
    _step(model, opt, sched, x)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, opt2, sched2 = _model_and_opt(seed=5)
    loaded = state_io.load_state(tmp_path / "optimizer_state.safetensors")
    assert set(loaded["optimizer"]["state"]) == {0, 1, 2, 3}  # int keys stay int
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    _step(model2, opt2, sched2, x)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_types_survive_exactly():
    value = {
        "f": 0.1, "nan": float("nan"), "inf": -math.inf, "i": 2**70, "b": True, "n": None, "s": "x/y",
        "t": (1, [2.5, "z"]), 3: torch.tensor(7.0), "bf16": torch.randn(3, dtype=torch.bfloat16),
        "nd": np.arange(6, dtype=np.uint32).reshape(2, 3), "npf": np.float32(1.5), "bytes": b"\x00\xff",
        "empty": {}, "a": {"b": torch.zeros(1)}, "a/b": torch.ones(1),
    }
    tensors, tree = state_io.flatten_state(value)
    back = state_io.unflatten_state(tensors, tree)
    assert back["f"] == 0.1 and math.isnan(back["nan"]) and back["inf"] == -math.inf and back["i"] == 2**70
    assert back["t"] == (1, [2.5, "z"]) and back["b"] is True and back["n"] is None and back["s"] == "x/y"
    assert torch.equal(back[3], value[3]) and back["bf16"].dtype == torch.bfloat16
    assert torch.equal(back["bf16"], value["bf16"])
    assert back["nd"].dtype == np.uint32 and (back["nd"] == value["nd"]).all()
    assert isinstance(back["npf"], np.float32) and back["bytes"] == b"\x00\xff" and back["empty"] == {}
    assert torch.equal(back["a"]["b"], torch.zeros(1)) and torch.equal(back["a/b"], torch.ones(1))
    with pytest.raises(TypeError, match="set"):
        state_io.flatten_state({"x": {1, 2}})


def test_foreign_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(ValueError, match="not a Flux LoRA Lab state file"):
        state_io.load_state(tmp_path / "lora.safetensors")
