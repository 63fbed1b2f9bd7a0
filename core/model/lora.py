"""LoRA adapters on the Flux linear layers, injected with peft, addressed by BFL module names.

Works on any nn.Module whose submodules carry the BFL names (`double_blocks.0.img_attn.qkv`,
`single_blocks.3.linear1`, ...): ComfyUI's Flux and our training tree (core/model/flux.py) alike. peft's
layers are injected in place (`peft.inject_adapter_in_model`), so the module keeps its class and
its forward; no PeftModel wrapper appears. The scale is peft's `alpha / rank`, exactly what
ComfyUI's loader applies (delta W = alpha / rank * up @ down), so a saved file reproduces training.

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

Merging a LoRA into the base weights is refused on every layer we attach: the base weights are
shared by reference with ComfyUI's model (a merge would change the user's model), and on quanto
weights peft's merge silently drops the delta. Saved files carry the LoRA to every loader instead.
"""

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

ADAPTER = "default"
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


@dataclass(frozen=True)
class LoraWeights:
    """One LoRA pair in ComfyUI's convention: delta W = alpha / rank * up @ down."""

    down: torch.Tensor  # (rank, in_features)  = peft lora_A = kohya lora_down
    up: torch.Tensor  # (out_features, rank)  = peft lora_B = kohya lora_up
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self) -> torch.Tensor:
        """The change this pair makes to its layer's weight, in float64: alpha / rank * up @ down."""
        return (self.up.double() @ self.down.double()) * (float(self.alpha) / self.rank)


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


def attach_lora(module: nn.Module, spec: LoraSpec, dtype: torch.dtype = torch.float32) -> list:
    """Inject peft LoRA layers on `spec`'s targets of `module` in place; return their BFL names.

    Everything else in `module` is frozen (requires_grad=False, peft's rule; that includes base
    weights shared with the owner). LoRA weights are kept in `dtype` (float32 by default, also
    under a bf16 base): peft casts the input to the LoRA dtype and the result back. Quantize the
    base (core/model/quant.py) before attaching, never after.
    """
    if lora_layers(module):
        raise ValueError("this module already carries LoRA layers; attach once per training tree")
    names = target_names(module, spec)
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        init_lora_weights=True if spec.init == "default" else spec.init,
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
        bias="none",
    )
    inject_adapter_in_model(config, module, adapter_name=ADAPTER)
    # peft leaves its config on the module it was handed; nothing reads it, so keep the module clean.
    module.__dict__.pop("peft_config", None)
    for name, layer in lora_layers(module).items():
        layer.lora_A[ADAPTER].to(dtype)
        layer.lora_B[ADAPTER].to(dtype)
        object.__setattr__(layer, "merge", _refuse_merge(name))
    attached = list(lora_layers(module))
    if attached != names:
        raise RuntimeError(f"peft attached LoRA to {attached}, expected {names}")
    return names


def _refuse_merge(name: str):
    def merge(*args, **kwargs):
        raise RuntimeError(
            f"refusing to merge the LoRA into {name}: its base weight is shared with ComfyUI's model and may be "
            "quanto-quantized (peft's merge silently drops the delta there). Save the LoRA (core/model/lora_format.py) and apply "
            "it with ComfyUI's loader."
        )

    return merge


def lora_layers(module: nn.Module) -> dict:
    """{BFL name: peft LoraLayer} for every LoRA layer attached to `module`, in module order."""
    return {name: sub for name, sub in module.named_modules() if isinstance(sub, LoraLayer)}


def trainable_parameters(module: nn.Module) -> list:
    """[(name, parameter)] of the LoRA weights, in a fixed order (optimizer and checkpoint order)."""
    out = []
    for name, layer in lora_layers(module).items():
        out.append((f"{name}.lora_down", layer.lora_A[ADAPTER].weight))
        out.append((f"{name}.lora_up", layer.lora_B[ADAPTER].weight))
    return out


@contextlib.contextmanager
def lora_disabled(module: nn.Module) -> Iterator[None]:
    """Run `module` as the bare base model inside the block (DOP's prior, baselines).

    Flips peft's per-layer switch directly instead of `enable_adapters`, which would also toggle
    requires_grad on the LoRA weights and disturb an optimizer step in flight.
    """
    layers = list(lora_layers(module).values())
    previous = [layer._disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, was in zip(layers, previous):
            layer._disable_adapters = was


def lora_state_dict(module: nn.Module) -> dict:
    """{BFL name: LoraWeights} of the attached LoRA (detached tensors sharing storage: clone to keep)."""
    return {
        name: LoraWeights(
            down=layer.lora_A[ADAPTER].weight.detach(),
            up=layer.lora_B[ADAPTER].weight.detach(),
            alpha=float(layer.lora_alpha[ADAPTER]),
        )
        for name, layer in lora_layers(module).items()
    }


def load_lora_state_dict(module: nn.Module, weights: Mapping, source: str = "the given weights", strict: bool = True) -> list:
    """Copy `weights` ({BFL name: LoraWeights}) into the attached LoRA (resume, init_lora); return the names loaded.

    Names must match the attached targets exactly (`strict=False`, for init_lora into a wider
    target set: attached layers absent from `weights` keep their fresh init) and ranks must agree.
    A different alpha is absorbed by rescaling `up` so the delta (alpha / rank * up @ down) is
    exactly the file's while the run keeps its own alpha.
    """
    layers = lora_layers(module)
    missing, unexpected = sorted(set(layers) - set(weights)), sorted(set(weights) - set(layers))
    if unexpected or (missing and strict):
        raise ValueError(
            f"{source} does not fit this LoRA: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; use the same targets and blocks it was trained with"
        )
    loaded = [name for name in layers if name in weights]
    with torch.no_grad():
        for name in loaded:
            layer = layers[name]
            w, down, up = weights[name], layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            if w.down.shape != down.shape or w.up.shape != up.shape:
                raise ValueError(
                    f"{source}: {name} has rank {w.rank} (down {tuple(w.down.shape)}, up {tuple(w.up.shape)}) but this run "
                    f"uses rank {layer.r[ADAPTER]} (down {tuple(down.shape)}, up {tuple(up.shape)}); set rank to {w.rank}"
                )
            down.copy_(w.down)
            up.copy_(w.up.to(torch.float64) * (w.alpha / float(layer.lora_alpha[ADAPTER])))
    return loaded

