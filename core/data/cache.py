"""Disk cache of encodings under `<cache_dir>/.latent_cache/`.

An entry's file name is the sha256 of everything that determines its content (file content hash,
resolution, bucket, resize and crop, alpha option, encoder fingerprint, cache format version), so a
changed input simply misses and the stale entry is never read. Each entry stores a sha256 of its
tensor bytes and their shapes in the safetensors metadata; a truncated or altered entry fails to
load or fails the check, is deleted, and is rebuilt. Writes go to a temporary file in the same
folder and are moved into place with `os.replace`, so a crash never leaves a half-written entry
under a valid name.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CACHE_FOLDER = ".latent_cache"
CACHE_VERSION = 1


def entry_key(**parts: object) -> str:
    payload = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _shapes(tensors: dict[str, torch.Tensor]) -> str:
    return json.dumps({name: list(t.shape) for name, t in sorted(tensors.items())})


class EncodingCache:
    """Entries of one kind ("latents" or "text") in `<cache_dir>/.latent_cache/<kind>/`."""

    def __init__(self, cache_dir: Path, kind: str) -> None:
        self.folder = Path(cache_dir) / CACHE_FOLDER / kind
        self.damaged: list[tuple[Path, str]] = []
        """(entry, why) for entries found damaged, deleted and so rebuilt, in this process."""

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The entry, fully checked; None when absent or damaged (a damaged file is removed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            with open(path, "rb") as handle:
                header_len = int.from_bytes(handle.read(8), "little")
                metadata = json.loads(handle.read(header_len)).get("__metadata__", {})
        except (SafetensorError, OSError, ValueError) as exc:
            return self._discard(path, exc)
        if metadata.get("sha256") != _tensor_digest(tensors) or metadata.get("shapes") != _shapes(tensors):
            return self._discard(path, "checksum mismatch")
        return tensors

    def read(self, key: str) -> dict[str, torch.Tensor]:
        """Fast path for training steps: entries were checked when the dataset was built."""
        return load_file(self.path(key))

    def store(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            save_file(tensors, temp, metadata={"sha256": _tensor_digest(tensors), "shapes": _shapes(tensors)})
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def _discard(self, path: Path, reason: object) -> None:
        self.damaged.append((path, str(reason)))
        path.unlink(missing_ok=True)
        return None
