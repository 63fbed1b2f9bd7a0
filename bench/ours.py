"""Drive our engine (`core.train.trainer.train`) on the same MODEL and data, and time its steps.

The clock is the trainer's own Step event, emitted once per optimizer step after the update: the
interval between two events is one whole step, as with the native node's loss callback. Settings
are matched to the native node: AdamW (torch, lr and weight decay as the node's), MSE on uniformly
drawn noise levels, no clipping, no EMA/DOP, no checkpoints or previews during the timed steps,
guidance 1.0, and fp32 or bf16 autocast as the native node's training_dtype.

Targets: the native node trains every linear of the model; the closest preset is `all` with
`train_modulation` (every linear inside the double and single blocks). The embedders (img_in,
txt_in, time/vector/guidance) and the final layer are not targets of ours, and ours trains no bias
deltas; report.py states the parameter counts of both.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from .workload import Pool, Workload


class PoolData:
    """`TrainingData` over the pool: batch(step) cycles through the images in order (the seed is not used)."""

    def __init__(self, pool: Pool):
        self.pool = pool

    def batch(self, step: int, batch_size: int, seed: int):
        n = self.pool.latents.shape[0]
        index = [(step * batch_size + i) % n for i in range(batch_size)]
        return SimpleNamespace(latents=self.pool.latents[index], context=self.pool.context[index],
                               pooled=self.pool.pooled[index], loss_mask=None, dop_context=None, dop_pooled=None,
                               loss_weights=None)


def config_for(workload: Workload, steps: int, checkpointing: bool, compile: bool = False):
    from flux_lora_lab.core.config import TrainConfig

    return TrainConfig.from_dict({
        "lora": {"rank": workload.rank, "alpha": 1.0, "targets": "all", "train_modulation": True},
        "optim": {"optimizer": "adamw", "learning_rate": workload.learning_rate,
                  "weight_decay": workload.weight_decay, "max_grad_norm": 0.0},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform", "guidance": 1.0},
        "train": {"steps": steps, "batch_size": workload.batch_size, "seed": workload.seed,
                  "mixed_precision": "bf16" if workload.precision == "bf16" else "no",
                  "gradient_checkpointing": checkpointing, "compile": "on" if compile else "off"},
        "run": {"name": "bench", "save_every": 0, "sample_every": 0},
    })


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def auto_interval(workload: Workload, owner) -> tuple[int, str]:
    """What the memory plan picks for this run with the checkpoint interval on auto
    (core/train/memory_plan.choose over the base as loaded): the interval and the plan's reason.
    Budget: the memory available now plus the base weights, which are already resident."""
    from flux_lora_lab.core.model import lora
    from flux_lora_lab.core.model.adapter import FluxTrainingAdapter
    from flux_lora_lab.core.lora_settings import LoraSettings
    from flux_lora_lab.core.train import memory_plan

    tree = FluxTrainingAdapter.adopt(owner, checkpointing=False).module
    shape = memory_plan.shape_of(tree, "flux1", 4.0)
    names = lora.target_names(tree, LoraSettings(rank=workload.rank, targets="all", train_modulation=True))
    run = memory_plan.RunShape(quantization="none", compute="bf16" if workload.precision == "bf16" else "fp32",
                               lora_params=memory_plan.lora_parameter_count(tree, names, workload.rank),
                               optimizer="adamw", ema=False, batch=workload.batch_size,
                               tokens=workload.image_tokens + workload.text_tokens, checkpoint_every=None)
    budget = _mem_available() + shape.block_weight_bytes + shape.other_bytes
    choice = memory_plan.choose(shape, run, {"none": budget}, quantizations=("none",))
    if choice is None:
        raise RuntimeError(f"the memory plan finds no checkpoint interval that fits {budget / 2**30:.1f} GiB")
    return choice.run.checkpoint_every, choice.reason


def run_ours(workload: Workload, pool: Pool, patcher, steps: int, checkpointing) -> dict:
    """Train `steps` steps with our engine on `patcher`'s diffusion model; step end times and counts.
    `checkpointing`: True (every block), False, "auto" (the interval `auto_interval` picks), or
    "compile" (none, with train.compile on: the first step then includes the compile)."""
    from flux_lora_lab.core.model import lora
    from flux_lora_lab.core.model.adapter import FluxTrainingAdapter
    from flux_lora_lab.core.run.control import RunControl
    from flux_lora_lab.core.run.rundir import RunDir
    from flux_lora_lab.core.train.trainer import TrainingJob, train

    owner = patcher.model.diffusion_model
    compile = checkpointing == "compile"
    checkpointing = False if compile else checkpointing
    every, reason = auto_interval(workload, owner) if checkpointing == "auto" else (int(checkpointing), None)
    checkpointing = every > 0
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=checkpointing, checkpoint_every=max(every, 1))
    stamps: list[float] = []
    losses: list[float] = []

    def emit(event):
        if event.kind == "step":
            stamps.append(time.process_time())
            losses.append(event.loss)

    with tempfile.TemporaryDirectory(prefix="fluxlab-bench-") as folder:
        job = TrainingJob(config_for(workload, steps, checkpointing, compile), adapter, PoolData(pool), RunDir(Path(folder) / "run"))
        start = time.process_time()
        train(job, RunControl(None), emit)
        total = time.process_time() - start
    layers = lora.lora_layers(adapter.module)
    params = sum(p.numel() for _, p in lora.trainable_parameters(adapter.module))
    return {"start": start, "stamps": stamps, "total_s": total, "losses": losses,
            "trainable_params": params, "lora_params": params, "bias_and_other_params": 0,
            "lora_layers": len(layers), "checkpoint_every": every, "plan_reason": reason}
