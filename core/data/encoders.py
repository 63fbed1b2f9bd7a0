"""The encoders a dataset is built with are handed in (the node adapts ComfyUI's VAE and CLIP).

`fingerprint` must change whenever the encoder's output would (other weights, other dtype, other
scaling): it is part of every cache key.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .errors import DatasetError


class LatentEncoder(Protocol):
    fingerprint: str

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, H, W, 3) float32 in [0, 1] -> latents (B, C, H/8, W/8) in the model's latent space."""


class TextEncoder(Protocol):
    fingerprint: str

    def encode(self, caption: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """caption -> (context (T, D), pooled (P,) or None)."""


def encode_latent(encoder: LatentEncoder, pixels: torch.Tensor) -> torch.Tensor:
    """One image (H, W, 3) -> its latent (C, h, w), shape-checked."""
    latent = encoder.encode(pixels.unsqueeze(0))
    if not isinstance(latent, torch.Tensor) or latent.ndim != 4 or latent.shape[0] != 1:
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise DatasetError(f"LatentEncoder {encoder.fingerprint!r} returned {shape}; expected (1, C, h, w).")
    return latent[0]


def encode_text(encoder: TextEncoder, caption: str) -> dict[str, torch.Tensor]:
    """{"context": (T, D)[, "pooled": (P,)]}; a leading batch dimension of 1 is accepted and dropped."""
    context, pooled = encoder.encode(caption)
    if context.ndim == 3 and context.shape[0] == 1:
        context = context[0]
    if context.ndim != 2:
        raise DatasetError(
            f"TextEncoder {encoder.fingerprint!r} returned context {tuple(context.shape)}; expected (T, D)."
        )
    out = {"context": context}
    if pooled is not None:
        pooled = pooled.reshape(-1) if pooled.ndim == 2 and pooled.shape[0] == 1 else pooled
        if pooled.ndim != 1:
            raise DatasetError(
                f"TextEncoder {encoder.fingerprint!r} returned pooled {tuple(pooled.shape)}; expected (P,)."
            )
        out["pooled"] = pooled
    return out
