"""Independent, reproducible random streams named by (seed, purpose, index).

Why a hash: `seed + epoch` style seeding makes streams of neighbouring seeds overlap (seed 1 epoch 0
== seed 0 epoch 1); hashing the whole tuple keeps every stream independent.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, purpose: str, index: object) -> int:
    digest = hashlib.sha256(f"{seed}|{purpose}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, purpose: str, index: object) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, purpose, index))
