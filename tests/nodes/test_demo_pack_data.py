"""The demo needs nothing but the pack: its pictures are drawn by the pack (deterministic), and the
tiny colour VAE decodes an encoded picture back to (about) that picture, so samples can show learning."""

import pytest
import torch

from tests.comfy_host import import_comfy

import_comfy()

import comfy.latent_formats  # noqa: E402
import comfy.sd  # noqa: E402
from PIL import Image  # noqa: E402

from flux_lora_lab.nodes._comfy.tiny_colour_vae import build_tiny_colour_vae  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import build_tiny_flux_models  # noqa: E402
from flux_lora_lab.nodes._demo_images import DEMO_IMAGES, demo_captions, write_demo_images  # noqa: E402


def _pixels(path) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype="float32") / 255.0)[None]


def test_demo_images_are_deterministic_and_left_alone_when_present(tmp_path):
    first, second = write_demo_images(tmp_path / "a"), write_demo_images(tmp_path / "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(f"{stem}.{ext}" for stem in DEMO_IMAGES for ext in ("png", "txt"))
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
    assert [(first / f"{stem}.txt").read_text().strip() for stem in DEMO_IMAGES] == demo_captions()
    before = {n: (first / n).stat().st_mtime_ns for n in names}
    (first / "red.png").unlink()
    write_demo_images(first)
    assert (first / "red.png").is_file()
    assert all((first / n).stat().st_mtime_ns == before[n] for n in names if n != "red.png")


def test_colour_vae_round_trip_keeps_the_pictures(tmp_path):
    vae = build_tiny_colour_vae(seed=2)
    assert isinstance(vae, comfy.sd.VAE) and vae.latent_channels == 16 and vae.downscale_ratio == 8
    folder = write_demo_images(tmp_path)
    pictures = torch.cat([_pixels(folder / f"{stem}.png") for stem in DEMO_IMAGES])
    latents = vae.encode(pictures)
    assert latents.shape == (len(DEMO_IMAGES), 16, 8, 8)
    # What the model trains on (Flux.1's latent space) is about unit size.
    assert 0.5 < comfy.latent_formats.Flux().process_in(latents).std() < 2.0
    decoded = vae.decode(latents)
    assert (decoded - pictures).abs().max() < 0.05  # the pictures are flat in 16 px blocks: nothing to lose
    # and the three pictures stay far apart next to that error.
    flat = latents.flatten(1)
    assert torch.cdist(flat, flat).fill_diagonal_(float("inf")).min() > 10 * (vae.encode(decoded) - latents).abs().max()


def test_colour_vae_is_seeded():
    a, b, c = (build_tiny_colour_vae(seed=s).first_stage_model.state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a if a[k].numel() > 1)


def test_tiny_models_pick_the_vae():
    assert type(build_tiny_flux_models("flux1-dev", vae="colour").vae.first_stage_model).__name__ == "TAESD"
    assert type(build_tiny_flux_models("flux1-dev").vae.first_stage_model).__name__ == "AutoencoderKL"
    with pytest.raises(ValueError, match="needs vae 'random'"):
        build_tiny_flux_models("flux2-dev", vae="colour")
