"""The run folder (seed 002 layout) and its crash-safe checkpoints (file writes: core/run/atomic.py).

    <run>/baseline/                      previews before training
    <run>/checkpoint_000125/             lora.safetensors, optimizer_state.safetensors, preview PNGs,
                                         training_state.json (written last: "complete": true)
    <run>/samples/step_000100/           previews between checkpoints
    <run>/learning_curve.svg  lora_final.safetensors  events.jsonl
(encodings are cached per dataset, not per run: core/data/cache.py)

Why this shape: a checkpoint is first written into a hidden temp folder, every file fsync'ed, then
`training_state.json` (the completion marker, listing each file and its size) and finally the folder
is renamed into place. A crash at any point leaves either the old set of checkpoints or the new one,
never a folder that passes `latest_checkpoint()` half-written. The step always comes from
training_state.json, never from the folder name.

rundir is agnostic of what is in a checkpoint: callers pass `writers`, a mapping of file name to a
callable that writes that file at the path it is given (so the LoRA file is exactly what
core/lora_format writes, byte for byte).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from .atomic import TEMP_PREFIX, Writer, atomic_write, fsync_dir, fsync_file, json_writer
from .events import json_safe

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "fluxlab.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
STATE_FILE = "training_state.json"
CHECKPOINT_PREFIX = "checkpoint_"


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint: its folder, step, the caller's training state and the files it holds."""

    path: Path
    step: int
    state: Mapping[str, Any]
    files: Mapping[str, int]

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise FileNotFoundError(f"checkpoint {self.path} has no {name} (it holds {sorted(self.files)})")
        return self.path / name


def read_checkpoint(folder: Path) -> Optional[CheckpointInfo]:
    """The checkpoint in `folder` if it is complete (marker valid, every listed file present with its size)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or meta.get("complete") is not True:
        return None
    if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        log.warning("%s has checkpoint format version %r; this version reads %d (skipped)",
                    folder, meta.get("format_version"), CHECKPOINT_FORMAT_VERSION)
        return None
    files = meta.get("files", {})
    for name, size in files.items():
        try:
            if (folder / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return CheckpointInfo(path=folder, step=int(meta["step"]), state=meta.get("state", {}), files=dict(files))


class RunDir:
    """One run's folder. Constructing it touches nothing; `prepare()` creates it and cleans crash debris."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- layout ----------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def baseline_dir(self) -> Path:
        return self.root / "baseline"

    @property
    def curve_path(self) -> Path:
        return self.root / "learning_curve.svg"

    @property
    def final_lora_path(self) -> Path:
        return self.root / "lora_final.safetensors"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def checkpoint_dir(self, step: int) -> Path:
        return self.root / f"{CHECKPOINT_PREFIX}{step:06d}"

    # -- lifecycle -------------------------------------------------------------------------------
    def prepare(self) -> list[Path]:
        """Create the folder and clear crash debris; returns the temp files/folders removed.

        A temp checkpoint folder that is complete but missed its final rename (a crash between the
        marker and the rename, or mid-replace of a same-step checkpoint) is moved into place instead
        of deleted, unless a complete checkpoint of that step already exists.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        removed = []
        # New checkpoints before replaced ones ("old-"), so the newer copy of a step wins.
        temps = sorted((p for p in self.root.iterdir() if p.name.startswith(TEMP_PREFIX)),
                       key=lambda p: p.name.startswith(f"{TEMP_PREFIX}old-"))
        for entry in temps:
            info = read_checkpoint(entry) if entry.is_dir() else None
            if info is not None and read_checkpoint(self.checkpoint_dir(info.step)) is None:
                target = self.checkpoint_dir(info.step)
                if target.exists():
                    _remove(target)
                os.replace(entry, target)
                log.info("recovered complete checkpoint %s from %s", target.name, entry.name)
                continue
            _remove(entry)
            removed.append(entry)
        fsync_dir(self.root)
        for entry in self._checkpoint_dirs():
            if read_checkpoint(entry) is None:
                log.warning("%s is not a complete checkpoint (no valid %s); it is ignored", entry, STATE_FILE)
        return removed

    # -- checkpoints -----------------------------------------------------------------------------
    def write_checkpoint(self, step: int, writers: Mapping[str, Writer], state: Mapping[str, Any]) -> CheckpointInfo:
        """Write `checkpoint_<step>/` atomically: each writer fills its file, then the completion marker.

        `state` (step counters, data position, config, metrics) is stored under "state" in
        training_state.json as strict JSON: tuples become lists, paths strings, and a NaN/inf loss
        becomes null rather than failing the save. An existing checkpoint at the same step is replaced.
        """
        state = json_safe(state)
        if STATE_FILE in writers:
            raise ValueError(f"{STATE_FILE} is written by RunDir itself; pass its content as `state`")
        for name in writers:
            if "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"checkpoint file name {name!r} must be a plain file name")
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{TEMP_PREFIX}{CHECKPOINT_PREFIX}{step:06d}.{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        try:
            files = {}
            for name, writer in writers.items():
                writer(temp / name)
                fsync_file(temp / name)
                files[name] = (temp / name).stat().st_size
            marker = {
                "format": CHECKPOINT_FORMAT,
                "format_version": CHECKPOINT_FORMAT_VERSION,
                "complete": True,
                "step": int(step),
                "files": files,
                "state": state,
            }
            json_writer(marker)(temp / STATE_FILE)
            fsync_file(temp / STATE_FILE)
            fsync_dir(temp)
            final = self.checkpoint_dir(step)
            if final.exists():
                trash = self.root / f"{TEMP_PREFIX}old-{final.name}.{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
                os.replace(temp, final)
                _remove(trash)
            else:
                os.replace(temp, final)
            fsync_dir(self.root)
        except BaseException:
            if temp.exists():
                _remove(temp)
            raise
        return CheckpointInfo(path=final, step=int(step), state=state, files=files)

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Complete checkpoints, oldest step first."""
        found = [info for info in map(read_checkpoint, self._checkpoint_dirs()) if info is not None]
        return sorted(found, key=lambda info: info.step)

    def latest_checkpoint(self) -> Optional[CheckpointInfo]:
        checkpoints = self.list_checkpoints()
        return checkpoints[-1] if checkpoints else None

    def prune(self, keep: Optional[int]) -> list[Path]:
        """Delete all but the `keep` newest complete checkpoints (max_step_saves_to_keep; 0/None keeps all).

        The newest is never deleted. Folders are renamed to a temp name first so a crash mid-delete
        leaves debris that `prepare()` removes, not a damaged checkpoint.
        """
        if not keep:
            return []
        if keep < 0:
            raise ValueError(f"max_step_saves_to_keep must be >= 0 (0 keeps all), got {keep}")
        doomed = self.list_checkpoints()[: -max(1, keep)]
        removed = []
        for info in doomed:
            trash = self.root / f"{TEMP_PREFIX}old-{info.path.name}.{uuid.uuid4().hex[:8]}"
            os.replace(info.path, trash)
            _remove(trash)
            removed.append(info.path)
        return removed

    # -- other files -----------------------------------------------------------------------------
    def write_file(self, name: str, writer: Writer) -> Path:
        """Atomically write a file relative to the run folder (learning_curve.svg, lora_final.safetensors, ...)."""
        return atomic_write(self.root / name, writer)

    def resolve_inside(self, relative: str) -> Path:
        """`root/relative` if it stays inside the run folder (for serving previews), else ValueError."""
        root = self.root.resolve()
        target = (root / relative).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"{relative!r} is outside the run folder {self.root}")
        return target

    def _checkpoint_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir()]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
