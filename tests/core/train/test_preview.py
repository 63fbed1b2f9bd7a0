"""core/train/preview.py: the prompt library, sizes, the no-trigger twin (seed 002's progression/) and
real CFG previews, on a stand-in adapter whose velocity is known, and through the real loop."""

import io

import pytest
import torch
from PIL import Image

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.data.captions import without_trigger
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.train.preview import (PreviewPrompt, PreviewSize, PreviewSpec, expected_files, parse_sizes,
                                              progression_files, prompt_library, render_previews)
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import CONTEXT_DIM, POOLED_DIM, TOKENS, SyntheticData, adopt, tiny_owner


def test_prompt_library_names_lines_by_nickname_or_position():
    assert prompt_library("portrait: a photo of ohwx\n\n  a red fox  \nwide_2: ohwx, a beach, wide shot") == [
        ("portrait", "a photo of ohwx"), ("prompt_1", "a red fox"), ("wide_2", "ohwx, a beach, wide shot")]
    assert prompt_library("a photo: close up") == [("prompt_0", "a photo: close up")], "two words are no nickname"
    with pytest.raises(ValueError, match="'a' is used twice"):
        prompt_library("a: one\na: two")


def test_sizes_parse_width_by_height():
    assert parse_sizes("768x1024, 1024 x 768;512x512") == [(768, 1024), (1024, 768), (512, 512)]
    assert parse_sizes("") == []
    with pytest.raises(ValueError, match="'768' is not WIDTHxHEIGHT"):
        parse_sizes("768")


def test_the_no_trigger_prompt_puts_the_class_word_in_or_drops_the_trigger():
    assert without_trigger("a photo of ohwx on a beach", "ohwx", "woman") == "a photo of woman on a beach"
    assert without_trigger("ohwx, a beach, ohwx smiling", "ohwx") == "a beach, smiling"
    assert without_trigger("ohwxy stays", "ohwx") == "ohwxy stays", "whole words only"
    assert without_trigger("a photo of ohwx cat", "ohwx", "cat") == "a photo of cat", "not 'cat cat'"


class ConstantVelocity:
    """An adapter whose velocity is the first context value everywhere: Euler from sigma 1 to 0 then
    ends at noise - v exactly, so a render shows which velocity was used."""

    latent_channels = 3

    def __init__(self):
        self.module = torch.nn.Linear(1, 1)

    def predict(self, x, sigmas, context, pooled, guidance):
        return torch.full_like(x, float(context[0, 0, 0]))


def _prompt(name, value, twin=None):
    return PreviewPrompt(name, torch.full((2, 4), float(value)), None, no_trigger=twin)


def _latents(images):
    """The decode below writes latents * 10 + 128 as pixels: read them back."""
    return {name: torch.tensor(list(Image.open(io.BytesIO(data)).getdata()), dtype=torch.float32).sub(128).div(10)
            for name, data in images.items()}


def _decode(latents):
    pixels = latents[0].permute(1, 2, 0).mul(10).add(128).round().clamp(0, 255).to(torch.uint8).numpy()
    return [Image.fromarray(pixels)]


def _render(spec):
    return render_previews(ConstantVelocity(), spec, device=torch.device("cpu"), dtype=torch.float32, autocast=False,
                           patch_size=1)


def test_real_cfg_moves_from_the_negative_by_the_guidance_and_twins_share_the_noise():
    twin = _prompt("portrait_notrigger", 1.0)
    prompts = (_prompt("portrait", 3.0, twin),)
    sizes = (PreviewSize(4, 4, 4, 4), PreviewSize(8, 4, 8, 4))
    plain = PreviewSpec(prompts, _decode, sizes=sizes, steps=4, sigmas=(1.0, 0.75, 0.5, 0.25, 0.0))
    images = _render(plain)
    assert sorted(images) == sorted(expected_files(plain)) == [
        "portrait_4x4.png", "portrait_4x4_notrigger.png", "portrait_8x4.png", "portrait_8x4_notrigger.png"]
    latents = _latents(images)
    noise_only = latents["portrait_4x4.png"] + 3.0  # = noise: the trigger and no-trigger renders share it
    torch.testing.assert_close(latents["portrait_4x4_notrigger.png"], noise_only - 1.0, atol=0.06, rtol=0)

    cfg = PreviewSpec(prompts, _decode, sizes=sizes[:1], steps=4, sigmas=plain.sigmas, negative=_prompt("neg", 2.0),
                      real_guidance=4.0)
    guided = _latents(_render(cfg))["portrait_4x4.png"]
    torch.testing.assert_close(guided, noise_only - (2.0 + 4.0 * (3.0 - 2.0)), atol=0.06, rtol=0)
    with pytest.raises(ValueError, match="negative prompt"):
        PreviewSpec(prompts, _decode, sizes=sizes, real_guidance=2.0)


def test_progression_pairs_trigger_and_no_trigger_renders_by_step():
    spec = PreviewSpec((_prompt("p", 3.0, _prompt("p_notrigger", 1.0)), _prompt("q", 0.0)), _decode,
                       sizes=(PreviewSize(4, 4, 4, 4),))
    files = progression_files(125, spec, {"p_4x4.png": b"T", "p_4x4_notrigger.png": b"N", "q_4x4.png": b"Q"})
    assert files == {"progression/step_000125_p_4x4_trigger.png": b"T",
                     "progression/step_000125_p_4x4_notrigger.png": b"N"}


def test_the_loop_writes_progression_at_the_baseline_and_every_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(3)
    encode = lambda: (torch.randn(TOKENS, CONTEXT_DIM, generator=g), torch.randn(POOLED_DIM, generator=g))  # noqa: E731
    twin = PreviewPrompt("p0_notrigger", *encode())
    spec = PreviewSpec((PreviewPrompt("p0", *encode(), no_trigger=twin),), lambda x: [Image.new("RGB", (8, 8))],
                       sizes=(PreviewSize(8, 8, 8, 8),), steps=2)
    config = TrainConfig.from_dict({
        "lora": {"rank": 2, "targets": "attention"},
        "train": {"steps": 4, "batch_size": 1, "mixed_precision": "no", "gradient_checkpointing": False},
        "run": {"name": "prog", "trigger": "ohwx", "save_every": 2, "sample_every": 0},
    })
    train(TrainingJob(config, adopt(tiny_owner()), SyntheticData(), RunDir(tmp_path / "prog"), previews=spec),
          RunControl(None), lambda event: None)
    names = sorted(p.name for p in (tmp_path / "prog" / "progression").iterdir())
    assert names == [f"step_{s:06d}_p0_8x8_{kind}.png" for s in (0, 2, 4) for kind in ("notrigger", "trigger")]
    assert (tmp_path / "prog" / "checkpoint_000004" / "p0_8x8_notrigger.png").is_file()
