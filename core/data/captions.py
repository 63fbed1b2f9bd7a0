"""Caption text: where it comes from (caption strategy, missing-caption policy), trigger insertion,
DOP class caption, token shuffle.

One function decides an image's caption (`base_caption`): SimpleTuner's caption strategies
("textfile", "filename", "instanceprompt") choose the source, and only "textfile" can find a
caption missing, which is when the `missing_caption` policy applies. The trigger is applied to
whatever the source gave, except in regularisation folders (their captions describe the class, not
the subject; build.py passes no trigger for them).

Token shuffle uses a fixed number of precomputed tag orders per caption (`shuffle_variants`) rather
than a fresh order every step. Why: every caption text the trainer can see is then known before
step 1, so all of them are encoded during the build and cached on disk; the text encoder (T5-XXL
is ~9 GB) is not needed during training and ComfyUI may free it, disk use stays bounded
(variants x captions, not steps x captions), and `batch(step)` is a pure function of (seed, step).
Variant 0 is always the caption as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..seeding import generator
from .errors import DatasetError
from .scan import ScannedImage
from .spec import FolderSource

TRIGGER_PLACEHOLDER = "{trigger}"


def read_caption(path: Path) -> str:
    """Caption file text on one line (kohya files sometimes wrap); BOM-tolerant UTF-8."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"Caption file {path} is not UTF-8 text ({exc}); re-save it as UTF-8.") from exc
    return " ".join(text.split())


def apply_trigger(caption: str, trigger: str) -> str:
    """`{trigger}` is replaced; else the trigger is prefixed unless the caption already names it."""
    if not trigger:
        return caption.replace(TRIGGER_PLACEHOLDER, "").strip()
    if TRIGGER_PLACEHOLDER in caption:
        return caption.replace(TRIGGER_PLACEHOLDER, trigger)
    if mentions(caption, trigger):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def class_caption(caption: str, trigger: str, class_word: str) -> str:
    """DOP prior caption: every whole-word trigger replaced by the class word."""
    return re.sub(rf"(?<!\w){re.escape(trigger)}(?!\w)", class_word, caption)


def without_trigger(text: str, trigger: str, class_word: str = "") -> str:
    """The prompt a LoRA should leave alone: the trigger replaced by the class word, or dropped (with
    the comma or space it leaves) when there is none."""
    if class_word:
        return class_caption(text, trigger, class_word)
    dropped = re.sub(rf"(?<!\w){re.escape(trigger)}(?!\w)", "", text)
    return re.sub(r"\s*,\s*(,\s*)+", ", ", " ".join(dropped.split())).strip(" ,").replace(" ,", ",")


def mentions(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` as a whole word."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def filename_caption(path: Path) -> str:
    """SimpleTuner's "filename" strategy: the file's stem, underscores as spaces."""
    return " ".join(path.stem.replace("_", " ").split())


def base_caption(image: ScannedImage, source: FolderSource, trigger: str) -> tuple[str, str]:
    """(caption with trigger applied, origin: "file" | "filename" | "instanceprompt" | "trigger_only"
    | "folder_name")."""
    if source.caption_strategy == "filename":
        return apply_trigger(filename_caption(image.path), trigger), "filename"
    if source.caption_strategy == "instanceprompt":
        return apply_trigger(source.instance_prompt, trigger), "instanceprompt"
    policy, caption_ext = source.missing_caption, source.caption_ext
    if image.caption_path is not None:
        return apply_trigger(read_caption(image.caption_path), trigger), "file"
    if policy == "error":
        raise DatasetError(
            f"Image {image.path} has no caption file {image.path.stem}.{caption_ext}; "
            "add one, or set missing_caption to 'trigger_only' or 'folder_name'."
        )
    if policy == "trigger_only":
        return trigger, policy
    return apply_trigger(image.folder_class, trigger), policy


def shuffle_variants(caption: str, keep_tokens: int, count: int, seed: int, key: str) -> tuple[str, ...]:
    """`count` distinct-as-possible tag orders; the first `keep_tokens` tags stay in place.

    `key` identifies the image so that two images with the same caption still get their own orders.
    """
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    head, tail = tags[:keep_tokens], tags[keep_tokens:]
    variants = [caption]
    if len(tail) < 2:
        return tuple(variants)
    gen = generator(seed, "shuffle", key)
    for _ in range(count - 1):
        order = torch.randperm(len(tail), generator=gen).tolist()
        variants.append(", ".join(head + [tail[i] for i in order]))
    return tuple(dict.fromkeys(variants))
