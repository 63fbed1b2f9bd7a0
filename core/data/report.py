"""The pre-flight report: what the dataset holds, what was refused and why, how long to train.

`DatasetReport.data` is a plain JSON-able dict (for the panel event); `.text` renders it for the
node's STRING output. The suggested step counts follow Astria's rule of thumb: 27 steps per image
with at least 300 for characters and concepts, 100 steps per image (at least 300) for styles: one
rule, core/presets.py's. The dataset does not know which preset will train on it, so its report gives
the count of each; a run's report (`for_run`) names the run's preset and its steps.
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
    """"file", "trigger_only" or "folder_name"."""
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
        })
    histogram = Counter(f"{s.placement.resolution}px {s.placement.bucket[0]}x{s.placement.bucket[1]}"
                        for s in dataset.samples)
    origins = Counter(r.caption_origin for r in records)
    steps_per_epoch = dataset.steps_per_epoch()
    suggested = {preset: suggested_steps(preset, dataset.image_count) if dataset.image_count else 0
                 for preset in STEP_RULES}
    data = {
        "images": dataset.image_count,
        "samples_per_epoch": len(dataset),
        "folders": folders,
        "buckets": dict(sorted(histogram.items())),
        "captions": {
            "from_file": origins["file"],
            "missing": [{"image": str(r.path), "used": r.caption_origin, "caption": r.caption}
                        for r in records if r.caption_origin != "file"],
            "with_trigger": sum(mentions(r.caption, spec.trigger) for r in records) if spec.trigger else None,
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
        "batch_size": dataset.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "suggested_steps_by_preset": suggested,
    }
    return DatasetReport(data, render(data, spec.trigger))


def for_run(data: dict, dataset, batch_size: int, preset: str, steps: int) -> dict:
    """The report's numbers for a run: the batch it really takes per optimizer step (TrainLoRA's batch
    size x gradient accumulation, not DatasetFromFolder's), its preset's suggested steps (a preset
    without a rule, such as custom: the run's own steps) and the epochs they make."""
    per_epoch = dataset.steps_per_epoch(batch_size)
    suggested = data["suggested_steps_by_preset"].get(preset, steps)
    return {**data, "batch_size": batch_size, "steps_per_epoch": per_epoch, "preset": preset,
            "suggested_steps": suggested, "suggested_epochs": round(suggested / per_epoch, 1)}


def render(data: dict, trigger: str) -> str:
    lines = [f"Dataset: {data['images']} images, {data['samples_per_epoch']} samples per epoch "
             "(repeats and resolutions included)."]
    for folder in data["folders"]:
        repeats = ", ".join(f"{n} images x{r}" for r, n in folder["repeats"].items()) or "none"
        lines.append(f"  {folder['folder']}: {folder['images']} images at {folder['resolutions']} px; "
                     f"repeats: {repeats}")
    lines.append("Buckets: " + ", ".join(f"{name}: {n}" for name, n in data["buckets"].items()))
    captions = data["captions"]
    lines.append(f"Captions: {captions['from_file']}/{data['images']} from caption files.")
    if trigger:
        lines.append(f"Trigger '{trigger}' in {captions['with_trigger']}/{data['images']} captions.")
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
    per_epoch = data["steps_per_epoch"]
    suggested = ", ".join(f"{preset} {n} (~{round(n / per_epoch, 1)} epochs)"
                          for preset, n in data["suggested_steps_by_preset"].items())
    lines.append(f"Steps per epoch at batch size {data['batch_size']}: {per_epoch}. Suggested steps: {suggested} "
                 "(TrainLoRA's train_steps 0 takes its preset's).")
    return "\n".join(lines)
