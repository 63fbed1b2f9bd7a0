"""The training dataset: `batch(step, batch_size, seed)` as a pure function of its arguments.

The batch size and the seed are the run's (TrainLoRA's train.batch_size and train.seed), passed in
each call: the dataset is built before any run's settings are known, and one dataset serves runs with
different ones. (The dataset's own `DatasetSpec.seed` fixed only what was decided when it was built:
random crop offsets and the precomputed token-shuffle orders.)

Schedule (core/data/schedule.py): epoch e = step // steps_per_epoch. For each epoch a generator
seeded by (seed, e) shuffles every bucket's samples (each repeated `repeats` times, plus the epoch's
draws from regularisation folders), cuts them into batches of `batch_size` within the bucket, and
shuffles the order of all batches. The batch of a step is entry step % steps_per_epoch. Caption
dropout (the sample's folder's rate) and the token-shuffle variant are drawn per sample from a
generator seeded by (seed, step). So resuming at step N gives exactly the batches of an
uninterrupted run, with no loader state saved. Each sample's loss weight is its folder's.

Memory: latents, masks and text encodings stay on disk and are read per batch. Why not keep them
in RAM: 1,000 images at 1024 px are 1 GB of fp32 latents, and a T5-XXL context (512 x 4096 fp32)
is 8 MB per distinct caption; reading a few small safetensors files per step costs milliseconds
against seconds for a Flux step, and the OS page cache keeps hot entries in memory anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..seeding import generator, stream_seed
from .buckets import Placement
from .cache import EncodingCache
from .errors import DatasetError
from .schedule import build_schedule, epoch_batches, steps_per_epoch
from .spec import DatasetSpec


@dataclass(frozen=True)
class Sample:
    """One image at one resolution."""

    path: Path
    source_index: int
    placement: Placement
    repeats: int
    latent_key: str
    has_mask: bool
    captions: tuple[str, ...]
    """Variant 0 is the caption as written (trigger applied); more only with token shuffle."""
    text_keys: tuple[str, ...]
    dop_captions: tuple[str, ...]
    """The same variants with the trigger replaced by the class word; empty without class word."""
    dop_text_keys: tuple[str, ...]


@dataclass
class Batch:
    latents: torch.Tensor
    """(B, C, h, w) as cached (the encoder's dtype)."""
    context: torch.Tensor
    """(B, T, D); captions of different lengths are zero-padded at the end to the longest."""
    pooled: torch.Tensor | None
    """(B, P) or None when the text encoder gives no pooled vector (Flux.2)."""
    loss_mask: torch.Tensor | None
    """(B, 1, h, w) in [0, 1] from alpha channels (1 for samples without alpha); None when no sample has one."""
    captions: list[str]
    """Text actually used per sample ("" when dropped)."""
    dop_context: torch.Tensor | None
    dop_pooled: torch.Tensor | None
    dop_captions: list[str] | None
    """DOP prior captions (trigger -> class word); None without class word."""
    paths: list[Path]
    epoch: int
    loss_weights: torch.Tensor | None = None
    """(B,) float32: each sample's folder's loss_weight (kohya's prior_loss_weight for reg folders)."""


def _stack_text(entries: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    contexts = [e["context"] for e in entries]
    longest = max(c.shape[0] for c in contexts)
    context = torch.stack([torch.nn.functional.pad(c, (0, 0, 0, longest - c.shape[0])) for c in contexts])
    pooled_present = ["pooled" in e for e in entries]
    if any(pooled_present) and not all(pooled_present):
        raise DatasetError("Text cache mixes encodings with and without pooled vectors; delete .latent_cache/text.")
    pooled = torch.stack([e["pooled"] for e in entries]) if all(pooled_present) else None
    return context, pooled


class TrainingDataset:
    """Built by `build_dataset`; read by the trainer through `batch(step)`."""

    def __init__(
        self,
        spec: DatasetSpec,
        samples: tuple[Sample, ...],
        empty_text_key: str | None,
        texts: EncodingCache,
        latents: EncodingCache,
    ) -> None:
        self.spec = spec
        self.samples = samples
        self._empty_key = empty_text_key
        self._texts = texts
        self._latents = latents
        buckets: dict[tuple[int, int], list[int]] = {}
        for index, sample in enumerate(samples):
            buckets.setdefault(sample.placement.bucket, []).append(index)
        self.buckets = {key: tuple(buckets[key]) for key in sorted(buckets)}
        """bucket (width, height) -> sample indices; a batch never mixes buckets."""
        self.schedule = build_schedule(samples, spec.sources, self.buckets)
        self.image_count = len({s.path for s in samples})
        self.report = None
        """DatasetReport, set by build_dataset."""
        self._plan = lru_cache(maxsize=2)(self._epoch_plan)

    def __len__(self) -> int:
        """Samples per epoch: every training image at every resolution, times its repeats, plus the
        regularisation draws."""
        return sum(self.schedule.bucket_sizes().values())

    @property
    def fingerprint(self) -> str:
        """Identifies the exact training data and schedule; a resume can check it is unchanged.
        Folder roles, ratios, weights and dropout enter only when set, so sets without them keep the
        fingerprint they had before those settings existed (their runs still resume)."""
        keys = "|".join(f"{s.latent_key}:{s.repeats}:{','.join(s.text_keys)}" for s in self.samples)
        options = [f"{i}:{s.role}:{s.reg_ratio}:{s.loss_weight}:{s.caption_dropout}"
                   for i, s in enumerate(self.spec.sources)
                   if s.regularisation or s.loss_weight != 1.0 or s.caption_dropout is not None]
        if options:
            keys += "|folders:" + ";".join(options)
        return f"{stream_seed(self.spec.seed, 'dataset', keys):016x}"

    def steps_per_epoch(self, batch_size: int) -> int:
        if batch_size < 1:
            raise DatasetError(f"batch_size={batch_size} must be >= 1.")
        return steps_per_epoch(self.schedule, batch_size)

    def _epoch_plan(self, epoch: int, batch_size: int, seed: int) -> tuple[tuple[int, ...], ...]:
        return epoch_batches(self.schedule, epoch, batch_size, seed)

    def batch_indices(self, step: int, batch_size: int, seed: int) -> tuple[int, ...]:
        """Sample indices of the batch trained at `step` (0-based)."""
        if step < 0:
            raise DatasetError(f"step={step} must be >= 0.")
        epoch, index = divmod(step, self.steps_per_epoch(batch_size))
        return self._plan(epoch, batch_size, seed)[index]

    def batch(self, step: int, batch_size: int, seed: int) -> Batch:
        """The batch of micro-step `step` for a run of `batch_size` and `seed` (train.batch_size, train.seed)."""
        indices = self.batch_indices(step, batch_size, seed)
        samples = [self.samples[i] for i in indices]
        gen = generator(seed, "step", step)
        dropout = torch.tensor([self.spec.caption_dropout_of(s.source_index) for s in samples])
        dropped = (torch.rand(len(samples), generator=gen) < dropout).tolist()
        variants = [int(torch.randint(len(s.captions), (1,), generator=gen)) for s in samples]
        entries = [self._latents.read(s.latent_key) for s in samples]
        latents = torch.stack([e["latent"] for e in entries])
        loss_mask = None
        if any("mask" in e for e in entries):
            ones = torch.ones((1, *latents.shape[-2:]), dtype=torch.float32)
            loss_mask = torch.stack([e.get("mask", ones).float() for e in entries])
        keys, captions = self._texts_for(samples, dropped, variants, dop=False)
        context, pooled = _stack_text([self._texts.read(k) for k in keys])
        dop_context = dop_pooled = dop_captions = None
        if self.spec.class_word:
            dop_keys, dop_captions = self._texts_for(samples, dropped, variants, dop=True)
            dop_context, dop_pooled = _stack_text([self._texts.read(k) for k in dop_keys])
        weights = torch.tensor([self.spec.sources[s.source_index].loss_weight for s in samples], dtype=torch.float32)
        return Batch(latents, context, pooled, loss_mask, captions, dop_context, dop_pooled, dop_captions,
                     [s.path for s in samples], step // self.steps_per_epoch(batch_size), weights)

    def _texts_for(self, samples, dropped, variants, dop: bool) -> tuple[list[str], list[str]]:
        keys, captions = [], []
        for sample, drop, variant in zip(samples, dropped, variants):
            if drop:
                keys.append(self._empty_key)
                captions.append("")
            else:
                keys.append((sample.dop_text_keys if dop else sample.text_keys)[variant])
                captions.append((sample.dop_captions if dop else sample.captions)[variant])
        return keys, captions
