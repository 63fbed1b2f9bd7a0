"""TrainLoRA's setting widgets, compiled once from the engine's settings (core/sections.py).

Every engine setting that no other node owns is a widget, with the setting's own doc as tooltip, so
nothing can drift. A widget is named after its setting with the dot replaced (`lora.rank` ->
`lora_rank`; the pair `optim.betas` -> `optim_beta1` + `optim_beta2`); the names are stable (saved
workflows store them). Presets and widgets never fight: every widget starts at a "use the preset"
value (-1 for numbers, "preset" in lists and on/off switches, empty text), so a config is TrainConfig
defaults <- preset <- the widgets the user changed. One map, `setting_widget_map()`, says for each
setting its widget names, its kind and how a widget value becomes the setting's value; the schema,
the config and the error messages all read it.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any

from comfy_api.latest import io

from ..core.config import ConfigError, TrainConfig, merge_sections
from ..core.presets import PRESETS, STEP_RULES, apply_preset
from ..core.train.optim import require_installed

PRESET_CHOICES = (*PRESETS, "custom")  # custom = TrainConfig defaults
USE_PRESET = "preset"  # list / switch widgets
UNSET = -1  # number widgets
# Settings that are not TrainLoRA widgets, and who owns them.
NOT_WIDGETS = {
    "model.quantize": "LoadFluxForTraining", "train.mixed_precision": "LoadFluxForTraining",
    "train.gradient_checkpointing": "LoadFluxForTraining", "train.checkpoint_every_n_blocks": "LoadFluxForTraining",
    "run.trigger": "DatasetFromFolder", "dop.class_word": "DatasetFromFolder", "run.name": "run_name",
}
SECTION_ORDER = ("train", "lora", "optim", "flow", "dop", "run")
FLOAT_STEPS = {"optim.learning_rate": 1e-5, "optim.weight_decay": 1e-5, "optim.eps": 1e-9, "train.ema_decay": 1e-4}
_UNSET_OF_KIND = {"choice": USE_PRESET, "switch": USE_PRESET, "text": ""}


def widget_name(key: str) -> str:
    return key.replace(".", "_")


@dataclass(frozen=True)
class SettingWidget:
    """One setting's widgets: `kind` is choice | switch | int | float | optional_float | pair | text."""

    key: str
    kind: str
    meta: dict
    names: tuple[str, ...]

    @property
    def unset(self):
        return _UNSET_OF_KIND.get(self.kind, UNSET)

    def inputs(self) -> list[io.Input]:
        tip = f"{self.meta['doc']}\n[{self.key}] Preset values: {_preset_values(self.key)}."
        (name, *_), most = self.names, self.meta.get("le", self.meta.get("lt"))
        if self.kind in ("choice", "switch"):
            options = self.meta["choices"] if self.kind == "choice" else ("on", "off")
            return [io.Combo.Input(name, options=[USE_PRESET, *options], default=USE_PRESET,
                                   tooltip=f"{tip} 'preset' = the preset's value.")]
        if self.kind == "int":
            return [io.Int.Input(name, default=UNSET, min=UNSET, max=most, tooltip=f"{tip} -1 = the preset's value.")]
        if self.kind == "pair":
            return [io.Float.Input(part, default=UNSET, min=UNSET, max=1.0, step=1e-4,
                                   tooltip=f"{tip} ({part}) -1 = the preset's value.") for part in self.names]
        if self.kind in ("float", "optional_float"):
            extra = " 0 = same as rank." if self.kind == "optional_float" else ""
            return [io.Float.Input(name, default=UNSET, min=UNSET, max=most, step=FLOAT_STEPS.get(self.key, 0.01),
                                   tooltip=f"{tip} -1 = the preset's value.{extra}")]
        return [io.String.Input(name, default="", tooltip=f"{tip} Empty = the preset's value (no preset sets it).")]

    def value(self, values: dict) -> tuple[bool, Any]:
        """(changed, the setting's value) from the node's widget values."""
        if self.kind == "pair":
            parts = [values.get(part, UNSET) for part in self.names]
            default = self.meta["default"]  # no preset sets the betas
            return any(p != UNSET for p in parts), [d if p == UNSET else p for p, d in zip(parts, default)]
        value = values.get(self.names[0], self.unset)
        if value == self.unset:
            return False, None
        if self.kind == "switch":
            return True, value == "on"
        if self.kind == "optional_float" and value == 0:
            return True, None  # lora.alpha 0 = same as rank
        return True, value


def _kind(hint: Any, meta: dict) -> str:
    """The widget kind of a setting, from its real type (not its type's name)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    if "choices" in meta:
        return "choice"
    if base is bool:
        return "switch"
    if typing.get_origin(base) is tuple:
        return "pair"
    if base is int:
        return "int"
    if base is float:
        return "optional_float" if optional else "float"
    return "text"


@functools.cache  # ComfyUI rebuilds the schema on every /object_info and prompt validation
def setting_widget_map() -> dict[str, SettingWidget]:
    """Every widget setting by dotted key, in node order."""
    described, sections = TrainConfig.describe(), typing.get_type_hints(TrainConfig)
    out = {}
    for section in SECTION_ORDER:
        cls = sections[section]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            if key in NOT_WIDGETS:
                continue
            kind = _kind(hints[f.name], described[key])
            names = (f"{section}_beta1", f"{section}_beta2") if kind == "pair" else (widget_name(key),)
            out[key] = SettingWidget(key, kind, described[key], names)
    return out


def setting_widgets() -> list[io.Input]:
    return [i for widget in setting_widget_map().values() for i in widget.inputs()]


def overrides_from_widgets(values: dict) -> dict:
    """Nested overrides for the widgets that differ from their "use the preset" value."""
    out: dict = {}
    for key, widget in setting_widget_map().items():
        changed, value = widget.value(values)
        if changed:
            section, name = key.split(".")
            out.setdefault(section, {})[name] = value
    return out


def where_to_fix(key: str) -> str:
    """Where a user changes setting `key`, for error messages: "widget 'lora_rank'" or the owning node."""
    if key in setting_widget_map():
        return "widget " + " / ".join(repr(n) for n in setting_widget_map()[key].names)
    if key == "run.name":
        return "widget 'run_name'"
    if key in NOT_WIDGETS:
        return f"setting from {NOT_WIDGETS[key]}"
    return "settings"


def build_config(preset: str, values: dict, *, run_name: str, trigger: str, class_word: str,
                 n_images: int | None, model_overrides: dict | None = None) -> TrainConfig:
    """defaults <- preset (steps by the preset's per-image rule) <- changed widgets <- other nodes' settings."""
    overrides = overrides_from_widgets(values)
    fixed = merge_sections(model_overrides or {}, {"run": {"name": run_name, "trigger": trigger},
                                                   "dop": {"class_word": class_word}})
    for section, items in fixed.items():
        overrides.setdefault(section, {}).update(items)
    try:
        config = (TrainConfig().with_overrides(overrides) if preset == "custom"
                  else apply_preset(preset, overrides, n_images=n_images))
        require_installed(config, preset)
        return config
    except ConfigError as err:
        raise ValueError(f"TrainLoRA {where_to_fix(err.key)}: {err}") from err


@functools.cache
def _preset_values(key: str) -> str:
    """'character: 32, style: 64, concept: 32, custom: 16' for a tooltip."""
    if key == "train.steps":
        rules = ", ".join(f"{p}: {n}/image, min {m}" for p, (n, m) in STEP_RULES.items())
        return f"{rules}, custom: {TrainConfig().train.steps}"
    section, name = key.split(".")
    values = []
    for preset in PRESET_CHOICES:
        config = TrainConfig() if preset == "custom" else _preset_config(preset)
        value = getattr(getattr(config, section), name)
        values.append(f"{preset}: {'same as rank' if value is None else value}")
    return ", ".join(values)


def _preset_config(preset: str) -> TrainConfig:
    return apply_preset(preset, {"run": {"trigger": "t"}, "dop": {"class_word": "c"}})  # placeholders: DOP needs them
