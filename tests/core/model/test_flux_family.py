"""The family table: every family the architecture proves has an entry, and the entries say what
ComfyUI does (latent geometry, Flux.2's padded context)."""

import pytest

from flux_lora_lab.core.model import flux_arch
from flux_lora_lab.core.model.flux_family import FAMILIES, family, family_of_latents


def test_every_proven_variant_is_a_family():
    assert set(flux_arch._PROVEN_VARIANTS) == set(FAMILIES)


def test_the_table_says_what_comfyui_does():
    flux1, flux2 = family("flux1"), family("flux2")
    assert (flux1.display_name, flux1.lora_keys, flux1.context_tokens) == ("Flux.1", "kohya", None)
    assert (flux2.display_name, flux2.lora_keys, flux2.context_tokens) == ("Flux.2", "bfl", 512)
    assert (flux1.latent_channels, flux1.vae_downscale, flux2.latent_channels, flux2.vae_downscale) == (16, 8, 128, 16)
    assert family_of_latents(16) is flux1 and family_of_latents(128) is flux2 and family_of_latents(4) is None


def test_an_unknown_family_is_named():
    with pytest.raises(ValueError, match="unknown model family 'sd3'; choose one of \\('flux1', 'flux2'\\)"):
        family("sd3")
