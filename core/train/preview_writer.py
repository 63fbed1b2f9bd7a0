"""Where a run's preview images go: seed 002's `baseline/`, the checkpoint folders, `samples/step_N/`
and `progression/`, each announced with a Preview event that names the prompt of every image.

The loop decides when to render (before step 1, at checkpoints, every `run.sample_every` steps);
this writes and announces what was rendered, so the loop reads as the schedule it is.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..model import lora
from ..run.events import Preview
from ..run.rundir import RunDir
from .checkpoint import TrainingState, user_weights_swapped_in
from .preview import PreviewSpec, expected_files, image_prompts, progression_files, render_previews


class PreviewWriter:
    def __init__(self, spec: PreviewSpec | None, adapter, state: TrainingState, run_dir: RunDir, emit: Callable,
                 *, device: torch.device, autocast: bool):
        self.spec, self.adapter, self.state, self.run_dir, self.emit = spec, adapter, state, run_dir, emit
        self.device, self.autocast = device, autocast

    def render(self, *, lora_on: bool = True) -> dict[str, bytes]:
        """{file name: PNG} of every preview with the LoRA as it would be saved (EMA weights when on),
        or without it; {} without preview prompts."""
        if self.spec is None:
            return {}
        weights = user_weights_swapped_in(self.state) if lora_on else lora.lora_disabled(self.adapter.module)
        with weights:
            return render_previews(self.adapter, self.spec, device=self.device, dtype=torch.float32,
                                   autocast=self.autocast, patch_size=self.adapter.patch_size)

    def baseline(self) -> None:
        """Seed 002's `baseline/`: the prompts without the LoRA, rendered once before step 1."""
        if self.spec is None:
            return
        if all((self.run_dir.baseline_dir / name).is_file() for name in expected_files(self.spec)):
            return  # a resumed run keeps the baseline it rendered before step 1
        images = self.render(lora_on=False)
        self._write("baseline", images)
        self.announce(0, "baseline", images)

    def samples(self, step: int) -> None:
        """`samples/step_<step>/`: previews between checkpoints (`run.sample_every`)."""
        folder = f"samples/step_{step:06d}"
        images = self.render()
        self._write(folder, images)
        self.announce(step, folder, images)

    def announce(self, step: int, folder: str, images: dict[str, bytes]) -> None:
        """`progression/` for the step, then the Preview event with each image's prompt (the gallery's
        captions). The images themselves are already in `folder` (checkpoints write their own)."""
        if not images:
            return
        self._write(".", progression_files(step, self.spec, images))
        texts = image_prompts(self.spec)
        self.emit(Preview(step=step, images=tuple(f"{folder}/{name}" for name in images),
                          prompts=tuple(texts.get(name, "") for name in images)))

    def _write(self, folder: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            self.run_dir.write_file(f"{folder}/{name}", lambda path, data=data: path.write_bytes(data))
