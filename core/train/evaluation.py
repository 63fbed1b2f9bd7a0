"""Evaluation loss: the flow-matching loss of the LoRA model on a fixed eval set (SimpleTuner's
"stable" eval loss), scored before step 1 and at every checkpoint.

Why fixed everything: the training loss of one step is one random noise level on one random sample,
so it swings by an order of magnitude between steps and its trend shows only after heavy smoothing.
Here every eval sample is scored at the same `run.eval_timesteps` noise levels, evenly spread over
(0, 1), with the same noise each time, so two scores differ only because the LoRA changed. The set is
what TrainLoRA's `eval_dataset` input gives (another DatasetFromFolder, held out by being another
folder), every sample once (its repeats too), with its captions as the dataset gives them at step i
of an epoch at batch size 1. Loss weighting is uniform (not the training weighting): the score should
not change when a user changes how training weights noise levels.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from .. import seeding
from .flow import add_noise, flow_loss
from .job import Batch

EVAL_SEED = 0
"""The eval set's order, dropout draws and noise never depend on the run's seed: runs compare."""


class EvalData(Protocol):
    def steps_per_epoch(self, batch_size: int) -> int: ...

    def batch(self, step: int, batch_size: int, seed: int) -> Batch: ...


def eval_sigmas(count: int) -> torch.Tensor:
    """`count` noise levels evenly inside (0, 1): 4 -> 0.2, 0.4, 0.6, 0.8 (none at the ends, where
    the target is pure data or pure noise and says little about the LoRA)."""
    if count < 1:
        raise ValueError(f"run.eval_timesteps must be >= 1 to evaluate, got {count}")
    return torch.arange(1, count + 1, dtype=torch.float32) / (count + 1)


Predict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@torch.no_grad()
def eval_loss(predict: Predict, data: EvalData, timesteps: int, device) -> float:
    """Mean uniform flow loss over every (sample, noise level) of `data`; one forward per sample
    (its noise levels are one batch). `predict(noisy, sigmas, context, pooled)` is the model as the
    trainer calls it, in eval mode (no LoRA dropout)."""
    sigmas = eval_sigmas(timesteps).to(device)
    total, count = 0.0, data.steps_per_epoch(1)
    for index in range(count):
        batch = data.batch(index, 1, EVAL_SEED)
        x = batch.latents.to(device, torch.float32).expand(timesteps, *batch.latents.shape[1:])
        noise = torch.randn(x.shape, generator=seeding.generator(EVAL_SEED, "eval noise", index)).to(device)
        noisy, target = add_noise(x, noise, sigmas)
        context = batch.context.to(device).expand(timesteps, *batch.context.shape[1:])
        pooled = None if batch.pooled is None else batch.pooled.to(device).expand(timesteps, *batch.pooled.shape[1:])
        mask = None if batch.loss_mask is None else batch.loss_mask.to(device).expand(timesteps, *batch.loss_mask.shape[1:])
        total += flow_loss(predict(noisy, sigmas, context, pooled), target, sigmas, "uniform", mask=mask).item()
    return total / count
