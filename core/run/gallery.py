"""What the panel's gallery and config view read from a run folder: every preview step still on disk
with its prompts, and the run's saved config.

Both come from the run's history (events.jsonl), not from the live process, so a finished run, a
run from an earlier server and a reloaded page all show the same thing. Preview files are listed
only where they still exist: `max_step_saves_to_keep` prunes old checkpoints and their previews with
them, and a gallery tile that 404s would be a lie about the run.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from .events import Record
from .rundir import RunDir


def preview_steps(run_dir: RunDir, records: Sequence[Record]) -> list[dict]:
    """Per preview step, oldest first: {"step", "images": [{"path", "prompt"}]}.

    A step rendered twice (a resumed run re-rendering its last checkpoint) keeps its latest record.
    `prompt` is None for records written before previews carried their prompts.
    """
    by_step: dict[int, dict] = {}
    for record in records:
        if record.kind != "preview":
            continue
        event = record.event
        prompts = tuple(getattr(event, "prompts", ()) or ())
        images = []
        for index, path in enumerate(event.images):
            try:
                present = run_dir.resolve_inside(path).is_file()
            except (ValueError, OSError):
                present = False
            if present:
                images.append({"path": path, "prompt": prompts[index] if index < len(prompts) else None})
        if images:
            by_step[event.step] = {"step": event.step, "images": images}
        else:
            by_step.pop(event.step, None)
    return [by_step[step] for step in sorted(by_step)]


def saved_config(records: Sequence[Record]) -> Optional[dict[str, Any]]:
    """The config of the run's latest session (its `started` record), grouped by section; None
    before a session started."""
    for record in reversed(records):
        if record.kind == "started":
            return dict(record.event.config)
    return None


def trigger_words(config: Optional[dict[str, Any]]) -> tuple[Optional[str], Optional[str]]:
    """(trigger, class word) from a saved config, None where unset: the gallery pairs prompts with
    and without the trigger by them."""
    config = config or {}
    trigger = (config.get("run") or {}).get("trigger") or None
    class_word = (config.get("dop") or {}).get("class_word") or None
    return trigger, class_word
