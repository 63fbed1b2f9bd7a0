"""Find the images of a folder, their caption files and their kohya repeat counts.

Only the file system is read here (names, not pixels). Files that are neither images nor caption
files are listed as ignored so the report can show them; hidden files and folders (including our
own `.latent_cache`) are never entered.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError
from .spec import FolderSource

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
_KOHYA = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class ScannedImage:
    path: Path
    source_index: int
    repeats: int
    folder_class: str
    """Caption used by missing_caption="folder_name": the kohya class (`40_maya_char` -> "maya char")."""
    caption_path: Path | None


@dataclass(frozen=True)
class ScanResult:
    images: tuple[ScannedImage, ...]
    ignored: tuple[Path, ...]
    orphan_captions: tuple[Path, ...] = ()
    """Caption files with no image of the same name beside them."""


def parse_kohya_folder(name: str) -> tuple[int | None, str]:
    """`40_maya_char` -> (40, "maya char"); `portraits` -> (None, "portraits")."""
    match = _KOHYA.match(name)
    if match and int(match.group(1)) > 0:
        return int(match.group(1)), match.group(2).replace("_", " ").strip()
    return None, name.replace("_", " ").strip()


def _walk(folder: Path, recursive: bool, top: bool = True):
    """Files under `folder`: every subfolder when `recursive`, else kohya's repeat folders
    (`10_sks_toy/`) directly inside it, as kohya reads a parent folder."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive or (top and parse_kohya_folder(entry.name)[0] is not None):
                yield from _walk(entry, recursive, top=False)
        elif entry.is_file():
            yield entry


def scan_source(source: FolderSource, source_index: int) -> ScanResult:
    folder = source.folder
    if not folder.is_dir():
        raise DatasetError(f"Dataset folder {folder} does not exist or is not a folder; check the path.")
    caption_suffix = "." + source.caption_ext.lower()
    images: list[ScannedImage] = []
    ignored: list[Path] = []
    captions: list[Path] = []
    for path in _walk(folder, source.recursive):
        suffix = path.suffix.lower()
        if suffix == caption_suffix:
            captions.append(path)
            continue
        if suffix not in IMAGE_EXTENSIONS:
            ignored.append(path)
            continue
        kohya_repeats, folder_class = parse_kohya_folder(path.parent.name)
        repeats = source.repeats if source.repeats is not None else (kohya_repeats or 1)
        caption = _caption_file(path, source.caption_ext)
        images.append(ScannedImage(path, source_index, repeats, folder_class, caption))
    used = {image.caption_path for image in images}
    return ScanResult(tuple(images), tuple(ignored), tuple(c for c in captions if c not in used))


def _caption_file(image: Path, ext: str) -> Path | None:
    """Same stem, caption extension; the extension's case may differ (`a.TXT`) on case-sensitive disks."""
    exact = image.with_suffix("." + ext)
    if exact.is_file():
        return exact
    for candidate in image.parent.glob(glob.escape(image.stem) + ".*"):
        if candidate.suffix.lower() == "." + ext.lower() and candidate.is_file():
            return candidate
    return None
