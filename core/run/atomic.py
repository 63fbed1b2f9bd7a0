"""Crash-safe writes: a file is written to a temp name beside it, fsync'ed and renamed into place,
so readers never see half of it and a crash leaves the previous file as it was. Every temp name
starts with TEMP_PREFIX, so debris of a killed process is recognisable and removable.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

TEMP_PREFIX = ".tmp-"  # every temp file/folder we create starts with this; cleaned at start
Writer = Callable[[Path], None]
"""Writes one file at the path it is given (a temp path; the caller renames it into place)."""


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def atomic_write(path: Path, writer: Writer) -> Path:
    """Write a file via `writer(temp_path)`, fsync, then os.replace onto `path` (readers never see half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}"
    try:
        writer(temp)
        fsync_file(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def remove_stale_temps(folder: Path, idle_s: float = 600.0) -> list[Path]:
    """Delete `atomic_write` temp files in a shared folder (loras/fluxlab) that nobody has written to
    for `idle_s` seconds: debris of a process killed mid-copy. A copy in progress keeps its file's
    mtime fresh, so it is left alone."""
    removed = []
    now = time.time()
    for entry in Path(folder).glob(f"{TEMP_PREFIX}*"):
        try:
            if entry.is_file() and now - entry.stat().st_mtime > idle_s:
                entry.unlink()
                removed.append(entry)
        except FileNotFoundError:  # another process cleaned it first
            continue
    return removed


def bytes_writer(data: bytes) -> Writer:
    return lambda p: Path(p).write_bytes(data)


def text_writer(text: str) -> Writer:
    return lambda p: Path(p).write_text(text, encoding="utf-8")


def json_writer(obj: Any) -> Writer:
    return text_writer(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
