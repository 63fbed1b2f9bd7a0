"""Block swap is exact and follows its schedule: with the base weights of the last single blocks in
system memory, brought in per block in the forward pass and again for the recomputation in the
backward pass, training gives the LoRA of the same run without swapping, bit for bit.

On CPU the "device" and system memory are one, so what is proven is the schedule and the exactness
(the CUDA side stream's overlap is for the GPU script to measure).
"""

import pytest
import torch
from safetensors.torch import load_file

from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.model import lora
from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import SyntheticData, adopt, tiny_owner


def config(swap: int, checkpointing: bool) -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 4, "alpha": 2.0, "dropout": 0.1, "targets": "all"},
        "optim": {"learning_rate": 5e-3, "gradient_accumulation": 2},
        "train": {"steps": 4, "batch_size": 2, "mixed_precision": "no", "gradient_checkpointing": checkpointing,
                  "blocks_to_swap": swap},
        "run": {"name": "swap", "save_every": 0, "sample_every": 0},
    })


def trained(folder, swap, checkpointing, variant="flux1-dev"):
    adapter = adopt(tiny_owner(variant, seed=3), checkpointing=checkpointing)
    job = TrainingJob(config(swap, checkpointing), adapter, SyntheticData(items=4, channels=adapter.latent_channels,
                                                                           pooled=adapter.pooled_dim is not None), RunDir(folder))
    return load_file(str(train(job, RunControl(None), lambda e: None))), adapter


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [True, False])
def test_swapping_blocks_trains_the_same_lora(tmp_path, checkpointing):
    plain, _ = trained(tmp_path / "plain", 0, checkpointing)
    swapped, adapter = trained(tmp_path / "swapped", 2, checkpointing)
    assert adapter.module.swap is not None and len(adapter.module.swap.blocks) == 2
    assert plain.keys() == swapped.keys()
    assert all(torch.equal(plain[k], swapped[k]) for k in plain)


def test_the_schedule_brings_each_block_in_for_its_forward_and_its_recomputation():
    adapter = adopt(tiny_owner("flux1-dev", seed=3), checkpointing=False)
    lora.attach_lora(adapter.module, LoraSettings(rank=2, targets="all"))
    for _, p in lora.trainable_parameters(adapter.module):
        p.requires_grad_(True)
    adapter.swap_blocks(2, torch.device("cpu"))
    swap = adapter.module.swap
    log = []
    for action, method in (("fetch", swap._fetch), ("evict", swap._evict)):
        setattr(swap, f"_{action}", lambda i, action=action, method=method: (log.append((action, i)), method(i))[1])
    masters = {(id(m), n): p for i in range(2) for m, n, p in swap._masters[i]}
    assert masters and all(not p.requires_grad for p in masters.values())

    data = SyntheticData(items=2)
    batch = data.batch(0, 2, 0)
    out = adapter.predict(batch.latents, torch.tensor([0.3, 0.7]), batch.context, batch.pooled, 3.5)
    assert log == [("fetch", 0), ("evict", 0), ("fetch", 1), ("evict", 1)]
    out.square().mean().backward()
    assert log[4:] == [("fetch", 1), ("evict", 1), ("fetch", 0), ("evict", 0)], "recomputed in reverse order"
    for (module_id, name), master in masters.items():
        module = next(m for m in adapter.module.modules() if id(m) == module_id)
        assert module._parameters[name] is master, "outside its run a block holds its system-memory master"
    grads = [p.grad for _, p in lora.trainable_parameters(adapter.module)]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_more_blocks_than_the_model_has_are_refused():
    adapter = adopt(tiny_owner("flux1-dev", seed=3), checkpointing=False)
    with pytest.raises(ValueError, match="blocks_to_swap=3 must be between 0 and the 2 single blocks"):
        adapter.swap_blocks(3, torch.device("cpu"))
