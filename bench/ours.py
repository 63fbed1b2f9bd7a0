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
    """`TrainingData` over the pool: batch(step) cycles through the images in order."""

    def __init__(self, pool: Pool):
        self.pool = pool

    def batch(self, step: int, batch_size: int | None = None):
        size = batch_size or 1
        n = self.pool.latents.shape[0]
        index = [(step * size + i) % n for i in range(size)]
        return SimpleNamespace(latents=self.pool.latents[index], context=self.pool.context[index],
                               pooled=self.pool.pooled[index], loss_mask=None, dop_context=None, dop_pooled=None,
                               loss_weights=None)


def config_for(workload: Workload, steps: int, checkpointing: bool):
    from flux_lora_lab.core.config import TrainConfig

    return TrainConfig.from_dict({
        "lora": {"rank": workload.rank, "alpha": 1.0, "targets": "all", "train_modulation": True},
        "optim": {"optimizer": "adamw", "learning_rate": workload.learning_rate,
                  "weight_decay": workload.weight_decay, "max_grad_norm": 0.0},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform", "guidance": 1.0},
        "train": {"steps": steps, "batch_size": workload.batch_size, "seed": workload.seed,
                  "mixed_precision": "bf16" if workload.precision == "bf16" else "no",
                  "gradient_checkpointing": checkpointing},
        "run": {"name": "bench", "save_every": 0, "sample_every": 0},
    })


def run_ours(workload: Workload, pool: Pool, patcher, steps: int, checkpointing: bool) -> dict:
    """Train `steps` steps with our engine on `patcher`'s diffusion model; step end times and counts."""
    from flux_lora_lab.core.model import lora
    from flux_lora_lab.core.model.adapter import FluxTrainingAdapter
    from flux_lora_lab.core.run.control import RunControl
    from flux_lora_lab.core.run.rundir import RunDir
    from flux_lora_lab.core.train.trainer import TrainingJob, train

    adapter = FluxTrainingAdapter.adopt(patcher.model.diffusion_model, checkpointing=checkpointing)
    stamps: list[float] = []
    losses: list[float] = []

    def emit(event):
        if event.kind == "step":
            stamps.append(time.perf_counter())
            losses.append(event.loss)

    with tempfile.TemporaryDirectory(prefix="fluxlab-bench-") as folder:
        job = TrainingJob(config_for(workload, steps, checkpointing), adapter, PoolData(pool), RunDir(Path(folder) / "run"))
        start = time.perf_counter()
        train(job, RunControl(None), emit)
        total = time.perf_counter() - start
    layers = lora.lora_layers(adapter.module)
    params = sum(p.numel() for _, p in lora.trainable_parameters(adapter.module))
    return {"start": start, "stamps": stamps, "total_s": total, "losses": losses,
            "trainable_params": params, "lora_params": params, "bias_and_other_params": 0,
            "lora_layers": len(layers)}
