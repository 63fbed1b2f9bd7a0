"""Disk caches: reused, invalidated exactly, damaged entries rebuilt, writes atomic."""

import torch

from flux_lora_lab.core.data import DatasetSpec, FolderSource, build_dataset
from flux_lora_lab.core.data.cache import CACHE_FOLDER, EncodingCache

from .fakes import FakeTextEncoder, FakeVAE, make_image


def _folder(tmp_path, count=5):
    folder = tmp_path / "10_maya"
    for i in range(count):
        make_image(folder / f"img{i}.png", 64 + 16 * (i % 3), 64, seed=i, caption=f"photo number {i}")
    return folder


def _spec(tmp_path, folder, **options):
    return DatasetSpec((FolderSource(folder, resolutions=(64, 96)),), cache_dir=tmp_path / "cache",
                       trigger="mchar", **options)


def _latent_files(tmp_path):
    return sorted((tmp_path / "cache" / CACHE_FOLDER / "latents").rglob("*.safetensors"))


def test_second_build_encodes_nothing(tmp_path):
    folder = _folder(tmp_path)
    vae, text = FakeVAE(), FakeTextEncoder()
    first = build_dataset(_spec(tmp_path, folder, caption_dropout=0.1), vae, text)
    assert vae.calls == 10 and len(text.calls) == 6  # 5 images x 2 resolutions; 5 captions + ""
    vae2, text2 = FakeVAE(), FakeTextEncoder()
    second = build_dataset(_spec(tmp_path, folder, caption_dropout=0.1), vae2, text2)
    assert vae2.calls == 0 and text2.calls == []
    assert second.report.data["cache"]["latents_reused"] == 10
    for step in range(8):
        a, b = first.batch(step, 1, 0), second.batch(step, 1, 0)
        torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
        torch.testing.assert_close(a.context, b.context, rtol=0, atol=0)
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temp files
    assert {p.parent.parent.name for p in (tmp_path / "cache").rglob("*.safetensors")} == {"latents", "text"}


def test_changed_file_re_encodes_alone(tmp_path):
    folder = _folder(tmp_path)
    build_dataset(_spec(tmp_path, folder), FakeVAE(), FakeTextEncoder())
    make_image(folder / "img2.png", 64 + 32, 64, seed=99)  # new pixels, same name and size
    vae, text = FakeVAE(), FakeTextEncoder()
    build_dataset(_spec(tmp_path, folder), vae, text)
    assert vae.calls == 2  # that image at its two resolutions, nothing else
    assert text.calls == []
    (folder / "img3.txt").write_text("a new caption")
    vae, text = FakeVAE(), FakeTextEncoder()
    build_dataset(_spec(tmp_path, folder), vae, text)
    assert vae.calls == 0 and text.calls == ["mchar, a new caption"]


def test_fingerprint_change_re_encodes_all(tmp_path):
    folder = _folder(tmp_path)
    build_dataset(_spec(tmp_path, folder), FakeVAE(), FakeTextEncoder())
    vae = FakeVAE(fingerprint="fake-vae-2")
    text = FakeTextEncoder()
    build_dataset(_spec(tmp_path, folder), vae, text)
    assert vae.calls == 10 and text.calls == []
    text2 = FakeTextEncoder(fingerprint="fake-text-2")
    build_dataset(_spec(tmp_path, folder), FakeVAE(fingerprint="fake-vae-2"), text2)
    assert len(text2.calls) == 5


def test_crop_and_seed_are_part_of_the_key(tmp_path):
    folder = tmp_path / "wide"
    make_image(folder / "w.png", 200, 64, caption="wide")
    source = FolderSource(folder, resolutions=(64,), crop="random")
    spec = DatasetSpec((source,), cache_dir=tmp_path / "cache", seed=0)
    build_dataset(spec, FakeVAE(), FakeTextEncoder())
    vae = FakeVAE()
    build_dataset(DatasetSpec((source,), cache_dir=tmp_path / "cache", seed=5), vae, FakeTextEncoder())
    assert vae.calls == 1
    vae = FakeVAE()
    build_dataset(DatasetSpec((source,), cache_dir=tmp_path / "cache", seed=0), vae, FakeTextEncoder())
    assert vae.calls == 0


def test_damaged_entries_are_detected_and_rebuilt(tmp_path):
    folder = _folder(tmp_path)
    first = build_dataset(_spec(tmp_path, folder), FakeVAE(), FakeTextEncoder())
    before = [first.batch(step, 1, 0).latents for step in range(first.steps_per_epoch(1))]  # read now: loading is lazy
    files = _latent_files(tmp_path)
    truncated, flipped = files[0], files[1]
    truncated.write_bytes(truncated.read_bytes()[:-40])
    data = bytearray(flipped.read_bytes())
    data[-3] ^= 0xFF  # one byte of tensor data: still loads, checksum differs
    flipped.write_bytes(bytes(data))
    text_file = sorted((tmp_path / "cache" / CACHE_FOLDER / "text").rglob("*.safetensors"))[0]
    text_file.write_bytes(b"garbage")
    vae, text = FakeVAE(), FakeTextEncoder()
    again = build_dataset(_spec(tmp_path, folder), vae, text)
    assert vae.calls == 2 and len(text.calls) == 1
    damaged = {d["file"] for d in again.report.data["cache"]["damaged_rebuilt"]}
    assert damaged == {str(truncated), str(flipped), str(text_file)}
    assert "damaged cache entry rebuilt" in again.report.text
    for step, latents in enumerate(before):
        torch.testing.assert_close(latents, again.batch(step, 1, 0).latents, rtol=0, atol=0)
    third = build_dataset(_spec(tmp_path, folder), FakeVAE(), FakeTextEncoder())
    assert third.report.data["cache"]["damaged_rebuilt"] == []


def test_cache_entry_wrong_shape_metadata_is_rejected(tmp_path):
    cache = EncodingCache(tmp_path, "latents")
    cache.store("ab" * 32, {"latent": torch.ones(4, 2, 2)})
    assert cache.load("ab" * 32) is not None
    from safetensors.torch import load_file, save_file
    path = cache.path("ab" * 32)
    tensors = load_file(path)
    save_file({"latent": tensors["latent"].reshape(4, 4)}, path, metadata={"sha256": "x", "shapes": "{}"})
    assert cache.load("ab" * 32) is None and not path.exists()


def test_bf16_entries_round_trip(tmp_path):
    cache = EncodingCache(tmp_path, "latents")
    latent = torch.randn(16, 4, 6, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    cache.store("cd" * 32, {"latent": latent})
    loaded = cache.load("cd" * 32)
    assert loaded["latent"].dtype == torch.bfloat16 and torch.equal(loaded["latent"], latent)
