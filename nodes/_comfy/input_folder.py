"""Folders inside ComfyUI's input directory, for nodes that write their own inputs (the demo pictures)."""

from pathlib import Path


def input_subfolder(name: str) -> Path:
    """`<ComfyUI input directory>/<name>` (not created here)."""
    import folder_paths

    return Path(folder_paths.get_input_directory()) / name
