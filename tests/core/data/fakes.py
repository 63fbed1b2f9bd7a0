"""Small deterministic stand-ins for the VAE and text encoder, and image-folder helpers.

FakeVAE: 8x average pooling then a fixed 3 -> C channel mix (so latents depend on the pixels and
have the real 1/8 geometry). FakeTextEncoder: one hashed embedding per word (so equal captions give
equal encodings and different captions different ones); optional fixed length like padded T5.
Both count their calls, which is how the cache tests see what was re-encoded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class FakeVAE:
    def __init__(self, fingerprint: str = "fake-vae-1", channels: int = 4) -> None:
        self.fingerprint = fingerprint
        self.calls = 0
        self.mix = torch.linspace(-1, 1, channels * 3).reshape(channels, 3)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        assert pixels.ndim == 4 and pixels.shape[-1] == 3 and pixels.dtype == torch.float32
        assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
        self.calls += 1
        pooled = F.avg_pool2d(pixels.permute(0, 3, 1, 2) * 2 - 1, 8)
        return torch.einsum("ck,bkhw->bchw", self.mix, pooled)


class FakeTextEncoder:
    def __init__(self, fingerprint: str = "fake-text-1", dim: int = 8, pooled_dim: int | None = 4,
                 length: int | None = None) -> None:
        self.fingerprint = fingerprint
        self.calls: list[str] = []
        self.dim, self.pooled_dim, self.length = dim, pooled_dim, length

    def _word(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little") >> 1
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, caption: str):
        self.calls.append(caption)
        words = caption.replace(",", " ").split()
        rows = [self._word(w) for w in words] or [torch.zeros(self.dim)]
        context = torch.stack(rows)
        if self.length is not None:
            context = F.pad(context[: self.length], (0, 0, 0, max(0, self.length - len(rows))))
        pooled = context.mean(0)[: self.pooled_dim] if self.pooled_dim else None
        return context, pooled


def gradient(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB image (compresses well, differs per seed)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    return ((base + 120 * x + 80 * y) % 256).astype(np.uint8)


def make_image(path: Path, width: int = 64, height: int = 64, seed: int = 0, mode: str = "RGB",
               caption: str | None = None, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(gradient(width, height, seed))
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, **save)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)
    return path
