"""The pre-flight report: what the dataset holds, what was refused and why, how long to train.

`DatasetReport.data` is a plain JSON-able dict (for the panel event); `.text` renders it for the
node's STRING output. The suggested step count follows Astria's rule of thumb: 27 steps per image
with at least 300 for characters and concepts, 100 steps per image (at least 300) for styles: one
rule, core/presets.py's, counting training images only (regularisation images are not what is learnt).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..presets import STEP_RULES, suggested_steps
from .captions import mentions


@dataclass(frozen=True)
class ImageRecord:
    """What the report needs to know about one accepted image."""

    path: Path
    source_index: int
    content_hash: str
    size: tuple[int, int]
    caption: str
    caption_origin: str
    """"file", "filename", "instanceprompt", "trigger_only" or "folder_name"."""
    repeats: int


@dataclass(frozen=True)
class DatasetReport:
    data: dict
    text: str

    def __str__(self) -> str:
        return self.text


def build_report(spec, dataset, records, rejected, ignored, counts, damaged, warnings=()) -> DatasetReport:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_hash[record.content_hash].append(str(record.path))
    folders = []
    for index, source in enumerate(spec.sources):
        mine = [r for r in records if r.source_index == index]
        folders.append({
            "folder": str(source.folder), "images": len(mine), "resolutions": list(source.resolutions),
            "repeats": {str(r): n for r, n in sorted(Counter(r.repeats for r in mine).items())},
            "role": source.role, "loss_weight": source.loss_weight, "caption_strategy": source.caption_strategy,
            "caption_dropout": spec.caption_dropout_of(index), "crop": source.crop,
            "reg_samples_per_epoch": dataset.schedule.reg_draws(index) if source.regularisation else None,
        })
    histogram = Counter(f"{s.placement.resolution}px {s.placement.bucket[0]}x{s.placement.bucket[1]}"
                        for s in dataset.samples)
    origins = Counter(r.caption_origin for r in records)
    trained = [r for r in records if not spec.sources[r.source_index].regularisation]
    steps_per_epoch = dataset.steps_per_epoch(1)
    data = {
        "images": dataset.image_count,
        "samples_per_epoch": len(dataset),
        "train_samples_per_epoch": dataset.schedule.train_samples,
        "folders": folders,
        "buckets": dict(sorted(histogram.items())),
        "captions": {
            "from_file": origins["file"],
            "missing": [{"image": str(r.path), "used": r.caption_origin, "caption": r.caption}
                        for r in records if r.caption_origin in ("trigger_only", "folder_name")],
            "origins": dict(sorted(origins.items())),
            "trained_images": len(trained),
            "with_trigger": sum(mentions(r.caption, spec.trigger) for r in trained) if spec.trigger else None,
            "empty": [str(r.path) for r in records if not r.caption],
        },
        "duplicates": [paths for paths in by_hash.values() if len(paths) > 1],
        "rejected": [{"file": str(path), "reason": reason} for path, reason in rejected],
        "ignored_files": [str(p) for p in ignored],
        "warnings": [{"file": str(path), "problem": why} for path, why in warnings],
        "cache": {
            **{k: counts.get(k, 0) for k in ("latents_encoded", "latents_reused", "texts_encoded", "texts_reused")},
            "damaged_rebuilt": [{"file": str(p), "reason": why} for p, why in damaged],
        },
        "batch_size": 1,
        "steps_per_epoch": steps_per_epoch,
        "suggested_steps_by_preset": {preset: suggested_steps(preset, len(trained)) if trained else 0
                                      for preset in STEP_RULES},
    }
    return DatasetReport(data, render(data, spec.trigger))


def for_run(data: dict, dataset, batch_size: int, preset: str) -> dict:
    """The report's numbers for one run: the samples it takes per optimizer step (TrainLoRA's batch
    size x gradient accumulation; the dataset's own report counts at 1) and the suggested step count
    of its preset (None for a preset without a step rule)."""
    steps = dataset.steps_per_epoch(batch_size)
    suggested = data["suggested_steps_by_preset"].get(preset)
    return {**data, "batch_size": batch_size, "steps_per_epoch": steps, "preset": preset,
            "suggested_steps": suggested, "suggested_epochs": None if suggested is None else round(suggested / steps, 1)}


def render(data: dict, trigger: str) -> str:
    lines = [f"Dataset: {data['images']} images, {data['samples_per_epoch']} samples per epoch "
             "(repeats and resolutions included)."]
    for folder in data["folders"]:
        repeats = ", ".join(f"{n} images x{r}" for r, n in folder["repeats"].items()) or "none"
        lines.append(f"  {folder['folder']}: {folder['images']} images at {folder['resolutions']} px; "
                     f"repeats: {repeats}{_folder_options(folder)}")
        if folder["role"] == "regularisation":
            lines.append(f"    regularisation: {folder['reg_samples_per_epoch']} reg samples per epoch "
                         f"(with {data['train_samples_per_epoch']} training samples), loss weight "
                         f"{folder['loss_weight']:g}, captions without the trigger")
    lines.append("Buckets: " + ", ".join(f"{name}: {n}" for name, n in data["buckets"].items()))
    captions = data["captions"]
    lines.append(f"Captions: {captions['from_file']}/{data['images']} from caption files"
                 + "".join(f", {n} from the {origin}" for origin, n in captions["origins"].items()
                           if origin in ("filename", "instanceprompt")) + ".")
    if trigger:
        lines.append(f"Trigger '{trigger}' in {captions['with_trigger']}/{captions['trained_images']} training captions.")
    for item in captions["missing"]:
        lines.append(f"  missing caption: {item['image']} -> {item['used']}: '{item['caption']}'")
    for path in captions["empty"]:
        lines.append(f"  empty caption: {path}")
    for group in data["duplicates"]:
        lines.append("Duplicate content: " + " == ".join(group))
    for item in data["rejected"]:
        lines.append(f"Rejected: {item['file']}: {item['reason']}")
    for item in data["warnings"]:
        lines.append(f"Warning: {item['file']}: {item['problem']}")
    if data["ignored_files"]:
        lines.append(f"Ignored (not an image or caption): {', '.join(data['ignored_files'])}")
    cache = data["cache"]
    lines.append(f"Cache: {cache['latents_encoded']} latents encoded, {cache['latents_reused']} reused; "
                 f"{cache['texts_encoded']} captions encoded, {cache['texts_reused']} reused.")
    for item in cache["damaged_rebuilt"]:
        lines.append(f"  damaged cache entry rebuilt: {item['file']} ({item['reason']})")
    suggested = ", ".join(f"{preset} {steps}" for preset, steps in data["suggested_steps_by_preset"].items())
    lines.append(f"Steps per epoch at batch size {data['batch_size']}: {data['steps_per_epoch']}. "
                 f"Suggested steps: {suggested}.")
    return "\n".join(lines)


def _folder_options(folder: dict) -> str:
    """The folder's settings that differ from the defaults, for its report line."""
    parts = []
    if folder["caption_strategy"] != "textfile":
        parts.append(f"captions: {folder['caption_strategy']}")
    if folder["caption_dropout"]:
        parts.append(f"caption dropout {folder['caption_dropout']:g}")
    if folder["crop"] == "none":
        parts.append("crop: none (resized to the bucket, aspect stretched slightly)")
    if folder["role"] != "regularisation" and folder["loss_weight"] != 1.0:
        parts.append(f"loss weight {folder['loss_weight']:g}")
    return "; " + "; ".join(parts) if parts else ""
