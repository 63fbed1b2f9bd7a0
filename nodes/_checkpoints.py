"""Which LoRA files of a run folder SampleCheckpoint / CompareCheckpoints use (no comfy here).

A run's checkpoints are what core.run.rundir says is complete (the step comes from training_state.json,
never from folder names); the final LoRA is `lora_final.safetensors`. Every error names the run, its
folder and what is available, so a user can fix the selector without opening the folder.

A run that is still training (`TrainingProgress`) is not an error: its comparison holds what is saved
now, and `coming()` says how many more checkpoints the selection will get ("training - 1 of 3
checkpoints so far"). That is what the bundled workflows need: TrainLoRA in `background` mode hands its
run to CompareCheckpoints at once, before the first checkpoint exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.model.lora_format import saved_step
from ..core.run.rundir import CheckpointInfo, RunDir
from ..core.train.checkpoint import LORA_FILE

CHECKPOINT_CHOICES = ("latest", "final", "step")
_LATEST_N = re.compile(r"latest\s+(\d+)")


@dataclass(frozen=True)
class LoraChoice:
    """One row of a comparison (or the one LoRA SampleCheckpoint applies).

    checkpoint: "base" (no LoRA), "final", or the checkpoint folder name ("checkpoint_000125"),
    which is what the `/fluxlab/runs/{id}/use` route takes.
    """

    label: str
    checkpoint: str
    step: Optional[int]
    lora_path: Optional[Path]

    def describe(self) -> dict:
        """JSON-safe form for the node's UI data."""
        return {"label": self.label, "checkpoint": self.checkpoint, "step": self.step,
                "lora_path": str(self.lora_path) if self.lora_path else None}


BASE = LoraChoice(label="base", checkpoint="base", step=None, lora_path=None)


@dataclass(frozen=True)
class TrainingProgress:
    """Where a live run is: `step` done of `total_steps` (None while it is still starting: loading,
    caching latents), saving a checkpoint every `save_every` steps (0: only at the end)."""

    step: Optional[int]
    total_steps: Optional[int]
    save_every: int = 0

    @classmethod
    def of_handle(cls, handle) -> Optional["TrainingProgress"]:
        """From a core.run.runner.RunHandle; None when the run is not training (finished, stopped, gone)."""
        if handle is None or not handle.live:
            return None
        started = handle.events.last("started")
        if handle.status == "starting" or started is None:
            return cls(step=None, total_steps=None)
        last = handle.events.last("step")
        step = last.event.step if last is not None and last.seq > started.seq else started.event.start_step
        save_every = int((started.event.config.get("run") or {}).get("save_every") or 0)
        return cls(step=step, total_steps=started.event.total_steps, save_every=save_every)

    def steps_to_come(self) -> Optional[list[int]]:
        """The steps after `step` that will get a checkpoint (the last step always does); None: not known yet."""
        if self.total_steps is None:
            return None
        done = self.step or 0
        saves = range(self.save_every, self.total_steps + 1, self.save_every) if self.save_every else []
        return sorted({s for s in saves if s > done} | ({self.total_steps} if self.total_steps > done else set()))

    def describe(self) -> str:
        if self.total_steps is None:
            return "starting"
        return f"step {self.step or 0} of {self.total_steps}"


class RunCheckpoints:
    """The complete checkpoints and the final LoRA of one run folder, read once."""

    def __init__(self, run_id: str, root: Path, training: Optional[TrainingProgress] = None):
        self.run_id = run_id
        self.training = training
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"run {run_id!r}: its folder {self.root} does not exist")
        self.checkpoints: list[CheckpointInfo] = RunDir(self.root).list_checkpoints()
        final = RunDir(self.root).final_lora_path
        self.final_path: Optional[Path] = final if final.is_file() else None

    def available(self) -> str:
        """'steps 125, 250 and final' / 'no checkpoints and no final LoRA' (for error messages)."""
        steps = ", ".join(str(info.step) for info in self.checkpoints)
        parts = [f"steps {steps}" if steps else "no complete checkpoints"]
        parts.append("final" if self.final_path else "no final LoRA")
        return " and ".join(parts)

    def _error(self, problem: str) -> ValueError:
        return ValueError(f"run {self.run_id!r} ({self.root}): {problem}; it has {self.available()}")

    def at_step(self, step: int) -> LoraChoice:
        for info in self.checkpoints:
            if info.step == step:
                return LoraChoice(label=f"step {step}", checkpoint=info.path.name, step=step, lora_path=info.file(LORA_FILE))
        raise self._error(f"no checkpoint at step {step}")

    def latest(self) -> LoraChoice:
        if not self.checkpoints:
            raise self._error("no checkpoint saved yet (use 'final', or wait for the first save)")
        return self.at_step(self.checkpoints[-1].step)

    def final(self) -> LoraChoice:
        if self.final_path is None:
            raise self._error("no lora_final.safetensors yet (the run is still training, or stopped before the end)")
        return LoraChoice(label="final", checkpoint="final", step=saved_step(self.final_path), lora_path=self.final_path)

    def select(self, which: str, step: int) -> LoraChoice:
        """SampleCheckpoint's selector: "latest", "final" or "step" (with `step`)."""
        if which == "latest":
            return self.latest()
        if which == "final":
            return self.final()
        if which == "step":
            return self.at_step(step)
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_CHOICES}, got {which!r}")

    def rows(self, spec: str, include_base: bool, include_final: bool) -> list[LoraChoice]:
        """CompareCheckpoints' rows: base first, then the checkpoints `spec` names (oldest first), then final.

        spec: "all", "latest N", "none" / "" (no step checkpoints) or steps separated by commas
        or spaces ("125, 250").
        """
        rows = [BASE] if include_base else []
        rows += [self.at_step(step) for step in self._steps(spec)]
        if include_final and (self.final_path is not None or self.training is None):
            rows.append(self.final())
        if not rows and self.training is None:
            raise self._error("nothing to compare: the checkpoint list is empty and base and final are both off")
        return rows

    def _steps(self, spec: str) -> list[int]:
        text = " ".join(spec.strip().lower().split())
        known = [info.step for info in self.checkpoints]
        if text in ("", "none"):
            return []
        if text == "all":
            if not known and self.training is None:
                raise self._error("'all' asked for checkpoints but none is saved yet")
            return known
        match = _LATEST_N.fullmatch(text)
        if match:
            count = int(match.group(1))
            if count < 1 or not known and self.training is None:
                raise self._error(f"{spec!r} selects no checkpoint")
            return known[-count:]
        tokens = [t for t in re.split(r"[,\s]+", text) if t]
        if not all(t.isdigit() for t in tokens):
            raise ValueError(f"checkpoints {spec!r} is not understood: write 'all', 'latest N', 'none' "
                             f"or steps separated by commas (e.g. '125, 250')")
        steps = sorted(set(int(t) for t in tokens))
        coming = set(self._to_come() or ())
        missing = [s for s in steps if s not in known and s not in coming]
        if missing:
            raise self._error(f"no checkpoint at step {', '.join(map(str, missing))}")
        return [s for s in steps if s in known]

    def _to_come(self) -> Optional[list[int]]:
        return self.training.steps_to_come() if self.training is not None else []

    def coming(self, spec: str, include_final: bool) -> Optional[str]:
        """For a run still training: 'training - N of M checkpoints so far (step s of t) ...' for the
        selection `spec` (checked by rows()); None for a run that is not training."""
        if self.training is None:
            return None
        text = " ".join(spec.strip().lower().split())
        known = [info.step for info in self.checkpoints]
        to_come = self._to_come()
        shown = len(self._steps(spec))
        if to_come is None:
            expected = None
        elif text == "all":
            expected = len(known) + len(to_come)
        elif _LATEST_N.fullmatch(text):
            expected = min(int(_LATEST_N.fullmatch(text).group(1)), len(known) + len(to_come))
        else:
            expected = shown + sum(1 for t in re.split(r"[,\s]+", text) if t.isdigit() and int(t) in to_come)
        if text in ("", "none"):
            parts = ["training", f"({self.training.describe()})"]
        elif expected is None:
            parts = [f"training - {shown} checkpoints so far", f"({self.training.describe()})"]
        else:
            parts = [f"training - {shown} of {expected} checkpoints so far", f"({self.training.describe()})"]
        if include_final and self.final_path is None:
            parts.append("; the final LoRA comes at the end")
        parts.append(f". Queue CompareCheckpoints with run_name '{self.run_id}' to see the rest.")
        return " ".join(parts).replace(" ;", ";").replace(" .", ".")


