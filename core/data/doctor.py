"""The dataset doctor: every problem of a dataset found in one pass, before anything is encoded.

Why: a real folder has several problems at once (a truncated PNG, an empty file, a 6x6 thumbnail, a
caption in Latin-1, a caption whose image was deleted, a duplicate). Stopping at the first means
one queue per problem; skipping silently trains on garbage. `examine` reads every file cheaply
(image headers and integrity, captions, content hashes) and lists each problem with its policy:
the build then refuses once, naming all of them, or skips what the policies say to skip and shows
the rest in the report.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .captions import read_caption
from .errors import BadImage, DatasetError
from .images import probe
from .scan import ScannedImage
from .spec import DatasetSpec

UPSCALE_SKIP = 8.0
"""An image that would be upscaled this much to its smallest training resolution is a thumbnail, not
training data: it follows the on_small policy (a 6x6 image at 512 px is 85x)."""
UPSCALE_WARN = 2.0
"""Upscaled this much or more: kept, and named in the report (detail the model never saw)."""


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str
    policy: str | None
    """The policy that decides it: DatasetSpec's "on_bad_file" / "on_small", or "missing_caption"
    (the folder's missing_caption is "error": always refusing); None: a warning only."""


@dataclass(frozen=True)
class Diagnosis:
    problems: tuple[Problem, ...]
    digests: dict
    """sha256 of every readable image, by path (the builder keys the cache by it)."""

    def refusing(self, spec: DatasetSpec) -> list[Problem]:
        return [p for p in self.problems if p.policy == "missing_caption" or p.policy and getattr(spec, p.policy) == "error"]

    def skipped(self, spec: DatasetSpec) -> dict[Path, str]:
        return {p.path: p.reason for p in self.problems
                if p.policy in ("on_bad_file", "on_small") and getattr(spec, p.policy) == "skip"}

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.policy is None]


def examine(spec: DatasetSpec, scanned: list[ScannedImage], orphan_captions: list[Path]) -> Diagnosis:
    problems: list[Problem] = []
    digests: dict[Path, str] = {}
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for image in scanned:
        source = spec.sources[image.source_index]
        try:
            digests[image.path] = digest = _sha256(image.path)
            width, height = probe(image.path)
            _verify(image.path)
        except BadImage as exc:
            problems.append(Problem(image.path, exc.reason, "on_bad_file"))
            continue
        by_digest[digest].append(image.path)
        if min(width, height) < source.min_size:
            problems.append(Problem(image.path, f"{width}x{height} px is under min_size {source.min_size}", "on_small"))
            continue
        factor = min(source.resolutions) / max(width, height)
        if factor >= UPSCALE_SKIP:
            problems.append(Problem(image.path, f"{width}x{height} px would be upscaled {factor:.0f}x to "
                                    f"{min(source.resolutions)} px", "on_small"))
            continue
        if factor >= UPSCALE_WARN:
            problems.append(Problem(image.path, f"{width}x{height} px is upscaled {factor:.1f}x to "
                                    f"{min(source.resolutions)} px (blurry detail)", None))
        if source.caption_strategy != "textfile":
            continue  # the caption comes from the file name or the instance prompt: caption files are not read
        if image.caption_path is None and source.missing_caption == "error":
            problems.append(Problem(image.path, f"has no .{source.caption_ext} caption file", "missing_caption"))
        elif image.caption_path is not None:
            try:
                read_caption(image.caption_path)
            except DatasetError:
                problems.append(Problem(image.path, f"its caption {image.caption_path.name} is not UTF-8 text "
                                        "(re-save it as UTF-8)", "on_bad_file"))
    for paths in by_digest.values():
        for duplicate in paths[1:]:
            problems.append(Problem(duplicate, f"the same file as {paths[0]}", None))
    for caption in orphan_captions:
        problems.append(Problem(caption, "a caption without an image of the same name", None))
    return Diagnosis(tuple(problems), digests)


def refusal(spec: DatasetSpec, diagnosis: Diagnosis) -> DatasetError:
    """One error naming every problem (those that refuse first), with the policy that decides each."""
    refusing = diagnosis.refusing(spec)
    others = [p for p in diagnosis.problems if p not in refusing]
    lines = [f"The dataset has {len(diagnosis.problems)} problem(s); {len(refusing)} stop the build under the "
             "current policies:"]
    lines += [f"  {p.path}: {p.reason} [{_fix(p.policy)}]" for p in refusing]
    lines += [f"  {p.path}: {p.reason}" + (f" [{p.policy}: skipped]" if p.policy else " [warning]") for p in others]
    return DatasetError("\n".join(lines))


def _fix(policy: str) -> str:
    if policy == "missing_caption":
        return ("missing_caption='error': add the caption, or set missing_caption to 'trigger_only' or "
                "'folder_name' (or caption_strategy to 'filename' / 'instanceprompt')")
    return f"{policy}='error': fix the file, or set {policy}='skip'"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise BadImage(path, f"cannot be read ({exc})", "Check the file's permissions.") from exc
    return digest.hexdigest()


def _verify(path: Path) -> None:
    """PIL's integrity check (PNG: every chunk and its CRC, so a truncated file fails here)."""
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as exc:  # PIL raises SyntaxError, OSError, struct.error, ... for damaged files
        raise BadImage(path, f"damaged or truncated ({type(exc).__name__}: {exc})") from exc
