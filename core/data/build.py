"""Build a dataset: scan folders, check images, encode what the cache lacks, one image at a time.

Streaming: an image is decoded, encoded, written to the cache and dropped before the next one is
opened; what stays in memory per image is a small record (paths, keys, captions). Latents and text
encodings stay on disk and are read per batch (see dataset.py for why).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch.nn.functional as F

from .buckets import Placement, place
from .cache import EncodingCache, entry_key
from .captions import base_caption, class_caption, shuffle_variants
from .dataset import Sample, TrainingDataset
from .doctor import examine, refusal
from .encoders import LatentEncoder, TextEncoder, encode_latent, encode_text
from .errors import BadImage, DatasetError
from .images import load_sample, probe
from .report import ImageRecord, build_report
from .scan import IMAGE_EXTENSIONS, ScannedImage, scan_source
from .spec import DatasetSpec, FolderSource

Progress = Callable[[int, int, str], None]
"""progress(done, total, path): called before each image, for the node's progress event."""


@dataclass
class _Builder:
    spec: DatasetSpec
    latent_encoder: LatentEncoder
    text_encoder: TextEncoder

    def __post_init__(self) -> None:
        self.latents = EncodingCache(self.spec.cache_dir, "latents")
        self.texts = EncodingCache(self.spec.cache_dir, "text")
        self.counts: Counter = Counter()
        self._text_keys: dict[str, str] = {}

    def text_key(self, caption: str) -> str:
        """Cache key of a caption's encoding, encoding it now if the cache lacks it."""
        if caption not in self._text_keys:
            key = entry_key(kind="text", caption=caption, encoder=self.text_encoder.fingerprint)
            if self.texts.load(key) is None:
                self.texts.store(key, encode_text(self.text_encoder, caption))
                self.counts["texts_encoded"] += 1
            else:
                self.counts["texts_reused"] += 1
            self._text_keys[caption] = key
        return self._text_keys[caption]

    def latent(self, path: Path, content: str, placement: Placement, source: FolderSource) -> tuple[str, bool]:
        """(cache key, has mask) of one image at one placement, encoding it if the cache lacks it."""
        key = entry_key(
            kind="latent", content=content, placement=asdict(placement),
            alpha_as_mask=source.alpha_as_mask, encoder=self.latent_encoder.fingerprint,
        )
        entry = self.latents.load(key)
        if entry is None:
            pixels, mask = load_sample(path, placement, source.alpha_as_mask)
            latent = encode_latent(self.latent_encoder, pixels)
            entry = {"latent": latent}
            if mask is not None:
                entry["mask"] = F.interpolate(mask[None, None], size=latent.shape[-2:], mode="area")[0]
            self.latents.store(key, entry)
            self.counts["latents_encoded"] += 1
        else:
            self.counts["latents_reused"] += 1
        return key, "mask" in entry

    def image(self, scanned: ScannedImage, content: str) -> tuple[list[Sample], ImageRecord]:
        """One image the doctor passed (`content`: its sha256)."""
        spec, source = self.spec, self.spec.sources[scanned.source_index]
        width, height = probe(scanned.path)
        trigger = "" if source.regularisation else spec.trigger  # reg captions describe the class, not the subject
        caption, origin = base_caption(scanned, source, trigger)
        placements = [
            place(width, height, res, square_only=source.square_only, no_upscale=source.no_upscale,
                  crop=source.crop, seed=spec.seed, image_key=content)
            for res in source.resolutions
        ]
        latents = [self.latent(scanned.path, content, p, source) for p in placements]
        captions = (caption,)
        if spec.shuffle_tokens:
            captions = shuffle_variants(caption, spec.keep_tokens, spec.shuffle_variants, spec.seed, content)
        dop = tuple(class_caption(c, spec.trigger, spec.class_word) for c in captions) if spec.class_word else ()
        text_keys = tuple(self.text_key(c) for c in captions)
        dop_keys = tuple(self.text_key(c) for c in dop)
        samples = [
            Sample(scanned.path, scanned.source_index, p, scanned.repeats, key, has_mask,
                   captions, text_keys, dop, dop_keys)
            for p, (key, has_mask) in zip(placements, latents)
        ]
        record = ImageRecord(scanned.path, scanned.source_index, content, (width, height), caption, origin,
                             scanned.repeats)
        return samples, record


def build_dataset(
    spec: DatasetSpec, latent_encoder: LatentEncoder, text_encoder: TextEncoder, progress: Progress | None = None
) -> TrainingDataset:
    """Scan, examine every file at once (core/data/doctor.py), encode what the cache lacks and return
    the dataset with its report."""
    spec.check_roles()
    scans = [scan_source(source, index) for index, source in enumerate(spec.sources)]
    scanned = [image for scan in scans for image in scan.images]
    diagnosis = examine(spec, scanned, [p for scan in scans for p in scan.orphan_captions])
    if diagnosis.refusing(spec):
        raise refusal(spec, diagnosis)
    skipped = diagnosis.skipped(spec)
    builder = _Builder(spec, latent_encoder, text_encoder)
    samples: list[Sample] = []
    records: list[ImageRecord] = []
    rejected: list[tuple[Path, str]] = list(skipped.items())
    for done, image in enumerate(scanned):
        if progress is not None:
            progress(done, len(scanned), str(image.path))
        if image.path in skipped:
            continue
        try:
            image_samples, record = builder.image(image, diagnosis.digests[image.path])
        except BadImage as exc:  # damage only a full decode finds (the doctor checks headers and PNG chunks)
            if spec.on_bad_file == "error":
                raise
            rejected.append((image.path, exc.reason))
            continue
        samples.extend(image_samples)
        records.append(record)
    if progress is not None:
        progress(len(scanned), len(scanned), "")
    if not samples:
        folders = ", ".join(str(s.folder) for s in spec.sources)
        reasons = "; ".join(f"{path.name}: {why}" for path, why in rejected[:5])
        raise DatasetError(f"No usable images in {folders} ({len(rejected)} rejected{': ' + reasons if reasons else ''}); "
                           f"supported formats: {', '.join(sorted(IMAGE_EXTENSIONS))}.")
    dropout = any(spec.caption_dropout_of(i) > 0 for i in range(len(spec.sources)))
    empty_key = builder.text_key("") if dropout else None
    dataset = TrainingDataset(spec, tuple(samples), empty_key, builder.texts, builder.latents)
    dataset.report = build_report(
        spec, dataset, records, rejected, [p for scan in scans for p in scan.ignored],
        builder.counts, builder.latents.damaged + builder.texts.damaged,
        warnings=[(p.path, p.reason) for p in diagnosis.warnings],
    )
    return dataset
