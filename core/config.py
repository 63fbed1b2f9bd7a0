"""Training settings: frozen, checked dataclasses that are the one vocabulary of the engine.

Why this shape: a typo in a string-keyed dict silently trains with a default. Here every setting is a
field with a doc string and its allowed values in `metadata` (the UI builds tooltips and combos from
`TrainConfig.describe()`), values are checked when the object is built, and `from_dict` refuses keys
it does not know, naming the nearest valid key (including the names ai-toolkit / SimpleTuner users
type, such as `lr` or `linear_alpha`). `to_dict` gives plain JSON for checkpoint metadata, and
`from_dict(to_dict(c)) == c`.

Settings are addressed as "section.field" (`lora.rank`, `optim.learning_rate`) in errors and docs.
"""

from __future__ import annotations

import copy
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .lora_settings import LoraSettings
from .sections import (
    MAX_LEARNING_RATE,
    RUN_NAME_RULE,
    DopSettings,
    FlowSettings,
    ModelSettings,
    OptimizerSettings,
    RunSettings,
    TrainSettings,
    is_run_name,
)
from .setting import ConfigError, Section, nearest

__all__ = [
    "CONFIG_VERSION", "MAX_LEARNING_RATE", "RUN_NAME_RULE", "ConfigError", "DopSettings", "FlowSettings",
    "LoraSettings", "ModelSettings", "OptimizerSettings", "RunSettings", "TrainConfig", "TrainSettings",
    "is_run_name", "merge_sections",
]

CONFIG_VERSION = 1


_SECTIONS: dict[str, type[Section]] = {
    "model": ModelSettings, "lora": LoraSettings, "optim": OptimizerSettings, "flow": FlowSettings,
    "dop": DopSettings, "train": TrainSettings, "run": RunSettings,
}

# Names users bring from ai-toolkit / SimpleTuner / seed 002 configs. Only used to suggest the right
# key in an error: accepting them silently would make two spellings of one setting.
_ALIASES = {
    "linear": "lora.rank", "lora_rank": "lora.rank", "network_dim": "lora.rank",
    "linear_alpha": "lora.alpha", "lora_alpha": "lora.alpha", "network_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout", "lora_init_type": "lora.init", "target_layers": "lora.targets",
    "flux_lora_target": "lora.targets", "lr": "optim.learning_rate",
    "lr_warmup_steps": "optim.warmup_steps", "gradient_accumulation_steps": "optim.gradient_accumulation",
    "content_or_style": "flow.timestep_sampling", "timestep_type": "flow.timestep_sampling",
    "weighting": "flow.loss_weighting", "flow_schedule_shift": "flow.shift",
    "flux_guidance_value": "flow.guidance", "diff_output_preservation": "dop.enabled",
    "diff_output_preservation_class": "dop.class_word",
    "diff_output_preservation_multiplier": "dop.multiplier",
    "diff_output_preservation_every_n_steps": "dop.every_n_steps", "max_steps": "train.steps",
    "max_train_steps": "train.steps", "num_train_epochs": "train.epochs",
    "max_train_epochs": "train.epochs", "save_precision": "run.save_dtype",
    "train_batch_size": "train.batch_size", "use_ema": "train.ema",
    "dtype": "train.mixed_precision", "gradient_checkpointing_interval": "train.checkpoint_every_n_blocks",
    "blocks_to_swap": "train.blocks_to_swap", "train_t5xxl": "lora.train_t5",
    "trigger_word": "run.trigger", "instance_prompt": "run.trigger", "quantize_dtype": "model.quantize",
    "base_model_precision": "model.quantize", "quantization": "model.quantize",
}


def _suggest(section: str | None, key: str) -> str:
    """' (did you mean X?)' for an unknown key, or '' when nothing is close."""
    if key in _ALIASES:
        return f" (did you mean {_ALIASES[key]!r}?)"
    owners = [name for name, cls in _SECTIONS.items() if key in {f.name for f in fields(cls)}]
    if owners:
        return f" (it belongs in section {owners[0]!r}: {owners[0]}.{key})"
    pool = [f.name for f in fields(_SECTIONS[section])] if section else list(_SECTIONS) + ["version"]
    close = nearest(key, pool)
    if close:
        return f" (did you mean {(section + '.' if section else '') + close!r}?)"
    return ""


def merge_sections(base: dict, overrides: dict) -> dict:
    """A new nested dict: `overrides`' sections update `base`'s key by key (one level deep)."""
    merged = copy.deepcopy(base)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **copy.deepcopy(values)}
        else:
            merged[section] = copy.deepcopy(values)
    return merged


def _build_section(name: str, data: Any) -> Section:
    cls = _SECTIONS[name]
    if not isinstance(data, dict):
        raise ConfigError(name, f"expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown setting{_suggest(name, key)}; "
                              f"valid: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model and the data. Nested sections, checked."""

    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimizerSettings = field(default_factory=OptimizerSettings)
    flow: FlowSettings = field(default_factory=FlowSettings)
    dop: DopSettings = field(default_factory=DopSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    run: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(name, f"expected {cls.__name__}, got {type(getattr(self, name)).__name__}")
        if self.dop.enabled and not self.run.trigger:
            raise ConfigError("run.trigger", "DOP is enabled but there is no trigger word; DOP "
                              "preserves prompts *without* the trigger, so set run.trigger or turn "
                              "dop.enabled off")
        if self.dop.enabled and self.dop.class_word.strip() == self.run.trigger:
            raise ConfigError("dop.class_word", f"{self.dop.class_word!r} equals the trigger; the class "
                              "word must be the generic word the trigger stands for")
        if self.optim.optimizer == "adamw_schedulefree" and self.train.ema:
            raise ConfigError("train.ema", "adamw_schedulefree already saves an average of the weights (its "
                              "eval weights); an EMA on top averages the wrong sequence: turn train.ema off")
        if self.lora.network == "lokr" and self.run.lora_format == "diffusers":
            raise ConfigError("run.lora_format", "'diffusers' is a LoRA layout; LoKr files use LyCORIS' keys, "
                              "which ComfyUI and Forge read: set run.lora_format to 'kohya' or lora.network to 'lora'")
        if self.train.epochs == 0 and self.optim.warmup_steps >= self.train.steps:  # epochs: core/train/length.py
            raise ConfigError("optim.warmup_steps", f"{self.optim.warmup_steps} must be less than "
                              f"train.steps ({self.train.steps}); lower it or train longer")

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from nested plain data (e.g. JSON); unknown sections or keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"expected a mapping, got {type(data).__name__}")
        version = data.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError("version", f"config version {version!r} is not supported (this build "
                              f"reads version {CONFIG_VERSION})")
        for key in data:
            if key != "version" and key not in _SECTIONS:
                raise ConfigError(key, f"unknown section{_suggest(None, key)}; valid: {list(_SECTIONS)}")
        return cls(**{name: _build_section(name, data[name]) for name in _SECTIONS if name in data})

    def to_dict(self) -> dict:
        """Plain nested data (lists, not tuples) with a version; the inverse of `from_dict`."""
        out: dict[str, Any] = {"version": CONFIG_VERSION}
        for name in _SECTIONS:
            section = asdict(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        return out

    def with_overrides(self, overrides: dict) -> TrainConfig:
        """A copy with nested overrides applied ({"lora": {"rank": 32}}), checked like from_dict."""
        return TrainConfig.from_dict(merge_sections(self.to_dict(), overrides))

    @staticmethod
    def describe() -> dict[str, dict]:
        """Per dotted key: doc, type, default and allowed values. For tooltips and UI widgets."""
        out = {}
        for name, cls in _SECTIONS.items():
            hints = typing.get_type_hints(cls)
            for f in fields(cls):
                info = dict(f.metadata)
                info["type"] = getattr(hints[f.name], "__name__", str(hints[f.name]))
                info["default"] = None if f.default is MISSING else f.default
                out[f"{name}.{f.name}"] = info
        return out
