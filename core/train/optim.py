"""Optimizers, learning-rate schedules and an EMA of the LoRA weights, all resumable via state_dict.

Steps here are optimizer steps (after gradient accumulation): `build_scheduler(..., total_steps)`
takes `train.steps`, and the trainer calls `scheduler.step()` and `ema.update()` once per optimizer
step. `OPTIMIZERS` is the one list of `optim.optimizer` values: what each needs installed, how it is
built and how much state it keeps. The optional ones (requirements.txt installs them where the
package supports the platform) are imported only when chosen, and a missing package is an error
that names the pip command and the optimizers this Python has.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from ..config import ConfigError, OptimizerSettings, TrainConfig
from ..presets import PRESETS

def _fused_supported(params: list[torch.Tensor]) -> bool:
    """True when torch's fused AdamW kernel accepts every parameter (device type and float dtype)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # private helper moved: fall back to the devices fused AdamW has long had
        devices = {"cuda"}
    return bool(params) and all(p.device.type in devices and torch.is_floating_point(p) for p in params)


def _adamw(cls, s: OptimizerSettings, groups: list, flat: list, lr: float):
    fused = _fused_supported(flat)
    return cls(groups, lr=lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay,
               fused=fused or None, foreach=None if fused else True)


def _adafactor(cls, s: OptimizerSettings, groups: list, flat: list, lr: float):
    # torch's Adafactor scales each step by max(eps2, RMS(param)) * min(lr, 1/sqrt(t)). LoRA's B
    # starts at zero, so with the default eps2 = 1e-3 a 1e-4 rate moves it by 1e-7 per step:
    # the LoRA barely trains. eps2 = 1 makes the step RMS equal to lr for weights with RMS < 1
    # (all LoRA weights), i.e. the "relative_step=False, scale_parameter=False" Adafactor that
    # LoRA trainers use with lr ~1e-4. betas and eps of the settings do not apply to Adafactor.
    return cls(groups, lr=lr, eps=(None, 1.0), weight_decay=s.weight_decay)


def _adam_like(cls, s: OptimizerSettings, groups: list, flat: list, lr: float):
    return cls(groups, lr=lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay)


def _prodigy(cls, s: OptimizerSettings, groups: list, flat: list, lr: float):
    # safeguard_warmup: the Prodigy authors' advice when the rate warms up (else d grows on tiny steps).
    return cls(groups, lr=lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay,
               safeguard_warmup=s.warmup_steps > 0)


def _lion(cls, s: OptimizerSettings, groups: list, flat: list, lr: float):
    return cls(groups, lr=lr, betas=s.effective_betas, weight_decay=s.weight_decay)


def _schedule_free(cls, s: OptimizerSettings, groups: list, flat: list, lr: float):
    # Warmup comes from build_scheduler's LambdaLR (it scales the group's lr exactly as the
    # optimizer's own warmup_steps would); the optimizer starts in eval mode and steps in train mode.
    optimizer = cls(groups, lr=lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay, warmup_steps=0)
    optimizer.train()
    return optimizer


@dataclass(frozen=True)
class OptimizerSpec:
    """One `optim.optimizer` value: where its class lives and how it is built from the settings."""

    module: str
    cls: str
    build: Callable
    state_bytes: int
    """Optimizer state per fp32 LoRA parameter (core/train/memory_plan.py)."""
    package: str = ""
    """pip package that provides it; empty = torch."""


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adamw": OptimizerSpec("torch.optim", "AdamW", _adamw, 8),
    "adamw8bit": OptimizerSpec("bitsandbytes.optim", "AdamW8bit", _adam_like, 2, "bitsandbytes"),
    "adafactor": OptimizerSpec("torch.optim", "Adafactor", _adafactor, 4),
    "prodigy": OptimizerSpec("prodigyopt", "Prodigy", _prodigy, 16, "prodigyopt"),
    "lion": OptimizerSpec("lion_pytorch", "Lion", _lion, 4, "lion-pytorch"),
    "adamw_schedulefree": OptimizerSpec("schedulefree", "AdamWScheduleFree", _schedule_free, 8, "schedulefree"),
}
"""setting value -> spec (bitsandbytes' 8-bit state applies to tensors of 4096+ values; smaller
ones keep fp32 state, as in bitsandbytes)."""


def available_optimizers() -> list[str]:
    """The `optim.optimizer` values that can be built in this Python environment."""
    return [name for name, spec in OPTIMIZERS.items()
            if not spec.package or importlib.util.find_spec(spec.module.split(".")[0]) is not None]


def require_installed(config: TrainConfig, preset: str) -> None:
    """An optimizer this Python lacks, named when the run is set up rather than at step 1: with the
    preset that chose it (the character preset trains with adamw8bit, seed 000) and the fix."""
    name = config.optim.optimizer
    if name in available_optimizers():
        return
    package = OPTIMIZERS[name].package
    chosen_by = f"preset {preset!r} trains" if preset in PRESETS and PRESETS[preset].get("optim", {}).get(
        "optimizer") == name else "optim.optimizer asks to train"
    raise ConfigError("optim.optimizer", f"{chosen_by} with {name!r}, which needs the {package!r} package: run "
                      f"`pip install {package}` in ComfyUI's Python, or set optim.optimizer to 'adamw' (more "
                      "optimizer memory, same results otherwise)")


def _flat_params(params: Iterable) -> tuple[list, list[torch.Tensor]]:
    groups = list(params)
    if not groups:
        raise ValueError("no parameters to optimize: the LoRA has no trainable weights (check "
                         "lora.targets, lora.blocks and lora.exclude_blocks)")
    flat = [p for g in groups for p in g["params"]] if isinstance(groups[0], dict) else groups
    return groups, flat


def _optimizer_class(name: str):
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.optimizer={name!r} has no builder; choose one of {list(OPTIMIZERS)}")
    spec = OPTIMIZERS[name]
    try:
        return getattr(importlib.import_module(spec.module), spec.cls)
    except ImportError as err:
        raise RuntimeError(f"optim.optimizer={name!r} needs the {spec.package!r} package, which is not "
                           f"installed: run `pip install {spec.package}` in ComfyUI's Python, or set "
                           f"optim.optimizer to one this Python has: {', '.join(available_optimizers())} "
                           f"({err})") from err


def build_optimizer(settings: OptimizerSettings, params: Iterable) -> torch.optim.Optimizer:
    """Optimizer over `params` (tensors, or param-group dicts that may set their own 'lr')."""
    groups, flat = _flat_params(params)
    cls = _optimizer_class(settings.optimizer)
    return OPTIMIZERS[settings.optimizer].build(cls, settings, groups, flat, settings.effective_learning_rate)


@contextlib.contextmanager
def averaged_weights_swapped_in(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within the block a schedule-free optimizer's parameters hold its averaged weights (the ones to
    sample and save); after it, the training weights again, bit for bit. Other optimizers: no-op.

    Why a backup: eval() and train() move the weights by lerps that do not undo each other exactly,
    and a resumed run must continue from the very weights it saved."""
    if not callable(getattr(optimizer, "eval", None)):  # torch's optimizers have no eval(); schedulefree's do
        yield
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    backup = [p.detach().clone() for p in params]
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
        with torch.no_grad():
            for p, saved in zip(params, backup):
                p.copy_(saved)


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Factor on the peak LR for optimizer step `step` (0-based) of `total_steps`.

    Warmup: (step + 1) / warmup_steps, so the first step is not wasted at lr 0 and the last warmup
    step reaches the peak. After warmup, with p = (step - warmup) / (total - warmup) in [0, 1):
    constant 1; linear 1 - p; cosine (1 + cos(pi p)) / 2."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - p
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"optim.lr_scheduler={schedule!r}: expected 'constant', 'cosine' or 'linear'")


def build_scheduler(optimizer: torch.optim.Optimizer, settings: OptimizerSettings,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over `lr_multiplier`; its state_dict (step count) restores the position on resume."""
    def factor(step: int) -> float:
        return lr_multiplier(step, total_steps, settings.warmup_steps, settings.lr_scheduler)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class LoraEMA:
    """Exponential moving average of named LoRA parameters, kept in fp32 on their device.

    update(): shadow <- d * shadow + (1 - d) * param with d = min(decay, (1 + n) / (10 + n)), n the
    number of updates so far. The warmup term (as in diffusers' EMAModel) stops a short run's EMA from
    being mostly the initial weights (LoRA B starts at zero: a plain 0.999 EMA after 250 steps would
    still be ~78 % the untrained adapter)."""

    def __init__(self, named_params: Iterable[tuple[str, torch.Tensor]], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.params = dict(named_params)
        if not self.params:
            raise ValueError("EMA needs at least one parameter")
        self.shadow = {k: p.detach().to(torch.float32, copy=True) for k, p in self.params.items()}

    def current_decay(self) -> float:
        """The decay the next update() will use."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, named_params: dict[str, torch.Tensor] | None = None) -> None:
        """Write the averaged weights into the parameters (the tracked ones by default)."""
        for name, p in (named_params or self.params).items():
            p.copy_(self.shadow[name].to(p.dtype))

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the parameters hold the EMA weights (for previews / saving); restored after."""
        backup = {k: p.detach().clone() for k, p in self.params.items()}
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(backup[name])

    def state_dict(self) -> dict:
        """{'decay', 'num_updates', 'shadow': {name: fp32 tensor}}; tensors are copies."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        extra = set(state["shadow"]) - set(self.shadow)
        if missing or extra:
            raise ValueError(f"EMA state does not match the LoRA: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(extra)[:5]} (was the checkpoint trained with other "
                             "lora.targets / rank?)")
        for name, value in state["shadow"].items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(f"EMA state for {name}: shape {list(value.shape)} != "
                                 f"{list(self.shadow[name].shape)} (different lora.rank?)")
            self.shadow[name].copy_(value)
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
