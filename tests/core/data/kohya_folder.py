"""A kohya user's real folder, with every common problem at once (shared by the doctor's core test
and the server test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPEAT_FOLDER = "10_sks_toy"
GOOD = ("good_a.png", "good_b.jpg", "cmyk.jpg", "sixteen_bit.png", "palette.png", "no_caption.png", "good_a_copy.png")
"""What trains once bad files are skipped and missing captions become the trigger."""


def _pixels(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def write_kohya_folder(parent: Path) -> Path:
    """`parent/10_sks_toy/` as a user brings it; returns `parent` (what the user points at)."""
    folder = parent / REPEAT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(1)).save(folder / "good_a.png")
    Image.fromarray(_pixels(2)).save(folder / "good_b.jpg")
    Image.fromarray(_pixels(3)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((_pixels(4)[..., 0].astype(np.uint16) * 257)).save(folder / "sixteen_bit.png")
    Image.fromarray(_pixels(5)).convert("P").save(folder / "palette.png")
    Image.fromarray(_pixels(6)).save(folder / "no_caption.png")
    shutil.copy(folder / "good_a.png", folder / "good_a_copy.png")
    Image.fromarray(_pixels(7)).save(folder / "truncated.png")
    (folder / "truncated.png").write_bytes((folder / "truncated.png").read_bytes()[:300])
    (folder / "empty.png").write_bytes(b"")
    Image.fromarray(_pixels(8, size=6)).save(folder / "tiny.png")
    Image.fromarray(_pixels(9)).save(folder / "latin1.png")
    for name in ("good_a", "good_b", "cmyk", "sixteen_bit", "palette", "good_a_copy", "truncated", "empty", "tiny"):
        (folder / f"{name}.txt").write_text(f"sks toy, {name}", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("sks toy, caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "orphan.txt").write_text("sks toy, an image that was deleted")
    return parent


EXPECTED = {
    # file: (words of its problem, refuses at the defaults)
    "truncated.png": ("damaged or truncated", True),
    "empty.png": ("not a readable image", True),
    "latin1.png": ("not UTF-8", True),
    "no_caption.png": ("has no .txt caption file", True),
    "tiny.png": ("6x6 px would be upscaled 11x to 64 px", False),
    "good_a_copy.png": ("the same file as", False),
    "orphan.txt": ("a caption without an image", False),
}
