"""Exact save/load of nested training state (optimizer, scheduler, EMA) as safetensors + JSON.

Why not torch.save: pickles execute code on load and break across versions; resume must be exact.
A nested structure (dicts with int or str keys, lists, tuples, tensors, numpy arrays, Python scalars,
bytes) is split into a flat dict of tensors, stored as tensors, and a JSON tree that says where each
one goes, stored in the safetensors metadata. Every container in the tree is a tagged object, so the
round trip restores types exactly (int keys stay int, tuples stay tuples, floats keep every bit).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_FORMAT_VERSION = 1
_META_KEY = "fluxlab.state"
_VERSION_KEY = "fluxlab.state_format_version"


def flatten_state(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """(tensors, tree): tensors are CPU, contiguous, unshared copies keyed by their path in `obj`."""
    tensors: dict[str, torch.Tensor] = {}
    return tensors, _encode(obj, "", tensors)


def unflatten_state(tensors: dict[str, torch.Tensor], tree: Any) -> Any:
    return _decode(tree, tensors)


def save_state(path: Path, obj: Any) -> None:
    """Write `obj` to a safetensors file (use rundir's writers/atomic_write around it for crash safety)."""
    tensors, tree = flatten_state(obj)
    metadata = {_META_KEY: json.dumps(tree, separators=(",", ":")), _VERSION_KEY: str(STATE_FORMAT_VERSION)}
    save_file(tensors, str(path), metadata=metadata)


def load_state(path: Path) -> Any:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    if _META_KEY not in metadata:
        raise ValueError(f"{path} is not a Flux LoRA Lab state file (no {_META_KEY!r} metadata)")
    version = int(metadata.get(_VERSION_KEY, "0"))
    if version != STATE_FORMAT_VERSION:
        raise ValueError(f"{path} has state format version {version}; this version reads {STATE_FORMAT_VERSION}")
    return unflatten_state(load_file(str(path)), json.loads(metadata[_META_KEY]))




def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return {"f": float(obj).hex()}  # exact, and NaN/inf survive strict JSON
    if isinstance(obj, torch.Tensor):
        key = _unique_key(path, tensors)
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"t": key}
    if isinstance(obj, np.ndarray):
        key = _unique_key(path, tensors)
        raw = np.ascontiguousarray(obj)
        tensors[key] = torch.from_numpy(raw.reshape(-1).view(np.uint8).copy())
        return {"nd": key, "dtype": raw.dtype.str, "shape": list(raw.shape)}
    if isinstance(obj, np.generic):
        return {"np": obj.dtype.str, "v": _encode(obj.item(), path, tensors)}
    if isinstance(obj, bytes):
        return {"b": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"state key {k!r} at {path or '<root>'} must be str or int")
            items.append([k, _encode(v, f"{path}/{k}", tensors)])
        return {"d": items}
    if isinstance(obj, (list, tuple)):
        encoded = [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "l": encoded}
    raise TypeError(f"cannot store {type(obj).__name__} at {path or '<root>'} in a state file")


def _unique_key(path: str, tensors: dict) -> str:
    """The tensor's path as its name (readable in any safetensors viewer), made unique if str keys collide."""
    key = path or "."
    return key if key not in tensors else f"{key}#{len(tensors)}"


def _decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if tree is None or isinstance(tree, (bool, int, str)):
        return tree
    (tag,) = [k for k in ("f", "t", "nd", "np", "b", "d", "l", "tuple") if k in tree]
    if tag == "f":
        return float.fromhex(tree["f"])
    if tag == "t":
        return tensors[tree["t"]]
    if tag == "nd":
        data = tensors[tree["nd"]].numpy().tobytes()
        return np.frombuffer(data, dtype=np.dtype(tree["dtype"])).reshape(tree["shape"]).copy()
    if tag == "np":
        return np.dtype(tree["np"]).type(_decode(tree["v"], tensors))
    if tag == "b":
        return base64.b64decode(tree["b"])
    if tag == "d":
        return {k: _decode(v, tensors) for k, v in tree["d"]}
    if tag == "l":
        return [_decode(v, tensors) for v in tree["l"]]
    return tuple(_decode(v, tensors) for v in tree["tuple"])
