"""Server-side test helpers: start the real ComfyUI with the pack (launch recipe shared with
`make serve` / `make demo` in scripts/comfy_server.py), read its log, put model files where its
loaders look."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.comfy_server import PACK_DIRNAME, REPO_ROOT, ComfyServer, free_port, prepare_base_dir

__all__ = ["PACK_DIRNAME", "ComfyServer", "free_port", "prepare_base_dir", "start_server", "pack_log_problems", "link_model"]

_TRACEBACK_START = "Traceback (most recent call last):"
_OWN_PATH = re.compile(re.escape(str(REPO_ROOT)) + r"/(?!\.comfy-[^/]+/|\.venv-[^/]+/)")


def start_server(base_dir: Path, timeout: float = 180.0, threads: int = 1) -> ComfyServer:
    """A started CPU server on a free loopback port in `base_dir` (log: <base_dir>/comfyui.log).
    One torch thread: the e2e graphs use tiny models, for which it is the fastest setting."""
    return ComfyServer(base_dir, threads=threads).start(timeout=timeout)


_NODE_ERROR_MARK = "!!! Exception during processing !!!"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL_PREFIX = re.compile(r"^\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")
_CHAIN_LINES = ("The above exception was the direct cause", "During handling of the above exception")


def pack_log_problems(log_text: str) -> list[str]:
    """Log passages that show the pack failing to load or raising: import failures naming the
    pack's folder, entry-point errors, and every traceback that passes through the pack's files.
    Tracebacks of ComfyUI's own optional nodes (e.g. torchaudio missing) are not ours."""
    problems = [
        line for line in log_text.splitlines()
        if _mentions_pack(line) and re.search(r"IMPORT FAILED|Cannot import|Error while calling comfy_entrypoint", line)
    ]
    for block in _traceback_blocks(log_text):
        if _mentions_pack(block) and not block.startswith(_NODE_ERROR_MARK):
            problems.append(block)
    return problems


def _mentions_pack(text: str) -> bool:
    """The pack's folder name, or a path in the repository outside the host and venv it contains."""
    return PACK_DIRNAME in text or _OWN_PATH.search(text) is not None


def _plain(line: str) -> str:
    """The line without terminal colours and the "[ERROR] " level prefix ComfyUI 0.33's logger adds."""
    return _LEVEL_PREFIX.sub("", _ANSI.sub("", line))


def _traceback_blocks(log_text: str) -> list[str]:
    """Each traceback with its frames and the exception line that ends it. A chained traceback
    ("The above exception was the direct cause…", "During handling…") joins the block it follows,
    so a node error raised `from` another keeps the node-error mark."""
    blocks, current, previous, chained = [], None, "", False
    for line in map(_plain, log_text.splitlines()):
        if line.startswith(_TRACEBACK_START):
            if chained:
                current = [blocks.pop(), line]
            else:
                # A node's execution error (ComfyUI logs this mark, then the traceback) is reported to
                # the user through the API; tests provoke those on purpose. Keep the mark to tell them apart.
                current = [_NODE_ERROR_MARK, line] if _NODE_ERROR_MARK in previous else [line]
            chained = False
        elif current is not None:
            current.append(line)
            if line and not line.startswith((" ", "\t")):
                blocks.append("\n".join(current))
                current = None
        elif line.startswith(_CHAIN_LINES) and blocks:
            blocks[-1] += "\n" + line
            chained = True
        elif line.strip():
            chained = False
        previous = line
    if current:
        blocks.append("\n".join(current))
    return blocks


def link_model(server: ComfyServer, folder: str, path: Path, name: str | None = None) -> str:
    """Symlink a model file into <base>/models/<folder>/ and return the name loaders list it by.
    ComfyUI rescans a folder when its mtime changes, so a running server sees the file."""
    target = server.base_dir / "models" / folder / (name or Path(path).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(Path(path).resolve())
    return target.name
