"""Which linears of a Flux a LoRA trains: the target presets, block selections, and the
`LoraSpec` that carries them (core/model/lora.py attaches the LoRA there).

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
from typing import Mapping

from torch import nn

TARGET_PRESETS = ("attention", "all", "mmdit", "context")
INITS = ("default", "gaussian")
SECTIONS = ("double", "single")

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


@dataclass(frozen=True)
class LoraSpec:
    """What to train: the engine's LoRA settings (core/config.py maps user options onto this)."""

    rank: int = 16
    """Inner dimension r of each LoRA pair (down: r x in, up: out x r)."""
    alpha: float = 16.0
    """Scale numerator: delta W = alpha / rank * up @ down (ComfyUI's rule; alpha = rank gives 1)."""
    dropout: float = 0.0
    """Dropout on the LoRA branch input while the module is in train() mode (peft's lora_dropout)."""
    init: str = "default"
    """`default`: down kaiming-uniform, up zero. `gaussian`: down normal(0, 1/rank), up zero.
    Both start at delta W = 0. PiSSA/OLoRA are refused: they rewrite the base weights, which are
    shared with ComfyUI's model."""
    targets: str = "attention"
    """Preset: attention | all | mmdit | context (see the module docstring)."""
    train_modulation: bool = False
    """Also train the modulation linears of the streams the preset touches."""
    blocks: str = ""
    """Only these blocks, e.g. `double:0-9,single:20-37` or `double:0,2,4-6`; empty = every block.
    Applies to block linears only (`txt_in` and Flux.2's shared modulations are not in a block)."""
    exclude_blocks: str = ""
    """Blocks to leave out, same syntax as `blocks`; applied after it."""

    def __post_init__(self):
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha!r} (use alpha = rank for a scale of 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in INITS:
            raise ValueError(f"LoRA init {self.init!r} is not supported; choose one of {INITS}")
        if self.targets not in TARGET_PRESETS:
            raise ValueError(f"LoRA targets {self.targets!r} is not a preset; choose one of {TARGET_PRESETS}")
        parse_blocks(self.blocks, setting="blocks")
        parse_blocks(self.exclude_blocks, setting="exclude_blocks")


def parse_blocks(selection, setting: str = "blocks") -> dict:
    """`"double:0-9,single:20-37"` or `{"double": [0, 1], "single": "3-5"}` -> {section: frozenset}.

    Grammar: comma-separated tokens `section:range` or `range`, where a bare range continues the
    previous section and a range is `n` or `a-b` (inclusive). Empty -> {} (no restriction).
    """
    if selection is None or selection == "":
        return {}
    if isinstance(selection, Mapping):
        out = {}
        for section, indices in selection.items():
            if section not in SECTIONS:
                raise ValueError(f"{setting}: unknown section {section!r}; use one of {SECTIONS}")
            text = indices if isinstance(indices, str) else ",".join(str(i) for i in indices)
            out[section] = parse_blocks(f"{section}:{text}", setting)[section] if text else frozenset()
        return out
    if not isinstance(selection, str):
        raise ValueError(f"{setting}: expected a string like 'double:0-9,single:20-37' or a dict, got {selection!r}")
    out, section = {}, None
    for raw in selection.split(","):
        token = raw.strip()
        if ":" in token:
            section, _, token = (part.strip() for part in token.partition(":"))
            if section not in SECTIONS:
                raise ValueError(f"{setting}: unknown section {section!r} in {raw.strip()!r}; use 'double:' or 'single:'")
        if section is None:
            raise ValueError(f"{setting}: token {raw.strip()!r} names no section; start with 'double:' or 'single:'")
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", token)
        if not match:
            raise ValueError(f"{setting}: bad token {raw.strip()!r} in {selection!r}; expected 'n' or 'a-b', e.g. 'double:0-9,single:20-37'")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise ValueError(f"{setting}: range {raw.strip()!r} runs backwards; write '{last}-{first}'")
        out[section] = out.get(section, frozenset()) | frozenset(range(first, last + 1))
    return out


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


def target_names(module: nn.Module, spec: LoraSpec) -> list:
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
