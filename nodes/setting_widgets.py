"""The engine's settings (core/sections.py) as widgets of two nodes, compiled from the settings' typed metadata.

TrainLoRA carries the essentials (what a user of ai-toolkit or kohya sets first: steps, rank, alpha,
learning rate, optimizer, batch, targets, noise levels, DOP, save / sample cadence, seed); every other
setting is a widget of TrainLoRAAdvanced ("Advanced LoRA training settings"), whose output plugs
into TrainLoRA. Every widget holds a real value, and that value is what trains: the essentials start at
the default preset's values (the browser extension refills them when the preset changes: `preset_table()`),
the advanced widgets at the values every named preset shares (a test keeps the presets agreeing there,
so an untouched advanced node trains exactly what its preset alone would). The one exception is
`train_steps` 0: the preset's steps-per-image rule, which needs the image count the dataset reports.

A widget is named after its setting with the dot replaced (`lora.rank` -> `lora_rank`; the pair
`optim.betas` -> `optim_beta1` + `optim_beta2`); the names are stable (API prompts use them). One map,
`setting_widget_map()`, says for each setting its node, widget names, kind and default; the schemas,
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
from ..core.presets import PRESETS, STEP_RULES, apply_preset, preset_dict
from ..core.train.optim import require_installed

PRESET_CHOICES = (*PRESETS, "custom")  # custom = TrainConfig defaults
DEFAULT_PRESET = "concept"
AUTO_STEPS = 0  # train_steps 0: the preset's steps-per-image rule
TRAIN_NODE, ADVANCED_NODE = "TrainLoRA", "Advanced LoRA training settings"
# TrainLoRA's setting widgets, in node order; every other widget setting is on the advanced node.
ESSENTIALS = ("train.steps", "lora.rank", "lora.alpha", "optim.learning_rate", "optim.optimizer", "train.batch_size",
              "optim.gradient_accumulation", "lora.targets", "flow.timestep_sampling", "dop.enabled", "dop.every_n_steps", "run.save_every",
              "run.sample_every", "train.seed")
# Settings that are not widgets, and who owns them.
NOT_WIDGETS = {
    "model.quantize": "LoadFluxForTraining", "train.mixed_precision": "LoadFluxForTraining",
    "train.gradient_checkpointing": "LoadFluxForTraining", "train.checkpoint_every_n_blocks": "LoadFluxForTraining",
    "run.trigger": "DatasetFromFolder", "dop.class_word": "DatasetFromFolder", "run.name": "run_name",
    # auto (on for CUDA) is what a node user wants; a widget here would shift saved workflows' values
    "train.compile": "the run's config (auto: compiled on CUDA, eager on CPU)",
}
SECTION_ORDER = ("train", "lora", "optim", "flow", "dop", "run")
FLOAT_STEPS = {"optim.learning_rate": 1e-5, "optim.weight_decay": 1e-5, "optim.eps": 1e-9, "train.ema_decay": 1e-4}


def widget_name(key: str) -> str:
    return key.replace(".", "_")


@dataclass(frozen=True)
class SettingWidget:
    """One setting's widgets: `kind` is choice | switch | int | float | pair | text; `node` the node they are on."""

    key: str
    kind: str
    meta: dict
    names: tuple[str, ...]
    node: str
    default: Any

    def inputs(self) -> list[io.Input]:
        tip = f"{self.meta['doc']}\n[{self.key}] Presets: {_preset_values(self.key)}."
        (name, *_), most = self.names, self.meta.get("le", self.meta.get("lt"))
        least = self.meta.get("ge", self.meta.get("gt"))
        if self.kind == "choice":
            return [io.Combo.Input(name, options=list(self.meta["choices"]), default=self.default, tooltip=tip)]
        if self.kind == "switch":
            return [io.Boolean.Input(name, default=self.default, label_on="on", label_off="off", tooltip=tip)]
        if self.kind == "int":
            label = None
            if self.key == "train.steps":  # the label says what 0 does, so the widget never reads as a magic number
                least, label, tip = AUTO_STEPS, f"{name} (0 = preset's rule)", f"{tip} 0 = the preset's rule for the " \
                    "dataset's image count (the dataset report gives it per preset)."
            return [io.Int.Input(name, display_name=label, default=self.default, min=least, max=most, tooltip=tip,
                                 control_after_generate=False)]
        if self.kind == "pair":
            return [io.Float.Input(part, default=value, min=least, max=1.0, step=1e-4, tooltip=f"{tip} ({part})")
                    for part, value in zip(self.names, self.default)]
        if self.kind == "float":
            return [io.Float.Input(name, default=self.default, min=least, max=most,
                                   step=FLOAT_STEPS.get(self.key, 0.01), tooltip=tip)]
        return [io.String.Input(name, default=self.default, tooltip=tip)]

    def value(self, values: dict) -> tuple[bool, Any]:
        """(given, the setting's value) from a node's widget values."""
        if not all(name in values for name in self.names):
            return False, None
        if self.kind == "pair":
            return True, [values[name] for name in self.names]
        value = values[self.names[0]]
        if self.key == "train.steps" and value == AUTO_STEPS:
            return False, None
        return True, value


def _kind(hint: Any, meta: dict) -> str:
    """The widget kind of a setting, from its real type (not its type's name)."""
    args = typing.get_args(hint)
    base = next(a for a in args if a is not type(None)) if type(None) in args else hint
    if "choices" in meta:
        return "choice"
    if base is bool:
        return "switch"
    if typing.get_origin(base) is tuple:
        return "pair"
    return {int: "int", float: "float"}.get(base, "text")


def _shown_value(config: TrainConfig, key: str) -> Any:
    """The value a widget shows for setting `key` of `config` (alpha None = same as rank: the rank)."""
    section, name = key.split(".")
    if key == "lora.alpha":
        return config.lora.effective_alpha
    value = getattr(getattr(config, section), name)
    return list(value) if isinstance(value, tuple) else value


@functools.cache  # ComfyUI rebuilds the schema on every /object_info and prompt validation
def setting_widget_map() -> dict[str, SettingWidget]:
    """Every widget setting by dotted key: the essentials in node order, then the advanced ones by section."""
    described, sections = TrainConfig.describe(), typing.get_type_hints(TrainConfig)
    shown = preset_config(DEFAULT_PRESET)
    keys = [*ESSENTIALS]
    for section in SECTION_ORDER:
        keys += [k for k in (f"{section}.{f.name}" for f in dataclasses.fields(sections[section]))
                 if k not in ESSENTIALS and k not in NOT_WIDGETS]
    out = {}
    for key in keys:
        section, name = key.split(".")
        kind = _kind(typing.get_type_hints(sections[section])[name], described[key])
        names = (f"{section}_beta1", f"{section}_beta2") if kind == "pair" else (widget_name(key),)
        default = AUTO_STEPS if key == "train.steps" else _shown_value(shown, key)
        out[key] = SettingWidget(key, kind, described[key], names, TRAIN_NODE if key in ESSENTIALS else ADVANCED_NODE,
                                 default)
    return out


def setting_widgets(node: str) -> list[io.Input]:
    """The widgets of `node` (TRAIN_NODE or ADVANCED_NODE), in order."""
    return [i for widget in setting_widget_map().values() if widget.node == node for i in widget.inputs()]


def widget_names(node: str) -> tuple[str, ...]:
    return tuple(name for widget in setting_widget_map().values() if widget.node == node for name in widget.names)


def overrides_from_widgets(values: dict) -> dict:
    """Nested overrides for the settings whose widgets are in `values`."""
    out: dict = {}
    for key, widget in setting_widget_map().items():
        given, value = widget.value(values)
        if given:
            section, name = key.split(".")
            out.setdefault(section, {})[name] = value
    return out


def where_to_fix(key: str) -> str:
    """Where a user changes setting `key`, for error messages: "widget 'lora_rank'" or the owning node."""
    widget = setting_widget_map().get(key)
    if widget is not None:
        names = " / ".join(repr(n) for n in widget.names)
        return f"widget {names}" if widget.node == TRAIN_NODE else f"widget {names} on its {widget.node} node"
    if key == "run.name":
        return "widget 'run_name'"
    if key in NOT_WIDGETS:
        return f"setting from {NOT_WIDGETS[key]}"
    return "settings"


def build_config(preset: str, values: dict, *, run_name: str, trigger: str, class_word: str,
                 n_images: int | None, model_overrides: dict | None = None) -> TrainConfig:
    """defaults <- preset (steps by its per-image rule when train_steps is 0) <- the widgets in `values`
    (TrainLoRA's, plus the advanced node's when one is connected) <- other nodes' settings."""
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
        dop = f" (DOP is on: TrainLoRA {where_to_fix('dop.enabled')})" if "DOP" in str(err) else ""  # the switch
        raise ValueError(f"TrainLoRA {where_to_fix(err.key)}: {err}{dop}") from err


@functools.cache
def preset_table() -> dict[str, dict[str, Any]]:
    """What choosing each preset puts into TrainLoRA's widgets (the browser extension reads it from the
    schema): {preset: {widget name: value}}. Steps: 0 (the preset's rule), custom: the engine's count."""
    table = {}
    for preset in PRESET_CHOICES:
        config = preset_config(preset)
        row = {}
        for key in ESSENTIALS:
            widget = setting_widget_map()[key]
            value = _shown_value(config, key)
            row.update(zip(widget.names, value) if widget.kind == "pair" else {widget.names[0]: value})
        row["train_steps"] = AUTO_STEPS if preset in STEP_RULES else config.train.steps
        table[preset] = row
    return table


@functools.cache
def _preset_values(key: str) -> str:
    """'character: 32, style: 64, concept: 32, custom: 16' for a tooltip."""
    if key == "train.steps":
        rules = ", ".join(f"{p}: {n}/image, min {m}" for p, (n, m) in STEP_RULES.items())
        return f"{rules}, custom: {TrainConfig().train.steps}"
    return ", ".join(f"{preset}: {_shown_value(preset_config(preset), key)}" for preset in PRESET_CHOICES)


def preset_config(preset: str) -> TrainConfig:
    """The config a preset gives on its own (trigger / class word placeholders: DOP needs them)."""
    names = {"run": {"trigger": "t"}, "dop": {"class_word": "c"}}
    if preset == "custom":
        return TrainConfig().with_overrides(names)
    # its optimizer named: the table shows it whether or not its package is installed here (a run checks that)
    optimizer = {"optim": {"optimizer": preset_dict(preset)["optim"]["optimizer"]}}
    return apply_preset(preset, {**names, **optimizer})
