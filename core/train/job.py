"""What one training run is given: its settings, the adapter over the model, the data, the run
folder and the fingerprints that make resume safe (`TrainingJob`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Protocol

import torch

from ..config import TrainConfig
from ..model.adapter import TrainingAdapter
from ..model.text_lora import TextEncoderAdapter
from ..run.rundir import RunDir
from .preview import PreviewSpec

class Batch(Protocol):
    latents: torch.Tensor
    context: torch.Tensor
    pooled: Optional[torch.Tensor]
    loss_mask: Optional[torch.Tensor]
    dop_context: Optional[torch.Tensor]
    dop_pooled: Optional[torch.Tensor]
    loss_weights: Optional[torch.Tensor]
    """(B,) per-sample loss weights (the folder's loss_weight); None: all 1."""
    # With lora.train_text_encoder the step encodes these instead of reading `pooled` / `dop_pooled`:
    # captions: Sequence[str]; dop_captions: Optional[Sequence[str]] (core/data's Batch has both).


class TrainingData(Protocol):
    def batch(self, step: int, batch_size: int, seed: int) -> Batch: ...

    def steps_per_epoch(self, batch_size: int | None = None) -> int:
        """Batches of `batch_size` in one pass (needed for train.epochs and the report)."""
        ...


@dataclass
class TrainingJob:
    """Everything one run needs. The adapter must be fresh (no LoRA attached yet)."""

    config: TrainConfig
    adapter: TrainingAdapter
    data: TrainingData
    run_dir: RunDir
    base_fingerprint: str = ""
    dataset_fingerprint: str = ""
    """Both recorded in every checkpoint; resuming on others is refused (core/train/resume.py)."""
    previews: Optional[PreviewSpec] = None
    dataset_report: Optional[Mapping] = None
    eval_data: Optional[TrainingData] = None
    """Scored by run.eval_timesteps before step 1 and at every checkpoint (core/train/evaluation.py);
    it also needs `steps_per_epoch(batch_size)`."""
    text_encoder: Optional[TextEncoderAdapter] = None
    """Flux.1's CLIP-L, private to the run: lora.train_text_encoder trains a LoRA on it (core/train/text_encoder.py)."""

