"""In-training preview images: the same prompts and seeds at every checkpoint, so progress is comparable.

The engine samples with its own small Euler loop (core/train/flow.py) on the adapter it trains; decoding
latents to pictures needs a VAE, which the caller hands in as a function (the nodes layer wraps
ComfyUI's VAE). What ComfyUI's own sampler gives for a saved LoRA is SampleCheckpoint's job.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image

from ..model.adapter import TrainingAdapter
from .flow import euler_sample, image_seq_len

Decode = Callable[[torch.Tensor], Sequence[Image.Image]]


def prompt_lines(text: str | None) -> list[str]:
    """One prompt per non-empty line (surrounding spaces dropped); [] for none. The one splitter of
    every multi-line prompt widget (TrainLoRA's previews, CompareCheckpoints' columns)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@dataclass(frozen=True)
class PreviewPrompt:
    """One preview prompt, already encoded by the caller's text encoder."""

    name: str
    context: torch.Tensor  # (T, D)
    pooled: torch.Tensor | None  # (P,) or None
    text: str = ""  # what was encoded: the caption of the preview in the panel's gallery


@dataclass(frozen=True)
class PreviewSpec:
    """What to render: prompts, a fixed seed, latent size and sampler steps, and how to decode."""

    prompts: tuple[PreviewPrompt, ...]
    decode: Decode
    latent_height: int
    latent_width: int
    pixel_height: int
    pixel_width: int
    steps: int = 20
    seed: int = 0
    guidance: float = 3.5
    sigmas: tuple[float, ...] | None = None
    """The sampling schedule (steps + 1 descending sigmas ending at 0): the MODEL's own, as ComfyUI's
    KSampler computes it, so a preview shows what users get. None: BFL's size-dependent shift."""


def preview_file_name(index: int, prompt: PreviewPrompt, spec: PreviewSpec) -> str:
    """`prompt_0_512x512.png` as in seed 002's run folder layout (name kept out: it may be any text)."""
    return f"prompt_{index}_{spec.pixel_width}x{spec.pixel_height}.png"


@torch.no_grad()
def render_previews(adapter: TrainingAdapter, spec: PreviewSpec, *, device: torch.device,
                    dtype: torch.dtype, autocast: bool, patch_size: int) -> dict[str, bytes]:
    """{file name: PNG bytes}, one image per prompt, each from the same seeded noise."""
    out: dict[str, bytes] = {}
    was_training = adapter.module.training
    adapter.module.eval()
    try:
        for index, prompt in enumerate(spec.prompts):
            generator = torch.Generator().manual_seed(spec.seed)
            shape = (1, adapter.latent_channels, spec.latent_height, spec.latent_width)
            noise = torch.randn(shape, generator=generator).to(device, dtype)
            context = prompt.context.unsqueeze(0).to(device, dtype)
            pooled = None if prompt.pooled is None else prompt.pooled.unsqueeze(0).to(device, dtype)

            def velocity(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    return adapter.predict(x, sigmas, context, pooled, spec.guidance).to(dtype)

            schedule = None if spec.sigmas is None else torch.tensor(spec.sigmas, dtype=torch.float64)
            latents = euler_sample(velocity, noise, spec.steps, sigmas=schedule,
                                   image_seq_len=image_seq_len(spec.latent_height, spec.latent_width, patch_size))
            (image,) = spec.decode(latents.float().cpu())
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            out[preview_file_name(index, prompt, spec)] = buffer.getvalue()
    finally:
        adapter.module.train(was_training)
    return out
