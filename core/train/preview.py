"""In-training preview images: the same prompts and seeds at every checkpoint, so progress is comparable.

The engine samples with its own small Euler loop (core/train/flow.py) on the adapter it trains; decoding
latents to pictures needs a VAE, which the caller hands in as a function (the nodes layer wraps
ComfyUI's VAE). What ComfyUI's own sampler gives for a saved LoRA is SampleCheckpoint's job.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image

from ..model.adapter import TrainingAdapter
from .flow import euler_sample, image_seq_len

Decode = Callable[[torch.Tensor], Sequence[Image.Image]]


_NICKNAME = re.compile(r"([A-Za-z0-9_-]{1,40}):\s+(.+)")
_SIZE = re.compile(r"(\d+)\s*x\s*(\d+)")


def prompt_library(text: str | None) -> list[tuple[str, str]]:
    """(file-name stem, prompt) per line of a preview-prompt widget. A line "nickname: prompt" (one
    word of letters, digits, '_' or '-' before ': ') names its images after the nickname, as
    SimpleTuner's prompt library does; other lines are prompt_<i>. Nicknames must be unique."""
    out, seen = [], set()
    for index, line in enumerate(prompt_lines(text)):
        match = _NICKNAME.fullmatch(line)
        name, prompt = (match.group(1), match.group(2)) if match else (f"prompt_{index}", line)
        if name in seen:
            raise ValueError(f"preview prompt nickname {name!r} is used twice; give each line its own name")
        seen.add(name)
        out.append((name, prompt))
    return out


def parse_sizes(text: str | None) -> list[tuple[int, int]]:
    """"768x1024, 1024x768" -> [(768, 1024), (1024, 768)] (width x height); "" -> []."""
    sizes = []
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        match = _SIZE.fullmatch(part.strip())
        if not match:
            raise ValueError(f"preview size {part.strip()!r} is not WIDTHxHEIGHT, e.g. '768x1024'")
        sizes.append((int(match.group(1)), int(match.group(2))))
    return sizes


def prompt_lines(text: str | None) -> list[str]:
    """One prompt per non-empty line (surrounding spaces dropped); [] for none. The one splitter of
    every multi-line prompt widget (TrainLoRA's previews, CompareCheckpoints' columns)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@dataclass(frozen=True)
class PreviewPrompt:
    """One preview prompt, already encoded by the caller's text encoder."""

    name: str
    """File-name stem: `prompt_<i>`, or the prompt library's nickname ("portrait: a photo of ohwx")."""
    context: torch.Tensor  # (T, D)
    pooled: torch.Tensor | None  # (P,) or None
    text: str = ""
    """What was encoded: the caption of its images in the panel's gallery."""
    no_trigger: "PreviewPrompt | None" = None
    """The same prompt without the trigger (the class word in its place when there is one): rendered
    beside it at every step, seed 002's `progression/` (does the LoRA stay out of prompts without it?)."""


@dataclass(frozen=True)
class PreviewSize:
    pixel_width: int
    pixel_height: int
    latent_width: int
    latent_height: int


@dataclass(frozen=True)
class PreviewSpec:
    """What to render: prompts at each size, a fixed seed, sampler steps and guidance, how to decode."""

    prompts: tuple[PreviewPrompt, ...]
    decode: Decode
    sizes: tuple[PreviewSize, ...]
    steps: int = 20
    seed: int = 0
    guidance: float = 3.5
    """Flux's distilled guidance (the model input Flux.1 dev takes); 1 for models without it."""
    negative: PreviewPrompt | None = None
    real_guidance: float = 1.0
    """Real classifier-free guidance (SimpleTuner's validation_guidance_real): above 1 each step also
    runs the `negative` prompt and moves away from it, v = v_neg + g (v - v_neg); 1 = off."""
    sigmas: tuple[float, ...] | None = None
    """The sampling schedule (steps + 1 descending sigmas ending at 0): the MODEL's own, as ComfyUI's
    KSampler computes it, so a preview shows what users get. None: BFL's size-dependent shift."""

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("a PreviewSpec needs at least one size")
        if self.real_guidance != 1.0 and self.negative is None:
            raise ValueError("real guidance (preview_real_cfg != 1) needs a negative prompt to guide away from")


PROGRESSION_DIR = "progression"


def preview_file_name(prompt: PreviewPrompt, size: PreviewSize, suffix: str = "") -> str:
    """`prompt_0_512x512.png` as in seed 002's run folder layout (the prompt's text kept out: it may
    be anything); `suffix` "_notrigger" for the no-trigger twin."""
    return f"{prompt.name}_{size.pixel_width}x{size.pixel_height}{suffix}.png"


def progression_files(step: int, spec: PreviewSpec, images: dict[str, bytes]) -> dict[str, bytes]:
    """Seed 002's `progression/step_<step>_<prompt>_<size>_trigger.png` / `..._notrigger.png`: the
    renders of every prompt that has a no-trigger twin, named so a folder listing pairs them."""
    out = {}
    for prompt in spec.prompts:
        if prompt.no_trigger is None:
            continue
        for size in spec.sizes:
            stem = f"{PROGRESSION_DIR}/step_{step:06d}_{prompt.name}_{size.pixel_width}x{size.pixel_height}"
            for suffix, kind in (("", "trigger"), ("_notrigger", "notrigger")):
                name = preview_file_name(prompt, size, suffix)
                if name in images:
                    out[f"{stem}_{kind}.png"] = images[name]
    return out


def image_prompts(spec: PreviewSpec | None) -> dict[str, str]:
    """{file name: the prompt text it is rendered from} for every file `render_previews` writes."""
    if spec is None:
        return {}
    return {preview_file_name(p, size, suffix): (p if suffix == "" else p.no_trigger).text
            for p in spec.prompts for size in spec.sizes
            for suffix in ("", "_notrigger")[: 2 if p.no_trigger is not None else 1]}


def expected_files(spec: PreviewSpec) -> list[str]:
    """Every file `render_previews` writes for `spec`."""
    return list(image_prompts(spec))


@torch.no_grad()
def render_previews(adapter: TrainingAdapter, spec: PreviewSpec, *, device: torch.device,
                    dtype: torch.dtype, autocast: bool, patch_size: int) -> dict[str, bytes]:
    """{file name: PNG bytes}: each prompt (and its no-trigger twin) at each size, all from the same
    seeded noise per size, so images differ only by prompt and LoRA."""
    out: dict[str, bytes] = {}
    was_training = adapter.module.training
    adapter.module.eval()

    def encoded(prompt: PreviewPrompt):
        pooled = None if prompt.pooled is None else prompt.pooled.unsqueeze(0).to(device, dtype)
        return prompt.context.unsqueeze(0).to(device, dtype), pooled

    negative = encoded(spec.negative) if spec.negative is not None and spec.real_guidance != 1.0 else None
    try:
        for size in spec.sizes:
            for prompt in spec.prompts:
                for suffix, which in (("", prompt), ("_notrigger", prompt.no_trigger)):
                    if which is None:
                        continue
                    image = _render(adapter, spec, size, encoded(which), negative, device, dtype, autocast, patch_size)
                    buffer = io.BytesIO()
                    image.save(buffer, format="PNG")
                    out[preview_file_name(prompt, size, suffix)] = buffer.getvalue()
    finally:
        adapter.module.train(was_training)
    return out


def _render(adapter, spec: PreviewSpec, size: PreviewSize, condition, negative, device, dtype, autocast,
            patch_size) -> Image.Image:
    generator = torch.Generator().manual_seed(spec.seed)
    shape = (1, adapter.latent_channels, size.latent_height, size.latent_width)
    noise = torch.randn(shape, generator=generator).to(device, dtype)

    def predict(x, sigmas, context, pooled):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return adapter.predict(x, sigmas, context, pooled, spec.guidance).to(dtype)

    def velocity(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        v = predict(x, sigmas, *condition)
        if negative is None:
            return v
        v_negative = predict(x, sigmas, *negative)
        return v_negative + spec.real_guidance * (v - v_negative)

    schedule = None if spec.sigmas is None else torch.tensor(spec.sigmas, dtype=torch.float64)
    latents = euler_sample(velocity, noise, spec.steps, sigmas=schedule,
                           image_seq_len=image_seq_len(size.latent_height, size.latent_width, patch_size))
    (image,) = spec.decode(latents.float().cpu())
    return image
