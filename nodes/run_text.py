"""The text TrainLoRA shows on the node when it runs: the values the run really uses (after the preset,
the widgets, the advanced node and quantization 'auto') and the memory plan they were checked against."""

from __future__ import annotations

from ..core.config import TrainConfig
from ..core.presets import STEP_RULES, suggested_steps


def _steps(config: TrainConfig, preset: str, n_images: int) -> str:
    accumulation = config.optim.gradient_accumulation
    if preset in STEP_RULES and n_images and config.train.steps == suggested_steps(preset, n_images, accumulation):
        per_image, least = STEP_RULES[preset]
        per_step = f", / {accumulation} per step" if accumulation > 1 else ""
        return (f"{config.train.steps} steps ({preset}: {per_image} per image x {n_images} images, at least "
                f"{least}{per_step})")
    return f"{config.train.steps} steps"


def run_text(config: TrainConfig, preset: str, n_images: int, plan, notes, advanced: bool) -> str:
    lora, optim, train, dop, run = config.lora, config.optim, config.train, config.dop, config.run
    lines = [
        f"Run '{run.name}', preset {preset}" + (" + advanced settings" if advanced else "") + ":",
        f"  {_steps(config, preset, n_images)}, batch {train.batch_size} x {optim.gradient_accumulation}, seed {train.seed}",
        f"  LoRA rank {lora.rank}, alpha {lora.effective_alpha:g} on '{lora.targets}'",
        f"  {optim.optimizer}, learning rate {optim.learning_rate:g} ({optim.lr_scheduler})",
        f"  noise levels '{config.flow.timestep_sampling}', loss '{config.flow.loss_weighting}'",
        f"  DOP {'on, every ' + str(dop.every_n_steps) + ' step(s)' if dop.enabled else 'off'}; "
        f"EMA {'on' if train.ema else 'off'}; quantization {config.model.quantize}",
        f"  save every {run.save_every}, sample every {run.sample_every} steps",
    ]
    lines += [note for note in notes if note]
    lines += ["Memory plan for these settings (estimate):", *("  " + line for line in plan.describe().splitlines())]
    return "\n".join(lines)
