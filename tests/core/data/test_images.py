"""Images as they come: odd modes, EXIF rotation, alpha, broken files, tiny and huge images."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from flux_lora_lab.core.data import BadImage, DatasetError, DatasetSpec, FolderSource, build_dataset
from flux_lora_lab.core.data.buckets import Placement
from flux_lora_lab.core.data.images import load_sample, probe

from .fakes import FakeTextEncoder, FakeVAE, gradient, make_image


def _whole(width, height):
    return Placement(64, (width, height), (width, height), (0, 0))


def test_exif_rotation_matches_exif_transpose(tmp_path):
    img = Image.fromarray(gradient(48, 32, seed=3))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        img.save(path, exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), dtype=np.float32) / 255
        width, height = probe(path)
        assert (width, height) == ((32, 48) if orientation >= 5 else (48, 32)), orientation
        pixels, mask = load_sample(path, _whole(width, height), want_mask=True)
        assert mask is None
        torch.testing.assert_close(pixels, torch.from_numpy(expected), atol=1 / 255, rtol=0)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "LA", "I", "F"])
def test_modes_become_rgb(tmp_path, mode):
    path = tmp_path / f"m.{'tiff' if mode in ('CMYK', 'I', 'F') else 'png'}"
    make_image(path, 48, 32, mode=mode)
    pixels, _ = load_sample(path, _whole(48, 32), want_mask=False)
    assert pixels.shape == (32, 48, 3) and pixels.dtype == torch.float32
    assert 0 <= float(pixels.min()) and float(pixels.max()) <= 1


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels, _ = load_sample(path, _whole(64, 32), want_mask=False)
    expected = torch.from_numpy(ramp.astype(np.float32) / 65535)
    torch.testing.assert_close(pixels[..., 0], expected, atol=1.5 / 255, rtol=0)
    assert float(pixels.max()) == 1.0 and float(pixels.min()) == 0.0


def test_rgba_flattened_on_white_and_alpha_as_mask(tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, 16:, 3] = 255  # right half opaque, left half transparent
    path = tmp_path / "cut.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels, mask = load_sample(path, _whole(32, 32), want_mask=True)
    assert torch.all(pixels[:, :12] == 1.0)  # transparent -> white
    torch.testing.assert_close(pixels[:, 20:], torch.tensor([1.0, 0.0, 0.0]).expand(32, 12, 3))
    assert torch.all(mask[:, :12] == 0) and torch.all(mask[:, 20:] == 1)
    _, no_mask = load_sample(path, _whole(32, 32), want_mask=False)
    assert no_mask is None
    palette = tmp_path / "pal.png"
    Image.fromarray(rgba, "RGBA").convert("P").save(palette, transparency=0)
    assert load_sample(palette, _whole(32, 32), want_mask=True)[1] is not None


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(BadImage, match="junk.png"):
        probe(junk)
    buffer = io.BytesIO()
    Image.fromarray(gradient(64, 64)).save(buffer, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert probe(cut) == (64, 64)  # the header is intact ...
    with pytest.raises(BadImage, match=r"cut\.jpg.*cannot be decoded") as info:  # ... the pixels are not
        load_sample(cut, _whole(64, 64), want_mask=False)
    assert "on_bad_file" in str(info.value)


def _bad_folder(tmp_path):
    folder = tmp_path / "set"
    make_image(folder / "good.png", caption="good")
    make_image(folder / "tiny.png", 20, 20, caption="tiny")
    (folder / "junk.png").write_bytes(b"not an image at all")
    (folder / "junk.txt").write_text("junk")
    buffer = io.BytesIO()
    Image.fromarray(gradient(64, 64)).save(buffer, "JPEG")
    (folder / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "cut.txt").write_text("cut")
    return folder


def test_policies_through_build(tmp_path):
    folder = _bad_folder(tmp_path)
    source = FolderSource(folder, resolutions=(64,), min_size=32)
    spec = DatasetSpec((source,), cache_dir=tmp_path / "c", on_bad_file="skip", on_small="skip")
    vae = FakeVAE()
    ds = build_dataset(spec, vae, FakeTextEncoder())
    assert ds.image_count == 1 and vae.calls == 1
    reasons = {r["file"].rsplit("/", 1)[-1]: r["reason"] for r in ds.report.data["rejected"]}
    assert set(reasons) == {"tiny.png", "junk.png", "cut.jpg"}
    assert "under min_size 32" in reasons["tiny.png"]
    assert "not a readable image" in reasons["junk.png"] and "cannot be decoded" in reasons["cut.jpg"]
    assert f"Rejected: {folder / 'cut.jpg'}: cannot be decoded" in ds.report.text

    strict = DatasetSpec((source,), cache_dir=tmp_path / "c2", on_bad_file="error", on_small="skip")
    with pytest.raises(DatasetError, match="junk.png: not a readable image") as refused:
        build_dataset(strict, FakeVAE(), FakeTextEncoder())
    assert "tiny.png: 20x20 px is under min_size 32 [on_small: skipped]" in str(refused.value), "all problems at once"
    small = DatasetSpec((source,), cache_dir=tmp_path / "c3", on_bad_file="skip", on_small="error")
    with pytest.raises(DatasetError, match=r"tiny\.png: 20x20 px is under min_size 32 \[on_small='error'"):
        build_dataset(small, FakeVAE(), FakeTextEncoder())


def test_large_jpeg_decoded_reduced(tmp_path, monkeypatch):
    """A 2048 px JPEG for a 64 px bucket is decoded via draft (1/8 scale), never at full size."""
    path = make_image(tmp_path / "big.jpg", 2048, 1536, format="JPEG")
    sizes = []
    original_load = ImageFile.ImageFile.load

    def spy(self):
        result = original_load(self)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    placement = Placement(64, (80, 48), (85, 64), (2, 8))
    pixels, _ = load_sample(path, placement, want_mask=False)
    assert pixels.shape == (48, 80, 3)
    assert max(w for w, _ in sizes) <= 2048 // 8, sizes


def test_large_png_reduced_before_conversion(tmp_path):
    path = make_image(tmp_path / "big.png", 1024, 768, mode="P")
    pixels, _ = load_sample(path, Placement(64, (64, 48), (64, 48), (0, 0)), want_mask=False)
    assert pixels.shape == (48, 64, 3)
