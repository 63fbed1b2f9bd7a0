"""The demo's captioned pictures for tests that need the folder before a workflow runs: the same
files the pack's `Demo Images` node writes (nodes/_demo_images.py), so nothing is shipped."""

from __future__ import annotations

from pathlib import Path

from nodes._demo_images import write_demo_images


def write_demo_dataset(folder: Path) -> Path:
    """Write the pictures and captions into `folder` (created)."""
    return write_demo_images(folder)
