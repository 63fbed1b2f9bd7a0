"""DatasetFromFolder and its ComfyUI encoder adapters, in-process on the real tiny VAE / CLIP.

Stand-ins are used only where the host cannot be driven in-process: a PromptServer to receive the
report event, and a VAE with a foreign latent width.
"""

import functools
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from tests.comfy_host import import_comfy

import_comfy()

import comfy.latent_formats  # noqa: E402
import folder_paths  # noqa: E402

from flux_lora_lab.core.data import DatasetError  # noqa: E402
from flux_lora_lab.nodes._comfy.encoders import (  # noqa: E402
    REPORT_EVENT,
    ComfyLatentEncoder,
    ComfyTextEncoder,
    DatasetHandle,
)
from flux_lora_lab.nodes.dataset import DatasetFromFolder, parse_resolutions  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import build_tiny_flux_models  # noqa: E402

DEFAULTS = dict(resolutions="64", repeats=0, recursive=False, caption_ext="txt", missing_caption="error", trigger="ohwx",
                class_word="", caption_dropout=0.0, shuffle_tokens=False, keep_tokens=1, crop="center", no_upscale=False,
                square_only=False, alpha_as_mask=False, min_size=0, small_images="skip", bad_files="error",
                seed=0)


@functools.cache
def tiny(variant, seed=0):
    return build_tiny_flux_models(variant, seed=seed)


@pytest.fixture
def dirs(tmp_path):
    old = folder_paths.get_input_directory(), folder_paths.get_output_directory()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    (tmp_path / "input").mkdir()
    yield tmp_path
    folder_paths.set_input_directory(old[0])
    folder_paths.set_output_directory(old[1])


def make_folder(root, count=2, size=(64, 48), seed=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"img{i}.png")
        (root / f"img{i}.txt").write_text(f"photo {i} of ohwx")
    return root


def run_node(folder, variant="flux1-dev", models=None, **overrides):
    models = models or tiny(variant)
    out = DatasetFromFolder.execute(folder=str(folder), vae=models.vae, clip=models.clip, **{**DEFAULTS, **overrides})
    return out.args[0], out.args[1], out


def test_resolutions_are_parsed_and_bad_text_named():
    assert parse_resolutions("512, 768,1024") == (512, 768, 1024) and parse_resolutions("1024") == (1024,)
    for bad in ("", "abc", "512,x"):
        with pytest.raises(DatasetError, match="resolutions=.*e.g. '1024'"):
            parse_resolutions(bad)


def test_folder_is_absolute_or_relative_to_the_input_directory(dirs):
    make_folder(dirs / "input" / "mine")
    handle, _, _ = run_node("mine")
    assert handle.spec.sources[0].folder == dirs / "input" / "mine"
    assert DatasetFromFolder.validate_inputs(str(dirs / "input" / "mine"), "64") is True
    message = DatasetFromFolder.validate_inputs("nope", "64")
    assert f"Dataset folder {dirs / 'input' / 'nope'} does not exist" in message and "input directory" in message
    assert "folder is empty" in DatasetFromFolder.validate_inputs("  ", "64")
    assert "resolutions='big'" in DatasetFromFolder.validate_inputs("mine", "big")
    with pytest.raises(DatasetError, match="nope does not exist"):
        run_node(dirs / "nope")


@pytest.mark.parametrize("variant,fmt", [("flux1-dev", comfy.latent_formats.Flux), ("flux2-dev", comfy.latent_formats.Flux2)])
def test_latents_are_in_the_models_latent_space(variant, fmt):
    vae = tiny(variant).vae
    encoder = ComfyLatentEncoder(vae)
    pixels = torch.rand((1, 64, 48, 3), generator=torch.Generator().manual_seed(0))
    expected = fmt().process_in(vae.encode(pixels))
    assert torch.equal(encoder.encode(pixels), expected)
    assert encoder.family == variant.split("-")[0] and fmt.__name__ in encoder.fingerprint
    assert encoder.fingerprint == ComfyLatentEncoder(build_tiny_flux_models(variant).vae).fingerprint
    assert encoder.fingerprint != ComfyLatentEncoder(build_tiny_flux_models(variant, seed=5).vae).fingerprint


def test_a_non_flux_vae_is_refused():
    with pytest.raises(DatasetError, match="VAE gives 4 latent channels; Flux.1's VAE gives 16 and Flux.2's VAE gives 128"):
        ComfyLatentEncoder(types.SimpleNamespace(latent_channels=4))


def test_text_is_encoded_like_clip_text_encode_and_flux2_is_left_padded():
    clip1 = tiny("flux1-dev").clip
    context, pooled = ComfyTextEncoder(clip1).encode("a red fox")
    ref_context, ref_pooled = clip1.encode_from_tokens(clip1.tokenize("a red fox"), return_pooled=True)
    assert torch.equal(context, ref_context[0]) and torch.equal(pooled, ref_pooled[0])

    clip2 = tiny("flux2-dev").clip
    context, pooled = ComfyTextEncoder(clip2, pad_to=512).encode("a red fox")
    raw, _ = clip2.encode_from_tokens(clip2.tokenize("a red fox"), return_pooled=True)
    pad = 512 - raw.shape[1]
    assert pooled is None and context.shape == (512, raw.shape[2]) and pad > 0
    assert torch.equal(context[:pad], torch.zeros_like(context[:pad])) and torch.equal(context[pad:], raw[0])
    assert ComfyTextEncoder(clip2, pad_to=512).fingerprint != ComfyTextEncoder(clip2).fingerprint


def test_second_build_encodes_nothing_and_nothing_is_written_in_the_dataset_folder(dirs):
    folder = make_folder(dirs / "input" / "set")
    before = sorted(p.name for p in folder.iterdir())
    handle, report, out = run_node(folder)
    first = handle.report.data["cache"]
    assert (first["latents_encoded"], first["texts_encoded"]) == (2, 2)
    assert "Dataset: 2 images" in report and out.ui.as_dict() == {"text": (report,)}
    again, _, _ = run_node(folder)
    second = again.report.data["cache"]
    assert (second["latents_encoded"], second["texts_encoded"], second["latents_reused"]) == (0, 0, 2)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert any((dirs / "output" / "fluxlab" / ".dataset_cache" / ".latent_cache" / "latents").rglob("*.safetensors"))
    batch = again.dataset.batch(0, 1, 0)
    width, height = again.dataset.samples[0].placement.bucket
    assert batch.latents.shape == (1, 16, height // 8, width // 8) and batch.context.shape[-1] == 64 and batch.pooled.shape == (1, 32)


def test_handle_carries_what_train_lora_needs(dirs):
    models = tiny("flux2-dev")
    handle, _, _ = run_node(make_folder(dirs / "input" / "f2"), models=models, class_word="person")
    assert isinstance(handle, DatasetHandle)
    assert (handle.trigger, handle.class_word, handle.family) == ("ohwx", "person", "flux2")
    assert handle.vae is models.vae and handle.clip is models.clip
    batch = handle.dataset.batch(0, 1, 0)
    assert batch.context.shape[1] == 512 and batch.pooled is None
    assert batch.dop_captions in (["photo 0 of person"], ["photo 1 of person"])
    handle.require_family("flux2")
    with pytest.raises(DatasetError, match="encoded for flux2 .* training model is flux1"):
        handle.require_family("flux1")


def test_chained_nodes_combine_folders_with_their_own_options(dirs):
    first, _, _ = run_node(make_folder(dirs / "input" / "a", count=2), resolutions="64", repeats=3)
    combined, report, _ = run_node(make_folder(dirs / "input" / "b", count=1, seed=1), resolutions="32,64",
                                   dataset=first)
    folders = combined.report.data["folders"]
    assert [(f["images"], f["resolutions"], f["repeats"]) for f in folders] == [(2, [64], {"3": 2}), (1, [32, 64], {"1": 1})]
    assert combined.report.data["cache"]["latents_encoded"] == 2  # only folder b (2 resolutions); a is cached
    other = build_tiny_flux_models("flux1-dev", seed=9)
    with pytest.raises(DatasetError, match="another VAE or CLIP"):
        run_node(dirs / "input" / "b", models=other, dataset=first)


def test_truncated_images_are_refused_even_when_pil_is_told_to_load_them(dirs):
    folder = make_folder(dirs / "input" / "broken", count=2)
    data = (folder / "img1.png").read_bytes()
    (folder / "img1.png").write_bytes(data[: len(data) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what node_helpers.pillow / other packs may leave behind
    try:
        with pytest.raises(DatasetError, match=r"img1\.png"):
            run_node(folder)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
        handle, report, _ = run_node(folder, bad_files="skip")
        assert handle.report.data["images"] == 1 and "Rejected: " in report and "img1.png" in report
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_report_is_sent_to_the_panel(dirs, monkeypatch):
    sent = []
    instance = types.SimpleNamespace(send_sync=lambda event, data, sid=None: sent.append((event, data)))
    monkeypatch.setitem(sys.modules, "server", types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=instance)))
    handle, report, _ = run_node(make_folder(dirs / "input" / "ev"))
    assert [event for event, _ in sent] == [REPORT_EVENT] == ["fluxlab.dataset_report"]
    assert sent[0][1] == {"run_id": None, "report": handle.report.data, "text": report}


def test_fingerprint_follows_the_folder_contents(dirs):
    folder = make_folder(dirs / "input" / "fp")
    first = DatasetFromFolder.fingerprint_inputs(folder=str(folder))
    assert DatasetFromFolder.fingerprint_inputs(folder=str(folder)) == first
    (folder / "img0.txt").write_text("a longer caption now")
    assert DatasetFromFolder.fingerprint_inputs(folder=str(folder)) != first
    assert DatasetFromFolder.fingerprint_inputs(folder="missing").startswith("unusable")


def test_per_folder_widgets_reach_the_folder_source(dirs):
    """folder_caption_dropout -1 means the set's; a reg node on its own is refused, chained it is not."""
    first, _, _ = run_node(make_folder(dirs / "input" / "a", count=2), folder_caption_dropout=0.3, loss_weight=2.0)
    own = first.spec.sources[0]
    assert (own.caption_dropout, own.loss_weight, own.role) == (0.3, 2.0, "train")
    reg_folder = make_folder(dirs / "input" / "reg", count=2, seed=3)
    with pytest.raises(DatasetError, match="connect the DatasetFromFolder of the training images"):
        run_node(reg_folder, role="regularisation")
    combined, _, _ = run_node(reg_folder, role="regularisation", reg_ratio=0.2, caption_strategy="instanceprompt",
                              instance_prompt="a photo of a person", dataset=first)
    reg = combined.spec.sources[1]
    assert (reg.caption_dropout, reg.role, reg.reg_ratio, reg.caption_strategy) == (None, "regularisation", 0.2,
                                                                                   "instanceprompt")
    assert combined.report.data["folders"][1]["reg_samples_per_epoch"] == 1  # 2 * 0.2 / 0.8 = 0.5, half up
