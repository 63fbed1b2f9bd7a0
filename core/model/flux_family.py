"""What a Flux family is beyond one module's shapes: its name for people, its LoRA file keys, the
length ComfyUI pads its text context to, and the geometry of its VAE latents.

Why one table: these differences were branches on "flux1" / "flux2" strings in five modules; every
reader now asks the family (`family("flux2").context_tokens`). The differences of the forward itself
(modulation, MLP, RoPE axes) are read from the module by core/flux_arch.FluxArch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FluxFamily:
    name: str  # "flux1" / "flux2": the value stored in configs and LoRA metadata
    display_name: str  # "Flux.1" in messages
    lora_keys: str
    """'kohya' (`lora_unet_*` with lora_down / lora_up and `.alpha`) or 'bfl' (`diffusion_model.<BFL
    name>` with lora_A / lora_B, alpha folded into lora_B): core/model/lora_format.py."""
    context_tokens: int | None
    """Text tokens ComfyUI pads the context to at sampling (Flux.2: model_base.Flux2.extra_conds
    left-pads to 512); None: the text encoder's own length."""
    latent_channels: int  # of the family's VAE
    vae_downscale: int  # image pixels per latent pixel side


FAMILIES = {family.name: family for family in (
    FluxFamily("flux1", "Flux.1", lora_keys="kohya", context_tokens=None, latent_channels=16, vae_downscale=8),
    FluxFamily("flux2", "Flux.2", lora_keys="bfl", context_tokens=512, latent_channels=128, vae_downscale=16),
)}


def family(name: str) -> FluxFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of {tuple(FAMILIES)}")
    return FAMILIES[name]


def family_of_latents(channels: int) -> FluxFamily | None:
    """The family whose VAE gives `channels` latent channels (None: no Flux VAE)."""
    return next((f for f in FAMILIES.values() if f.latent_channels == channels), None)
