"""Whether a run folder may be resumed by a run: the same base, LoRA shape and data, or a refusal
that changes nothing and names the ways on.

Why: a run name is queued again to resume it (after a stop, a crash, or to train further). If the
MODEL, the dataset or the LoRA settings changed in between, resuming would silently continue old
weights on something else, and the new final LoRA would overwrite the old run's files. Every
checkpoint records what it was trained on (`trained_on`); `check_resume` compares that with the new
run before any file is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from ..config import TrainConfig
from ..errors import FluxLabError
from ..run.rundir import CheckpointInfo, RunDir

LORA_SHAPE = ("rank", "targets", "train_modulation", "blocks", "exclude_blocks", "network", "lokr_factor",
              "lokr_full_matrix", "lokr_decompose_both")
"""LoRA settings a checkpoint's weights and optimizer state are shaped by (alpha is compared too,
as the scale the weights were trained at)."""
ON_EXISTING = ("resume", "new run", "new run from its LoRA")
"""What to do with a run name whose folder already holds a run (TrainLoRA's `on_existing_run`)."""


class ResumeMismatch(FluxLabError, ValueError):
    """The run folder holds a run on other weights, data or LoRA settings; nothing was changed."""


def trained_on(config: TrainConfig, base_fingerprint: str, dataset_fingerprint: str) -> dict:
    """What a checkpoint records about its run, for `check_resume` to compare."""
    return {"config": config.to_dict(), "base_fingerprint": base_fingerprint,
            "dataset_fingerprint": dataset_fingerprint}


def differences(saved: Mapping, config: TrainConfig, base_fingerprint: str, dataset_fingerprint: str) -> list[str]:
    """What differs between a checkpoint's record and the new run; values a checkpoint did not record
    (older ones have no dataset fingerprint) are not compared."""
    found = []
    old_base = saved.get("base_fingerprint") or ""
    if old_base and base_fingerprint and old_base != base_fingerprint:
        old_family, new_family = old_base.split(":")[0], base_fingerprint.split(":")[0]
        what = f"another model family ({old_family}, now {new_family})" if old_family != new_family else "other base weights"
        found.append(f"{what}: fingerprint {old_base}, now {base_fingerprint}")
    old_data = saved.get("dataset_fingerprint") or ""
    if old_data and dataset_fingerprint and old_data != dataset_fingerprint:
        found.append(f"another dataset (images, captions, resolutions or repeats): fingerprint {old_data}, "
                     f"now {dataset_fingerprint}")
    old_lora = saved.get("config", {}).get("lora", {})
    for name in LORA_SHAPE:
        if name in old_lora and old_lora[name] != getattr(config.lora, name):
            found.append(f"lora.{name} {old_lora[name]!r}, now {getattr(config.lora, name)!r}")
    if "rank" in old_lora:
        old_alpha = float(old_lora["rank"] if old_lora.get("alpha") is None else old_lora["alpha"])
        if old_alpha != config.lora.effective_alpha:
            found.append(f"lora.alpha {old_alpha:g}, now {config.lora.effective_alpha:g}")
    return found


def check_resume(run_dir: RunDir, config: TrainConfig, base_fingerprint: str,
                 dataset_fingerprint: str) -> Optional[CheckpointInfo]:
    """The checkpoint the run will resume from (None: it starts fresh), or ResumeMismatch."""
    latest = run_dir.latest_checkpoint()
    if latest is None:
        return None
    found = differences(latest.state, config, base_fingerprint, dataset_fingerprint)
    if found:
        name = config.run.name
        raise ResumeMismatch(
            f"run {name!r} ({run_dir.root}, newest checkpoint step {latest.step}) was trained on "
            + "; ".join(found) + ". Nothing was changed. To go on: a new run_name, or on_existing_run "
            f"'new run' (trains fresh as {next_free_name(run_dir.root.parent, name)!r}) or 'new run from its "
            f"LoRA' (the same, starting from step {latest.step}'s LoRA); the old run's files are kept.")
    return latest


def next_free_name(root: Path, name: str) -> str:
    """`name_2`, `name_3`, ...: the first run name with no folder under `root`."""
    n = 2
    while (root / f"{name}_{n}").exists():
        n += 1
    return f"{name}_{n}"


def settle_run(runs_root: Path, config: TrainConfig, on_existing: str, base_fingerprint: str,
               dataset_fingerprint: str) -> tuple[TrainConfig, Optional[str]]:
    """The config to train and a note for the log: the same run ('resume', checked; or a name not yet
    used), or, when the name's folder exists and `on_existing` says so, a fresh run under the next
    free name, starting from the old run's newest LoRA for 'new run from its LoRA'."""
    if on_existing not in ON_EXISTING:
        raise ValueError(f"on_existing_run {on_existing!r} is not one of {list(ON_EXISTING)}")
    old = RunDir(runs_root / config.run.name)
    if on_existing == "resume" or not old.root.exists():
        check_resume(old, config, base_fingerprint, dataset_fingerprint)
        return config, None
    name = next_free_name(runs_root, config.run.name)
    overrides: dict = {"run": {"name": name}}
    note = f"on_existing_run {on_existing!r}: run {config.run.name!r} exists and is kept; training as {name!r}"
    if on_existing == "new run from its LoRA":
        latest = old.latest_checkpoint()
        if latest is None:
            raise ResumeMismatch(f"on_existing_run 'new run from its LoRA': run {config.run.name!r} ({old.root}) has "
                                 "no checkpoint to start from; choose 'new run' or 'resume'")
        overrides["lora"] = {"init_lora": str(latest.file("lora.safetensors"))}
        note += f", starting from the LoRA of its step {latest.step}"
    return config.with_overrides(overrides), note
