"""How long a run trains: `train.steps`, or `train.epochs` passes over the dataset.

The loop reads micro-batch (step - 1) * accumulation + micro at `train.batch_size` (trainer.py), so
one pass is `data.steps_per_epoch(batch_size)` micro-batches, and an optimizer step takes
`gradient_accumulation` of them. Steps per epoch round up: a pass that ends inside a step counts
that step (the next pass goes on from there: the data order is one stream of epochs).
"""

from __future__ import annotations

import math

from ..config import ConfigError, TrainConfig


def steps_per_epoch(data, config: TrainConfig) -> int:
    """Optimizer steps of one pass over `data` at the run's batch size and accumulation."""
    return math.ceil(data.steps_per_epoch(config.train.batch_size) / config.optim.gradient_accumulation)


def resolve_length(config: TrainConfig, data) -> TrainConfig:
    """The config the loop runs: with `train.epochs` > 0, `train.steps` = epochs x steps per epoch."""
    if config.train.epochs == 0:
        return config
    steps = config.train.epochs * steps_per_epoch(data, config)
    if config.optim.warmup_steps >= steps:
        raise ConfigError("optim.warmup_steps", f"{config.optim.warmup_steps} must be less than the "
                          f"{steps} steps of train.epochs {config.train.epochs}; lower it or train more epochs")
    return config.with_overrides({"train": {"steps": steps}})


def run_length_report(report: dict, data, config: TrainConfig) -> dict:
    """The dataset report as the run sees it: steps per epoch at batch_size x accumulation, and the
    length it trains (`train_steps`, `epochs`: the epochs asked for, or steps / steps per epoch)."""
    per_epoch = steps_per_epoch(data, config)
    out = {**report, "batch_size": config.train.batch_size * config.optim.gradient_accumulation,
           "steps_per_epoch": per_epoch, "train_steps": config.train.steps,
           "epochs": config.train.epochs or round(config.train.steps / per_epoch, 1)}
    if report.get("suggested_steps") is not None:  # core/data/report.py for_run; None: no step rule
        out["suggested_epochs"] = round(report["suggested_steps"] / per_epoch, 1)
    return out
