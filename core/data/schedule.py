"""Which samples an epoch trains on, in which batches: a pure function of (seed, epoch), one bucket per batch.

Training folders: every sample `repeats` times per epoch. Regularisation folders (kohya's reg
images, SimpleTuner's is_regularisation_data) get a fixed number of draws per epoch so that each
makes up its `reg_ratio` of the epoch's samples: n_reg = n_train * r / (1 - R) rounded half up (at
least 1: a folder marked as regularisation is always used), with n_train the training samples per
epoch (repeats included) and R the sum of all reg folders' ratios. One reg folder at 0.5 is kohya's
balance: as many reg samples as training samples per epoch.

A reg folder's draws are spread over its buckets in proportion to its samples (x repeats) in each,
once for the whole run, so every epoch has the same length and step -> (epoch, batch) stays a
division (resume needs no loader state). Which reg samples fill the slots changes per epoch: the
epochs walk through shuffles of the bucket's reg samples, each drawn once before any is drawn again.
(kohya, with more reg images than it needs, uses the same first ones every epoch.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..seeding import generator

Bucket = tuple[int, int]


@dataclass(frozen=True)
class RegPool:
    """One reg folder's samples in one bucket and how many of them each epoch draws."""

    bucket: Bucket
    source_index: int
    entries: tuple[int, ...]
    """Sample indices, each repeated `repeats` times."""
    draws: int


@dataclass(frozen=True)
class Schedule:
    train: dict[Bucket, tuple[int, ...]]
    """bucket -> training sample indices, each repeated `repeats` times (every bucket, possibly empty)."""
    reg: tuple[RegPool, ...]

    def bucket_sizes(self) -> dict[Bucket, int]:
        """Samples per epoch in each bucket (the same every epoch)."""
        sizes = {bucket: len(entries) for bucket, entries in self.train.items()}
        for pool in self.reg:
            sizes[pool.bucket] += pool.draws
        return sizes

    @property
    def train_samples(self) -> int:
        return sum(len(entries) for entries in self.train.values())

    def reg_draws(self, source_index: int) -> int:
        return sum(p.draws for p in self.reg if p.source_index == source_index)


def _largest_remainder(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`; leftovers go to the largest fractions, first wins ties."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    shares = [math.floor(x) for x in exact]
    by_fraction = sorted(range(len(weights)), key=lambda i: -(exact[i] - shares[i]))
    for i in by_fraction[: total - sum(shares)]:
        shares[i] += 1
    return shares


def build_schedule(samples, sources, buckets: dict[Bucket, tuple[int, ...]]) -> Schedule:
    """`samples`: the dataset's Samples; `sources`: its FolderSources; `buckets`: bucket -> sample indices."""
    train = {b: tuple(i for i in idx if not sources[samples[i].source_index].regularisation
                      for _ in range(samples[i].repeats)) for b, idx in buckets.items()}
    n_train = sum(len(entries) for entries in train.values())
    reg_share = sum(s.reg_ratio for s in sources if s.regularisation)
    pools: list[RegPool] = []
    for source_index, source in enumerate(sources):
        if not source.regularisation:
            continue
        mine = {b: tuple(i for i in idx if samples[i].source_index == source_index for _ in range(samples[i].repeats))
                for b, idx in buckets.items()}
        mine = {b: entries for b, entries in mine.items() if entries}
        if not mine:
            continue
        total = max(1, math.floor(n_train * source.reg_ratio / (1.0 - reg_share) + 0.5))
        for (bucket, entries), draws in zip(mine.items(), _largest_remainder(total, [len(e) for e in mine.values()])):
            pools.append(RegPool(bucket, source_index, entries, draws))
    return Schedule(train, tuple(pools))


def _reg_draw(pool: RegPool, epoch: int, seed: int) -> list[int]:
    """This epoch's `draws` samples of the pool: positions [epoch * draws, (epoch + 1) * draws) of an
    endless sequence of shuffles of the pool (shuffle k seeded by (seed, pool, k)), so each reg
    sample is drawn once before any is drawn again, across epochs, and any epoch is computed alone."""
    size = len(pool.entries)
    start, end = epoch * pool.draws, (epoch + 1) * pool.draws
    drawn: list[int] = []
    for cycle in range(start // size, (end - 1) // size + 1) if pool.draws else ():
        gen = generator(seed, "regularisation", (pool.bucket, pool.source_index, cycle))
        order = [pool.entries[j] for j in torch.randperm(size, generator=gen).tolist()]
        lo, hi = max(start - cycle * size, 0), min(end - cycle * size, size)
        drawn.extend(order[lo:hi])
    return drawn


def steps_per_epoch(schedule: Schedule, batch_size: int) -> int:
    return sum(math.ceil(n / batch_size) for n in schedule.bucket_sizes().values())


def epoch_batches(schedule: Schedule, epoch: int, batch_size: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Every bucket's samples shuffled, cut into batches within the bucket (the last may be smaller
    rather than dropping images), then the order of all batches shuffled."""
    gen = generator(seed, "epoch", epoch)
    batches: list[tuple[int, ...]] = []
    for bucket, train in schedule.train.items():
        entries = list(train)
        for pool in schedule.reg:
            if pool.bucket == bucket:
                entries.extend(_reg_draw(pool, epoch, seed))
        order = torch.randperm(len(entries), generator=gen).tolist()
        shuffled = [entries[j] for j in order]
        batches.extend(tuple(shuffled[k : k + batch_size]) for k in range(0, len(shuffled), batch_size))
    return tuple(batches[j] for j in torch.randperm(len(batches), generator=gen).tolist())
