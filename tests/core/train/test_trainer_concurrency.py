"""Runs own their randomness: two runs trained at the same time in one process (ComfyUI runs them as
threads) each give, bit for bit, the LoRA of the same run trained alone, even while other code
reseeds and draws from torch's global generator. Measured before: a max difference of 0.25, because
LoRA init and dropout were seeded through the global `torch.manual_seed`.
"""

import threading

import pytest
import torch
from safetensors.torch import load_file

from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.model import lora
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.model.lora_random import SeededDropout, StepSeed, init_lora, use_seeded_dropout
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.test_trainer_resume import resume_config
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner


def train_to(folder, owner, started: threading.Event | None = None):
    def emit(event):
        if started is not None and event.kind == "step":
            started.set()

    job = TrainingJob(resume_config(), adopt(owner, checkpointing=True), SyntheticData(items=6), RunDir(folder))
    return load_file(str(train(job, RunControl(None), emit)))


@pytest.mark.slow
def test_two_runs_at_once_each_equal_the_run_alone(tmp_path):
    alone = train_to(tmp_path / "alone", tiny_owner("flux1-dev", seed=3))
    results, stop = {}, threading.Event()

    def noisy_neighbour():  # what any other code in the process may do with the global generator
        while not stop.is_set():
            torch.manual_seed(1234)
            torch.rand(64)

    def worker(name, started):
        results[name] = train_to(tmp_path / name, tiny_owner("flux1-dev", seed=3), started)

    starts = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=worker, args=(f"run{i}", starts[i])) for i in range(2)]
    neighbour = threading.Thread(target=noisy_neighbour)
    neighbour.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    stop.set()
    neighbour.join(10)
    assert all(event.is_set() for event in starts) and set(results) == {"run0", "run1"}
    for name, weights in results.items():
        assert weights.keys() == alone.keys()
        assert all(torch.equal(weights[k], alone[k]) for k in alone), f"{name} differs from the run alone"


def test_init_and_dropout_do_not_touch_the_global_generator():
    module = adopt(tiny_owner("flux1-dev", seed=1)).module
    spec = LoraSettings(rank=4, dropout=0.5, targets="attention")
    lora.attach_lora(module, spec)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    init_lora(module, spec, seed=5)
    step_seed = use_seeded_dropout(module, spec.dropout)
    layer = next(iter(lora.lora_layers(module).values()))
    dropout = layer.lora_dropout["default"]
    assert isinstance(dropout, SeededDropout)
    x = torch.ones(2, 3, layer.lora_A["default"].in_features)
    step_seed.value = 11
    first = dropout.train()(x)
    assert torch.equal(dropout(x), first), "the same step and layer draw the same mask (checkpoint recompute)"
    step_seed.value = 12
    assert not torch.equal(dropout(x), first), "another step draws another mask"
    assert 0.3 < (first == 0).float().mean() < 0.7 and torch.allclose(first[first != 0], torch.tensor(2.0))
    assert torch.equal(dropout.eval()(x), x)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("init", ["default", "gaussian"])
def test_init_draws_peft_distributions_from_the_seed(init):
    def drawn(seed):
        module = adopt(tiny_owner("flux1-dev", seed=1)).module
        spec = LoraSettings(rank=4, init=init, targets="attention")
        lora.attach_lora(module, spec)
        init_lora(module, spec, seed)
        return lora.lora_state_dict(module)

    a, b, c = drawn(5), drawn(5), drawn(6)
    for name, w in a.items():
        assert torch.equal(w.down, b[name].down) and not torch.equal(w.down, c[name].down)
        assert torch.count_nonzero(w.up) == 0
        if init == "default":
            assert w.down.abs().max() <= w.down.shape[1] ** -0.5
        else:
            assert abs(w.down.std().item() - 1 / 4) < 0.05


def test_step_seed_is_shared_by_every_layer():
    module = adopt(tiny_owner("flux1-dev", seed=1)).module
    lora.attach_lora(module, LoraSettings(rank=2, dropout=0.1, targets="attention"))
    step_seed = use_seeded_dropout(module, 0.1)
    seeds = {id(layer.lora_dropout["default"].step_seed) for layer in lora.lora_layers(module).values()}
    assert seeds == {id(step_seed)} and isinstance(step_seed, StepSeed)
