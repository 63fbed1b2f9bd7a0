"""Stop a run at the first number that is not a number, before it reaches the LoRA or a file.

Why: a diverging run (lr far too high, clipping off, a NaN in the data) otherwise trains on, ends
"finished" and publishes a LoRA full of NaN that loads silently and renders noise. The loss and the
gradient norm are checked every optimizer step, before the optimizer touches the weights, so the
weights and every checkpoint already written stay good; the weights are checked again before any
LoRA file is written.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import torch

from ..config import TrainConfig
from ..errors import FluxLabError


class NonFiniteError(FluxLabError, FloatingPointError):
    """Training produced NaN or infinity; the message names the step, what, the likely cause and what
    the run kept."""


def check_step(step: int, losses: Iterable[float], grad_norm: float, config: TrainConfig,
               kept: Callable[[], str]) -> None:
    """NonFiniteError if a micro-batch loss or the gradient norm of step `step` is not finite.
    `kept()` says what is safe on disk ("the checkpoint of step 250"), asked only on failure."""
    losses = list(losses)
    if all(math.isfinite(v) for v in losses) and math.isfinite(grad_norm):
        return
    what = "the loss" if not all(math.isfinite(v) for v in losses) else "the gradient"
    values = ", ".join(f"{v:g}" for v in losses)
    raise NonFiniteError(f"step {step}: {what} is not a finite number (loss {values}, gradient norm "
                         f"{grad_norm:g}); the run stopped before the update, nothing non-finite was saved, "
                         f"{kept()} is kept. Likely cause: {likely_cause(config)}")


def likely_cause(config: TrainConfig) -> str:
    o = config.optim
    if o.optimizer != "prodigy" and o.learning_rate > 1e-3:
        return (f"optim.learning_rate {o.learning_rate:g} is high for Flux (1e-4 to 4e-4 is usual); lower "
                "optim_learning_rate and queue the run again (it resumes from the kept checkpoint).")
    if o.max_grad_norm == 0:
        return "gradient clipping is off (optim.max_grad_norm 0); set optim_max_grad_norm to 1."
    return ("a NaN in the base weights, the cached latents or the text embeddings; check the dataset "
            "report, or train with training_dtype fp32 on LoadFluxForTraining to rule out bf16 overflow.")


def require_finite_weights(weights: Mapping[str, torch.Tensor], path: str) -> None:
    """NonFiniteError naming the first non-finite tensor, before `path` is written."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise NonFiniteError(f"not writing {path}: {bad} non-finite values in {name}")


FP16_MAX = 65504.0


def require_in_fp16_range(weights: Mapping[str, torch.Tensor], path: str) -> None:
    """NonFiniteError before an fp16 file would turn a weight beyond fp16's range into inf."""
    for name, tensor in weights.items():
        largest = float(tensor.detach().abs().max()) if tensor.numel() else 0.0
        if largest > FP16_MAX:
            raise NonFiniteError(f"not writing {path}: {name} holds {largest:g}, beyond fp16's {FP16_MAX:g}; "
                                 "set run.save_dtype to 'bf16' or 'fp32'")
