"""Which linears of a Flux a LoRA trains, from the run's `lora` settings (core/sections.py
LoraSettings: targets, train_modulation, blocks, exclude_blocks); core/model/lora.py attaches it.

Target presets (which linears of each block a LoRA trains):
- `attention`: double blocks img/txt `attn.qkv` + `attn.proj`; single blocks `linear1` + `linear2`.
  A single block has no separate attention linears: `linear1` is qkv fused with the MLP input,
  `linear2` the output projection fused with the MLP output. We train both whole, as ai-toolkit and
  kohya do: a LoRA on a slice of `linear1` only loads in ComfyUI (`linear1_qkv`), not in Forge,
  diffusers or kohya, and leaving the 38 single blocks out would leave most of Flux untouched.
- `all`: `attention` plus the double blocks' img/txt MLPs (every linear in the blocks but the
  modulations).
- `mmdit`: every linear of the double (MM-DiT) blocks, attention and MLP; no single blocks.
- `context`: the text stream only: double blocks' `txt_attn` and `txt_mlp`, plus `txt_in` (the first
  layer that sees the text encoder's tokens; where a new trigger token is best remapped).
Modulation linears (`img_mod.lin`, `txt_mod.lin`, `modulation.lin`; Flux.2's shared
`double_stream_modulation_*` / `single_stream_modulation`) are off in every preset and switched on
by `train_modulation`: they see only the timestep/pooled vector, not the image or prompt, so a LoRA
there shifts every sample's per-timestep scale and shift alike; they are also the largest linears
(6 x hidden outputs). kohya's Flux trainer excludes them by default for the same reason.
"""

import re
from dataclasses import dataclass

from torch import nn

from ..lora_selection import SECTIONS, parse_blocks
from ..lora_settings import LoraSettings


_DOUBLE = re.compile(r"double_blocks\.(\d+)\.(img|txt)_(attn\.qkv|attn\.proj|mlp\.0|mlp\.2|mod\.lin)")
_SINGLE = re.compile(r"single_blocks\.(\d+)\.(linear1|linear2|modulation\.lin)")
_DOUBLE_ROLE = {"attn.qkv": "attn", "attn.proj": "attn", "mlp.0": "mlp", "mlp.2": "mlp", "mod.lin": "mod"}
_SINGLE_ROLE = {"linear1": "fused", "linear2": "fused", "modulation.lin": "mod"}
# Linears outside the blocks that a preset may touch: (section, stream, role).
_OUTSIDE = {
    "txt_in": ("embed", "txt", "embed"),
    "double_stream_modulation_img.lin": ("double", "img", "mod"),
    "double_stream_modulation_txt.lin": ("double", "txt", "mod"),
    "single_stream_modulation.lin": ("single", "joint", "mod"),
}


@dataclass(frozen=True)
class _Preset:
    sections: frozenset
    roles: frozenset
    streams: frozenset


_TARGET_RULES = {
    "attention": _Preset(frozenset({"double", "single"}), frozenset({"attn", "fused"}), frozenset({"img", "txt", "joint"})),
    "all": _Preset(frozenset({"double", "single"}), frozenset({"attn", "mlp", "fused"}), frozenset({"img", "txt", "joint"})),
    "mmdit": _Preset(frozenset({"double"}), frozenset({"attn", "mlp"}), frozenset({"img", "txt"})),
    "context": _Preset(frozenset({"double", "embed"}), frozenset({"attn", "mlp", "embed"}), frozenset({"txt"})),
}


def _classify(name: str):
    """BFL linear name -> (section, block index or None, stream, role), or None if never a target."""
    if m := _DOUBLE.fullmatch(name):
        return "double", int(m.group(1)), m.group(2), _DOUBLE_ROLE[m.group(3)]
    if m := _SINGLE.fullmatch(name):
        return "single", int(m.group(1)), "joint", _SINGLE_ROLE[m.group(2)]
    if name in _OUTSIDE:
        section, stream, role = _OUTSIDE[name]
        return section, None, stream, role
    return None


def _linear_names(module: nn.Module) -> list:
    return [name for name, sub in module.named_modules() if isinstance(sub, nn.Linear) and not _inside_lora(name)]


def _inside_lora(name: str) -> bool:
    return any(part in ("lora_A", "lora_B", "base_layer") for part in name.split("."))


def target_names(module: nn.Module, spec: LoraSettings) -> list:
    """The BFL names of the linears `spec` trains in `module`, in module order."""
    preset = _TARGET_RULES[spec.targets]
    roles = preset.roles | ({"mod"} if spec.train_modulation else set())
    include, exclude = parse_blocks(spec.blocks, "blocks"), parse_blocks(spec.exclude_blocks, "exclude_blocks")
    names = _linear_names(module)
    depth = {s: 1 + max((c[1] for n in names if (c := _classify(n)) and c[0] == s and c[1] is not None), default=-1) for s in SECTIONS}
    for setting, selection in (("blocks", include), ("exclude_blocks", exclude)):
        for section, indices in selection.items():
            if indices and max(indices) >= depth[section]:
                raise ValueError(
                    f"{setting}: {section} block {max(indices)} does not exist; this model has {depth[section]} {section} blocks "
                    f"(0-{depth[section] - 1})"
                )
    chosen = []
    for name in names:
        kind = _classify(name)
        if kind is None:
            continue
        section, index, stream, role = kind
        if section not in preset.sections or role not in roles or stream not in preset.streams:
            continue
        if index is not None:
            if include and index not in include.get(section, frozenset()):
                continue
            if index in exclude.get(section, frozenset()):
                continue
        chosen.append(name)
    if not chosen:
        raise ValueError(f"LoRA targets {spec.targets!r} with blocks={spec.blocks!r} exclude_blocks={spec.exclude_blocks!r} select no layer")
    return chosen
