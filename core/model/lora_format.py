"""Portable LoRA files: what ComfyUI's stock loader, Forge, kohya and diffusers read, each applying
the same change.

- Flux.1, layout 'kohya' (default): `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`,
  `.lora_up.weight` and an explicit `.alpha` (ComfyUI, Forge, kohya sd-scripts; diffusers reads it
  but drops `txt_in`, see core/model/lora_diffusers.py).
- Flux.1, layout 'diffusers': ai-toolkit's `transformer.<diffusers module>.lora_A/lora_B.weight`
  (ComfyUI, Forge, diffusers), alpha folded into lora_B (core/model/lora_diffusers.py).
- Flux.2 (one layout): `diffusion_model.<BFL name>.lora_A.weight`, `.lora_B.weight`, alpha / rank
  folded into lora_B and no `.alpha`: diffusers' Flux.2 reader refuses `.alpha` keys, and with them
  gone every reader applies scale 1 (ComfyUI's rule for a missing alpha), hence the same change.
LoKr layers (lora.network 'lokr') use LyCORIS' `lokr_w1` / `lokr_w2` (+ `_a` / `_b`) keys under the same
stems (core/model/lokr_format.py); Flux.1's diffusers layout holds LoRA only.
A file without `.alpha` reads back with alpha = rank, which is what every loader applies. Resume
never depends on this: a checkpoint keeps the raw trained weights beside the file (core/train/checkpoint.py).
The file describes itself in safetensors metadata (strings): format version, family, layout, rank,
the trained alpha, targets, step, trigger, base-model fingerprint, full config. State is read from
there, never from the file name. Writes are atomic (temp file in the same folder, fsync, os.replace;
core/run/atomic.py), so a crash mid-save leaves the previous file as it was.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..run.atomic import atomic_write
from . import lokr_format, lora_diffusers, text_lora
from .flux_family import FAMILIES as _FAMILY_TABLE
from .flux_family import family as _family
from .lokr import LokrWeights
from .lora import LoraWeights

FORMAT_VERSION = "1"
FAMILIES = tuple(_FAMILY_TABLE)
LAYOUTS = ("kohya", "diffusers")
_LOKR = "|".join(lokr_format.PART_OF)
_KOHYA = re.compile(rf"lora_unet_(.+)\.(lora_down\.weight|lora_up\.weight|alpha|{_LOKR})")
_DIFFUSION = re.compile(rf"diffusion_model\.(.+)\.(lora_A\.weight|lora_B\.weight|alpha|{_LOKR})")
_PART = {"lora_down.weight": "down", "lora_up.weight": "up", "lora_A.weight": "down", "lora_B.weight": "up", "alpha": "alpha",
         **lokr_format.PART_OF}

# The BFL linears a LoRA file may name: kohya keys replace "." by "_", which is only reversible
# against this vocabulary ("img_attn_qkv" -> "img_attn.qkv", "img_mlp_0" -> "img_mlp.0").
_BLOCK_TAILS = {
    "double_blocks": [f"{s}_{p}" for s in ("img", "txt") for p in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2", "mod.lin")],
    "single_blocks": ["linear1", "linear2", "modulation.lin"],
}
_TOP_LEVEL = [
    "img_in", "txt_in", "final_layer.linear", "final_layer.adaLN_modulation.1",
    *(f"{e}.{l}" for e in ("time_in", "vector_in", "guidance_in") for l in ("in_layer", "out_layer")),
    "double_stream_modulation_img.lin", "double_stream_modulation_txt.lin", "single_stream_modulation.lin",
]
_KOHYA_TO_BFL = {n.replace(".", "_"): n for n in _TOP_LEVEL}
_KOHYA_TAIL = {section: {t.replace(".", "_"): t for t in tails} for section, tails in _BLOCK_TAILS.items()}


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file read back: tensors by BFL name plus what the file says about itself."""

    path: Path
    family: str
    weights: dict  # {BFL name: LoraWeights}
    metadata: dict  # raw safetensors metadata, str -> str

    @property
    def rank(self) -> int:
        return next(iter(self.weights.values())).rank

    @property
    def step(self):
        return _step_of(self.metadata)

    @property
    def config(self):
        return json.loads(self.metadata["fluxlab.config"]) if "fluxlab.config" in self.metadata else None


def _step_of(metadata: Mapping) -> int | None:
    return int(metadata["fluxlab.step"]) if "fluxlab.step" in metadata else None


def saved_step(path) -> int | None:
    """The training step a LoRA file records in its metadata (None for files that do not say);
    reads the header only."""
    with safe_open(str(path), framework="pt") as f:
        return _step_of(f.metadata() or {})


def is_known_name(name: str) -> bool:
    """Whether `name` is a BFL linear this format can write and read back."""
    if name in _TOP_LEVEL:
        return True
    m = re.fullmatch(r"(double_blocks|single_blocks)\.(\d+)\.(.+)", name)
    return bool(m) and m.group(3) in _BLOCK_TAILS[m.group(1)]


def _key_stem(name: str, family: str) -> str:
    return f"lora_unet_{name.replace('.', '_')}" if _family(family).lora_keys == "kohya" else f"diffusion_model.{name}"


def lora_keys(name: str, family: str) -> tuple:
    """(down key, up key, alpha key) of BFL linear `name` in `family`'s format."""
    stem = _key_stem(name, family)
    if _family(family).lora_keys == "kohya":
        return f"{stem}.lora_down.weight", f"{stem}.lora_up.weight", f"{stem}.alpha"
    return f"{stem}.lora_A.weight", f"{stem}.lora_B.weight", f"{stem}.alpha"


def _metadata_value(key: str, value) -> str:
    if not isinstance(key, str):
        raise ValueError(f"LoRA metadata keys must be strings, got {key!r}")
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def save_lora(
    path,
    weights: Mapping,
    family: str,
    *,
    step=None,
    trigger=None,
    base_fingerprint=None,
    config=None,
    extra_metadata: Mapping = None,
    dtype: torch.dtype = None,
    layout: str = "kohya",
    text_tensors: Mapping = None,
) -> Path:
    """Write `weights` ({BFL name: LoraWeights}) to `path` atomically; return the path.

    `config` (a dict or JSON string) is stored whole under `fluxlab.config`; `extra_metadata`
    values that are not strings are JSON-encoded. `dtype` casts down/up (None keeps them); kohya
    alphas are float32 scalars. `layout` picks the Flux.1 key layout (LAYOUTS); Flux.2 has one.
    `text_tensors` (core/model/text_lora.py's `lora_te1_` keys) go into the same file, as kohya's do.
    """
    _family(family)  # names the families when it is none of them
    if layout not in LAYOUTS:
        raise ValueError(f"unknown LoRA layout {layout!r}; choose one of {LAYOUTS}")
    path = Path(path)
    if not weights:
        raise ValueError(f"refusing to write {path}: the LoRA has no layers")
    network = _network_of(weights.values(), path)
    if network == "lokr" and layout == "diffusers" and _family(family).lora_keys == "kohya":
        raise ValueError(f"cannot write {path}: the diffusers layout holds LoRA only; write LoKr with run.lora_format 'kohya'")
    ranks, alphas = set(), set()
    for name, w in weights.items():
        if not is_known_name(name):
            raise ValueError(f"cannot write {path}: {name!r} is not a Flux linear this format can name")
        if network == "lora" and w.down.shape[0] != w.up.shape[1]:
            raise ValueError(f"cannot write {path}: {name} down {tuple(w.down.shape)} and up {tuple(w.up.shape)} disagree on rank")
        ranks.add(w.rank)
        alphas.add(float(w.alpha))
    kohya = _family(family).lora_keys == "kohya"
    if kohya and layout == "diffusers":
        tensors = lora_diffusers.to_tensors(weights, dtype)
    else:
        tensors = _bfl_tensors(weights, family, dtype)
    tensors.update(text_tensors or {})
    metadata = {k: _metadata_value(k, v) for k, v in (extra_metadata or {}).items()}
    metadata.update({
        "fluxlab.format_version": FORMAT_VERSION,
        "fluxlab.family": family,
        "fluxlab.layout": layout if kohya else "bfl",
        "fluxlab.network": network,
        "fluxlab.rank": _metadata_value("rank", ranks.pop() if len(ranks) == 1 else sorted(ranks, key=lambda r: r or 0)),
        "fluxlab.alpha": _metadata_value("alpha", alphas.pop() if len(alphas) == 1 else sorted(alphas)),
        "fluxlab.targets": json.dumps(list(weights)),
    })
    for key, value in (("fluxlab.step", step), ("fluxlab.trigger", trigger), ("fluxlab.base_fingerprint", base_fingerprint), ("fluxlab.config", config)):
        if value is not None:
            metadata[key] = _metadata_value(key, value)
    atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))
    return path


def _network_of(weights, path) -> str:
    kinds = {type(w) for w in weights}
    if len(kinds) != 1:
        raise ValueError(f"cannot write {path}: it mixes LoRA and LoKr layers; one file holds one network")
    return "lokr" if kinds == {LokrWeights} else "lora"


def _bfl_tensors(weights: Mapping, family: str, dtype) -> dict:
    """Keys by BFL name: kohya's with `.alpha` (Flux.1), or `diffusion_model.` with alpha folded (Flux.2)."""
    tensors = {}
    for name, w in weights.items():
        if isinstance(w, LokrWeights):
            tensors.update(lokr_format.to_tensors(_key_stem(name, family), w, dtype=dtype,
                                                  explicit_alpha=_family(family).lora_keys == "kohya"))
            continue
        down_key, up_key, alpha_key = lora_keys(name, family)
        down, up = w.down.detach().to("cpu"), w.up.detach().to("cpu")
        if _family(family).lora_keys == "bfl":
            up = up.to(torch.float64) * (float(w.alpha) / w.rank)
        else:
            tensors[alpha_key] = torch.tensor(float(w.alpha), dtype=torch.float32)
        tensors[down_key] = down.to(dtype or down.dtype).contiguous()
        tensors[up_key] = up.to(dtype or w.up.dtype).contiguous()
    return tensors


def _family_with_keys(style: str) -> str:
    return next(f.name for f in _FAMILY_TABLE.values() if f.lora_keys == style)


def detect_family(keys, path="the LoRA file") -> str:
    """The family whose key style the keys are: kohya `lora_unet_` (or its diffusers layout,
    `transformer.`), or BFL `diffusion_model.`."""
    keys = list(keys)
    if keys and (all(_KOHYA.fullmatch(k) for k in keys) or lora_diffusers.is_layout(keys)):
        return _family_with_keys("kohya")
    if keys and all(_DIFFUSION.fullmatch(k) for k in keys):
        return _family_with_keys("bfl")
    sample = [k for k in keys if not (_KOHYA.fullmatch(k) or _DIFFUSION.fullmatch(k))][:3] or keys[:3]
    raise ValueError(
        f"{path} is not a Flux LoRA this pack writes: expected only kohya 'lora_unet_*.lora_down/lora_up/alpha' or "
        f"diffusers 'transformer.*.lora_A/lora_B' keys (Flux.1), or only 'diffusion_model.*.lora_A/lora_B/alpha' "
        f"keys (Flux.2); found e.g. {sample}"
    )


def _bfl_name(stem: str, family: str, path) -> str:
    if _family(family).lora_keys == "bfl":
        name = stem
    elif stem in _KOHYA_TO_BFL:
        name = _KOHYA_TO_BFL[stem]
    else:
        m = re.fullmatch(r"(double_blocks|single_blocks)_(\d+)_(.+)", stem)
        tail = _KOHYA_TAIL[m.group(1)].get(m.group(3)) if m else None
        name = f"{m.group(1)}.{m.group(2)}.{tail}" if tail else None
    if name is None or not is_known_name(name):
        raise ValueError(f"{path}: key stem {stem!r} names no Flux linear layer")
    return name


def load_lora(path, family: str = None, rank: int = None) -> LoraFile:
    """Read a LoRA file written by `save_lora` (or any file in the same key layout).

    `family` (if given) must match what the keys say; `rank` (if given) must match every pair.
    Errors name the file and what to change.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            # A CLIP-L LoRA in the same file (text_lora.KEY_PREFIX) is not the transformer's: skip it here.
            tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(text_lora.KEY_PREFIX)}
            metadata = dict(f.metadata() or {})
    except Exception as err:  # safetensors' own error names no file ("header too large")
        raise ValueError(f"LoRA file {path} ({path.stat().st_size} bytes) cannot be read as .safetensors: empty, "
                         f"truncated or another format ({type(err).__name__}: {str(err)[:120]})") from err
    found = detect_family(tensors, path)
    if family is not None:
        _family(family)  # names the families when it is none of them
        if found != family:
            raise ValueError(
                f"{path} is a {_family(found).display_name} LoRA but the model is {_family(family).display_name}; pick a LoRA trained on {_family(family).display_name}"
            )
    if metadata.get("fluxlab.family", found) != found:
        raise ValueError(f"{path}: metadata says family {metadata['fluxlab.family']!r} but its keys are {found!r}; the file is inconsistent")
    weights = lora_diffusers.from_tensors(tensors, path) if lora_diffusers.is_layout(tensors) else _bfl_weights(tensors, found, path)
    for name, w in weights.items():
        if isinstance(w, LokrWeights):
            continue  # its factors were checked as they were read (core/model/lokr_format.py)
        if w.down.ndim != 2 or w.up.ndim != 2 or w.down.shape[0] != w.up.shape[1]:
            raise ValueError(f"{path}: {name} down {tuple(w.down.shape)} and up {tuple(w.up.shape)} are not a LoRA pair")
        if rank is not None and w.rank != rank:
            raise ValueError(f"{path}: {name} has rank {w.rank} but rank {rank} was expected; set rank to {w.rank}")
    return LoraFile(path=path, family=found, weights=weights, metadata=metadata)


def _bfl_weights(tensors: dict, family: str, path) -> dict:
    """{BFL name: LoraWeights} of kohya or `diffusion_model.` keys; a missing alpha is the rank."""
    pattern = _KOHYA if _family(family).lora_keys == "kohya" else _DIFFUSION
    parts = {}
    for key, tensor in tensors.items():
        stem, part = pattern.fullmatch(key).groups()
        parts.setdefault(_bfl_name(stem, family, path), {})[_PART[part]] = tensor
    weights = {}
    for name, p in parts.items():
        if any(part in lokr_format.SUFFIXES for part in p):
            if "down" in p or "up" in p:
                raise ValueError(f"{path}: {name} has both LoRA and LoKr tensors; the file is inconsistent")
            weights[name] = lokr_format.from_parts(p, name, path)
            continue
        lacking = [x for x in ("down", "up") if x not in p]
        if lacking:
            raise ValueError(f"{path}: {name} lacks its {', '.join(lacking)} tensor ({', '.join(lora_keys(name, family)[:2])} expected)")
        alpha = float(p["alpha"].item()) if "alpha" in p else float(p["down"].shape[0])
        weights[name] = LoraWeights(down=p["down"], up=p["up"], alpha=alpha)
    return weights
