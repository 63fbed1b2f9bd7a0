"""Images as they come: EXIF orientation, odd modes, alpha, huge files, broken files.

Loading order matters for memory: a JPEG is decoded at a reduced scale (`Image.draft`), any other
image is reduced by an integer factor right after decoding (`Image.reduce`) and the full-size copy
is closed at once; only then are mode conversion, flattening and the EXIF rotation applied, on the
small image. So a huge file is never held at full size twice. The rotation uses the same table as
`PIL.ImageOps.exif_transpose`, applied after the reduction because reduced copies no longer carry
the EXIF block (a test checks the result equals `exif_transpose`).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .buckets import Placement
from .errors import BadImage

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "CMYK", "I", "F", "YCbCr", "RGBX"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_FIX = "Re-export the file, remove it, or set on_bad_file='skip'."


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except _READ_ERRORS:
        return 1


def probe(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header only."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            swapped = _orientation(img) in (5, 6, 7, 8)
    except _READ_ERRORS as exc:
        raise BadImage(path, f"not a readable image ({exc})", _FIX) from exc
    return (height, width) if swapped else (width, height)


def _to_rgb_or_rgba(img: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency; 16-bit is scaled, not clipped."""
    if img.mode in _SIXTEEN_BIT:
        array = np.asarray(img).astype(np.float32) / 257.0  # "I" is assumed to hold 16-bit values too
        img = Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def _decode_reduced(path: Path, raw_target: tuple[int, int]) -> Image.Image:
    """Decode at no less than `raw_target` (stored orientation), never keeping two full-size copies."""
    img = Image.open(path)
    try:
        if img.format == "JPEG":
            img.draft(None, raw_target)
        img.load()
        factor = min(img.width // raw_target[0], img.height // raw_target[1])
        if factor >= 2:
            if img.mode not in _REDUCIBLE:  # palette, 1-bit, 16-bit: convert first (smaller than RGB anyway)
                converted = _to_rgb_or_rgba(img)
                img.close()
                img = converted
            reduced = img.reduce(factor)
            img.close()
            img = reduced
        return img
    except _READ_ERRORS as exc:
        img.close()
        raise BadImage(path, f"cannot be decoded ({exc})", _FIX) from exc


def load_sample(path: Path, placement: Placement, want_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pixels (H, W, 3) float32 in [0, 1] (ComfyUI IMAGE layout) and, if asked and present, the
    alpha channel (H, W) float32 in [0, 1], both of the placement's bucket size."""
    try:
        with Image.open(path) as header:
            orientation = _orientation(header)
    except _READ_ERRORS as exc:
        raise BadImage(path, f"not a readable image ({exc})", _FIX) from exc
    width, height = placement.resized
    raw_target = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    img = _decode_reduced(path, raw_target)
    try:
        img = _to_rgb_or_rgba(img)
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        alpha = None
        if img.mode == "RGBA":
            alpha = img.getchannel("A")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img).convert("RGB")
        box = (*placement.crop, placement.crop[0] + placement.bucket[0], placement.crop[1] + placement.bucket[1])
        rgb = img.resize(placement.resized, Image.Resampling.LANCZOS).crop(box)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)
        mask = None
        if want_mask and alpha is not None:
            alpha = alpha.resize(placement.resized, Image.Resampling.BILINEAR).crop(box)
            mask = torch.from_numpy(np.asarray(alpha, dtype=np.float32) / 255.0)
        return pixels, mask
    except _READ_ERRORS as exc:
        raise BadImage(path, f"cannot be converted ({exc})", _FIX) from exc
    finally:
        img.close()
