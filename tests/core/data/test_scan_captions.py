"""Folders and captions: formats, recursion, kohya repeats, trigger, missing-caption policies, shuffle."""

import pytest

from flux_lora_lab.core.data import DatasetError, DatasetSpec, FolderSource, build_dataset
from flux_lora_lab.core.data.captions import apply_trigger, class_caption, shuffle_variants
from flux_lora_lab.core.data.scan import parse_kohya_folder, scan_source

from .fakes import FakeTextEncoder, FakeVAE, make_image


def _build(tmp_path, *sources, **options):
    spec = DatasetSpec(tuple(sources), cache_dir=tmp_path / "cache", **options)
    return build_dataset(spec, FakeVAE(), FakeTextEncoder())


def test_all_formats_found_and_unknown_ignored(tmp_path):
    folder = tmp_path / "set"
    for ext, fmt in [("png", "PNG"), ("jpg", "JPEG"), ("JPEG", "JPEG"), ("webp", "WEBP"), ("bmp", "BMP"),
                     ("tif", "TIFF"), ("tiff", "TIFF")]:
        make_image(folder / f"img_{ext}.{ext}", caption="a photo", format=fmt)
    (folder / "readme.md").write_text("not an image")
    (folder / "clip.gif").write_bytes(b"GIF89a")
    (folder / ".hidden.png").write_bytes(b"junk")
    ds = _build(tmp_path, FolderSource(folder, resolutions=(64,)))
    assert ds.image_count == 7
    ignored = ds.report.data["ignored_files"]
    assert sorted(p.rsplit("/", 1)[-1] for p in ignored) == ["clip.gif", "readme.md"]
    assert "Ignored (not an image or caption)" in ds.report.text and "readme.md" in ds.report.text


def test_recursive_and_kohya_repeats(tmp_path):
    root = tmp_path / "data"
    make_image(root / "top.png", caption="top")
    make_image(root / "40_maya_char" / "a.png", caption="a")
    make_image(root / "sub" / "b.png", caption="b")
    flat = scan_source(FolderSource(root), 0)  # kohya's repeat folders are read at the defaults, as kohya does
    assert [i.path.name for i in flat.images] == ["a.png", "top.png"]
    deep = {i.path.name: i for i in scan_source(FolderSource(root, recursive=True), 0).images}
    assert set(deep) == {"top.png", "a.png", "b.png"}
    assert deep["a.png"].repeats == 40 and deep["a.png"].folder_class == "maya char"
    assert deep["b.png"].repeats == 1
    forced = {i.path.name: i.repeats for i in scan_source(FolderSource(root, recursive=True, repeats=3), 0).images}
    assert forced == {"top.png": 3, "a.png": 3, "b.png": 3}
    assert parse_kohya_folder("40_maya_char") == (40, "maya char")
    assert parse_kohya_folder("portraits") == (None, "portraits")
    assert parse_kohya_folder("0_x") == (None, "0 x")


def test_caption_ext_and_trigger_placement(tmp_path):
    folder = tmp_path / "set"
    make_image(folder / "a.png")
    (folder / "a.caption").write_text("a portrait of {trigger} smiling\n  in light")
    make_image(folder / "b.png")
    (folder / "b.caption").write_text("red dress")
    make_image(folder / "c.png")
    (folder / "c.caption").write_text("mchar at the beach")
    ds = _build(tmp_path, FolderSource(folder, resolutions=(64,), caption_ext="caption"), trigger="mchar")
    captions = {s.path.name: s.captions[0] for s in ds.samples}
    assert captions == {"a.png": "a portrait of mchar smiling in light", "b.png": "mchar, red dress",
                        "c.png": "mchar at the beach"}
    assert ds.report.data["captions"]["with_trigger"] == 3
    assert apply_trigger("", "tok") == "tok"
    assert apply_trigger("tokens of {trigger}", "") == "tokens of"
    assert apply_trigger("mcharx, dress", "mchar") == "mchar, mcharx, dress"  # whole words only


def test_missing_caption_error_names_every_file(tmp_path):
    folder = tmp_path / "20_maya"
    make_image(folder / "has.png", caption="x")
    make_image(folder / "nocap1.png")
    make_image(folder / "nocap2.jpg", format="JPEG")
    vae = FakeVAE()
    spec = DatasetSpec((FolderSource(folder, resolutions=(64,)),), cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError) as info:
        build_dataset(spec, vae, FakeTextEncoder())
    assert "nocap1.png" in str(info.value) and "nocap2.jpg" in str(info.value) and "missing_caption" in str(info.value)
    assert vae.calls == 0  # refused before anything was encoded


@pytest.mark.parametrize("policy, expected", [("trigger_only", "mchar"), ("folder_name", "mchar, maya")])
def test_missing_caption_policies(tmp_path, policy, expected):
    folder = tmp_path / "20_maya"
    make_image(folder / "nocap.png")
    ds = _build(tmp_path, FolderSource(folder, resolutions=(64,), missing_caption=policy), trigger="mchar")
    assert ds.samples[0].captions[0] == expected
    missing = ds.report.data["captions"]["missing"]
    assert missing == [{"image": str(folder / "nocap.png"), "used": policy, "caption": expected}]
    assert f"missing caption: {folder / 'nocap.png'} -> {policy}" in ds.report.text


def test_class_caption_and_shuffle_variants():
    assert class_caption("mchar, mchar's smile, mcharx", "mchar", "woman") == "woman, woman's smile, mcharx"
    caption = "mchar, red, blue, green, yellow"
    variants = shuffle_variants(caption, keep_tokens=1, count=8, seed=0, key="img")
    assert variants[0] == caption and len(variants) > 2
    for v in variants:
        tags = v.split(", ")
        assert tags[0] == "mchar" and sorted(tags[1:]) == ["blue", "green", "red", "yellow"]
    assert variants == shuffle_variants(caption, 1, 8, seed=0, key="img")
    assert variants != shuffle_variants(caption, 1, 8, seed=1, key="img")
    assert shuffle_variants("one tag", 0, 8, 0, "k") == ("one tag",)


def test_bad_settings_name_the_setting(tmp_path):
    with pytest.raises(DatasetError, match="missing_caption"):
        FolderSource(tmp_path, missing_caption="guess")
    with pytest.raises(DatasetError, match="multiple of 16"):
        FolderSource(tmp_path, resolutions=(500,))
    with pytest.raises(DatasetError, match="class_word"):
        DatasetSpec((FolderSource(tmp_path),), cache_dir=tmp_path, class_word="woman")
    with pytest.raises(DatasetError, match="does not exist"):
        _build(tmp_path, FolderSource(tmp_path / "nope"))


def test_unreadable_caption_and_bad_encoder_output_name_the_culprit(tmp_path):
    folder = tmp_path / "set"
    make_image(folder / "a.png")
    (folder / "a.txt").write_bytes(b"\xff\xfe\xfa caption in latin-1 \xe9")
    with pytest.raises(DatasetError, match=r"a\.txt is not UTF-8"):
        _build(tmp_path, FolderSource(folder, resolutions=(64,)))
    (folder / "a.txt").write_text("fine")

    class FlatVAE(FakeVAE):
        def encode(self, pixels):
            return super().encode(pixels)[0]

    spec = DatasetSpec((FolderSource(folder, resolutions=(64,)),), cache_dir=tmp_path / "c2")
    with pytest.raises(DatasetError, match="LatentEncoder 'fake-vae-1' returned"):
        build_dataset(spec, FlatVAE(), FakeTextEncoder())
