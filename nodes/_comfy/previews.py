"""In-training preview images through the graph's own CLIP and VAE (core/train/preview.py does the sampling).

Prompts are encoded once, on the node's thread, by the encoder the dataset's captions went through
(CLIPTextEncode's steps plus Flux.2's context padding). The training thread only decodes: the
family's latent format `process_out`, then ComfyUI's VAE.decode (what KSampler + VAEDecode do), so
previews look like what ComfyUI shows for those latents. The schedule is the MODEL's own (what
KSampler with the "simple" scheduler uses), so a preview is what SampleCheckpoint renders.
"""

from __future__ import annotations

from typing import Sequence

import comfy.samplers
import torch
from PIL import Image

from ...core.model.flux_family import family as flux_family
from ...core.data.captions import mentions, without_trigger
from ...core.train.preview import Decode, PreviewPrompt, PreviewSize, PreviewSpec
from .encoders import ComfyTextEncoder, latent_format_for

# Image side granularity: Flux.1 latents are /8 with 2x2 patches, Flux.2 /16 with 1x1: both /16.
SIZE_MULTIPLE = 16


def vae_decoder(vae) -> Decode:
    _, fmt = latent_format_for(vae)

    def decode(latents: torch.Tensor) -> Sequence[Image.Image]:
        pixels = vae.decode(fmt.process_out(latents))  # (B, H, W, 3) in [0, 1]
        arrays = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return [Image.fromarray(a) for a in arrays]

    return decode


def model_schedule(patcher, steps: int, scheduler: str = "simple") -> tuple[float, ...]:
    """The sigmas ComfyUI's KSampler samples `patcher` with (its model's own sampling settings, e.g.
    Flux.1's shift 1.15; the "simple" scheduler SampleCheckpoint and the stock graphs default to)."""
    sampling = patcher.get_model_object("model_sampling")
    return tuple(float(s) for s in comfy.samplers.calculate_sigmas(sampling, scheduler, steps))


def build_preview_spec(prompts: Sequence[tuple[str, str]], clip, vae, family: str, *, width: int, height: int,
                       steps: int, seed: int, guidance: float, patcher=None, more_sizes: Sequence[tuple[int, int]] = (),
                       negative_prompt: str = "", real_guidance: float = 1.0, trigger: str = "",
                       class_word: str = "") -> PreviewSpec | None:
    """The PreviewSpec for TrainLoRA's preview inputs; None when there are no prompts. `prompts` are
    (file-name stem, text) pairs (core/train/preview.prompt_library). Each prompt that names the
    `trigger` gets its no-trigger twin (seed 002's progression). With the MODEL's `patcher`, previews
    follow its own sampling schedule (`model_schedule`)."""
    if not prompts:
        return None
    if clip is None or vae is None:
        missing = " and ".join(n for n, v in (("clip", clip), ("vae", vae)) if v is None)
        raise ValueError(f"preview_prompts are set but there is no {missing} (neither connected nor in the "
                         "dataset); connect the CLIP and VAE the model was loaded with, or clear preview_prompts")
    pixel_sizes = [(width, height), *[s for s in more_sizes if s != (width, height)]]
    for w, h in pixel_sizes:
        if w % SIZE_MULTIPLE or h % SIZE_MULTIPLE or not 64 <= min(w, h) <= max(w, h) <= 4096:
            raise ValueError(f"preview size {w}x{h} must be 64 to 4096 pixels a side, in multiples of {SIZE_MULTIPLE}")
    if real_guidance != 1.0 and not negative_prompt.strip():
        raise ValueError(f"preview_real_cfg {real_guidance} needs a preview_negative_prompt to guide away from; "
                         "set one, or preview_real_cfg 1 (off)")
    ratio = vae.spacial_compression_encode()
    encoder = ComfyTextEncoder(clip, flux_family(family).context_tokens)

    def encoded(name: str, text: str) -> PreviewPrompt:
        twin = None
        if trigger and mentions(text, trigger):
            plain = without_trigger(text, trigger, class_word)
            twin = PreviewPrompt(f"{name}_notrigger", *encoder.encode(plain), text=plain)
        return PreviewPrompt(name, *encoder.encode(text), text=text, no_trigger=twin)

    negative = PreviewPrompt("negative", *encoder.encode(negative_prompt)) if real_guidance != 1.0 else None
    sizes = tuple(PreviewSize(w, h, w // ratio, h // ratio) for w, h in pixel_sizes)
    return PreviewSpec(prompts=tuple(encoded(name, text) for name, text in prompts), decode=vae_decoder(vae),
                       sizes=sizes, steps=steps, seed=seed, guidance=guidance, negative=negative,
                       real_guidance=real_guidance, sigmas=None if patcher is None else model_schedule(patcher, steps))
