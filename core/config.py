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
import difflib
import math
import re
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

from .errors import FluxLabError

CONFIG_VERSION = 1
MAX_LEARNING_RATE = 0.1
"""The largest learning rate for adamw / adamw8bit / adafactor: 1000x the Flux standard (tiny test
models learn at 2e-2); far beyond it a LoRA diverges within steps (lr 1e6 trained to NaN at step 3)."""


class ConfigError(FluxLabError, ValueError):
    """A setting has a bad value or name. `key` is the dotted name ("lora.rank") for UIs to highlight."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def setting(default: Any, doc: str, *, choices: tuple | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field whose doc and allowed values live in machine-readable metadata."""
    meta = {"doc": doc}
    for name, value in (("choices", choices), ("ge", ge), ("gt", gt), ("le", le), ("lt", lt)):
        if value is not None:
            meta[name] = value
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults are not allowed in settings; use a tuple")
    return field(default=default, metadata=meta)


def _nearest(word: str, pool: list[str]) -> str | None:
    """The valid name a user most likely meant: a prefix match ('bell' -> 'bell_shaped') or the
    closest spelling; None when nothing is reasonably close."""
    prefixed = [p for p in pool if p.startswith(word) or word.startswith(p)] if word else []
    if prefixed:
        return min(prefixed, key=lambda p: abs(len(p) - len(word)))
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.5)
    return close[0] if close else None


def _range_text(meta: dict) -> str:
    lo = f"[{meta['ge']}" if "ge" in meta else f"({meta['gt']}" if "gt" in meta else "(-inf"
    hi = f"{meta['le']}]" if "le" in meta else f"{meta['lt']})" if "lt" in meta else "inf)"
    return f"{lo}, {hi}"


@dataclass(frozen=True)
class _Section:
    """Base of every settings section: type coercion, metadata-driven checks, then `_check()`."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            self._coerce(f.name, hints[f.name])
            self._check_bounds(f.name, f.metadata)
        self._check()

    def _check(self) -> None:
        """Checks that involve more than one field of this section (override)."""

    def _key(self, name: str) -> str:
        return f"{self.SECTION}.{name}"

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(self._key(name), message)

    def _coerce(self, name: str, hint: Any) -> None:
        value = getattr(self, name)
        args = typing.get_args(hint)
        if type(None) in args:  # Optional[...]: None is allowed and resolved by _check()
            if value is None:
                return
            hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
        if origin is tuple:
            if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
                self._fail(name, f"expected a list of {len(typing.get_args(hint))} numbers, got {value!r}")
            items = []
            for item in value:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    self._fail(name, f"expected numbers, got {value!r}")
                items.append(float(item))
            object.__setattr__(self, name, tuple(items))
            return
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(self, name, float(value))
            return
        ok = isinstance(value, hint) and not (hint in (int, float) and isinstance(value, bool))
        if not ok:
            self._fail(name, f"expected {hint.__name__}, got {value!r} ({type(value).__name__})")

    def _check_bounds(self, name: str, meta: Any) -> None:
        value = getattr(self, name)
        if value is None:
            return
        if "choices" in meta and value not in meta["choices"]:
            close = _nearest(str(value), [str(c) for c in meta["choices"]])
            hint = f" (did you mean {close!r}?)" if close else ""
            self._fail(name, f"{value!r} is not one of {list(meta['choices'])}{hint}")
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                self._fail(name, f"{value!r} is not a finite number; use a value in {_range_text(meta)}")
            bad = (("ge" in meta and v < meta["ge"]) or ("gt" in meta and v <= meta["gt"])
                   or ("le" in meta and v > meta["le"]) or ("lt" in meta and v >= meta["lt"]))
            if bad:
                self._fail(name, f"{value!r} is outside the allowed range {_range_text(meta)}")


@dataclass(frozen=True)
class ModelSettings(_Section):
    """How the base Flux transformer is held in memory while the LoRA trains."""

    SECTION: ClassVar[str] = "model"
    quantize: str = setting("none", "Quantize the frozen base weights to save memory: 'none' keeps "
                            "them as loaded (bf16), 'qint8' (~half the memory, quality about equal), "
                            "'qfloat8', 'qint4' (~quarter, some quality loss). The LoRA stays bf16/fp32.",
                            choices=("none", "qint8", "qfloat8", "qint4"))


@dataclass(frozen=True)
class LoraSettings(_Section):
    """The LoRA adapter: size, scale, initialisation and which layers it wraps."""

    SECTION: ClassVar[str] = "lora"
    rank: int = setting(16, "LoRA rank (ai-toolkit 'linear'): capacity of the adapter. 16 most uses, "
                        "32 characters, 64 complex styles. File size grows linearly.", ge=1, le=1024)
    alpha: float | None = setting(None, "LoRA alpha ('linear_alpha'): the update is scaled by "
                                  "alpha/rank. Empty (None) = same as rank (scale 1), the usual "
                                  "choice; it then follows rank when rank changes.", gt=0, le=4096)
    dropout: float = setting(0.0, "Dropout on the LoRA input during training (0 = off; 0.05-0.1 can "
                             "reduce overfitting on tiny datasets).", ge=0.0, lt=1.0)
    init: str = setting("default", "Initialisation of the LoRA matrices: 'default' (A Kaiming-uniform, "
                        "B zero: training starts from the base model) or 'gaussian' (A normal 1/rank).",
                        choices=("default", "gaussian"))
    targets: str = setting("all", "Which layers get a LoRA: 'attention' (double-block qkv + proj, "
                           "single-block linear1/linear2), 'all' (attention + the double-block MLPs), "
                           "'mmdit' (double blocks only), 'context' (the text stream only: "
                           "experimental). 'attention' saves memory on big models.",
                           choices=("attention", "all", "mmdit", "context"))
    train_modulation: bool = setting(False, "Also train the modulation linears (adaLN) of the streams "
                                     "the target preset touches. Off by default: they are large and "
                                     "kohya's Flux trainer leaves them out too.")
    blocks: str = setting("", "Only these blocks (empty = every block of the target preset), e.g. "
                          "'double:0-9,single:20-37' or 'double:0,2,4-6'.")
    exclude_blocks: str = setting("", "Blocks to leave out (empty = none), same syntax as blocks; "
                                  "applied after it.")
    init_lora: str = setting("", "Path of a LoRA .safetensors to start from (continue training); "
                             "empty = start fresh. Its rank must equal lora.rank.")

    @property
    def effective_alpha(self) -> float:
        """The alpha to build and save the LoRA with: `alpha`, or `rank` when alpha is None.

        None is kept (not resolved at construction) so that overriding only the rank of a preset
        keeps alpha = rank, as users of ai-toolkit's `linear_alpha: <same as linear>` expect."""
        return float(self.rank) if self.alpha is None else self.alpha

    @property
    def scale(self) -> float:
        """The factor the LoRA update is multiplied by (effective_alpha / rank)."""
        return self.effective_alpha / self.rank


@dataclass(frozen=True)
class OptimizerSettings(_Section):
    """Optimizer, learning-rate schedule, accumulation and clipping."""

    SECTION: ClassVar[str] = "optim"
    optimizer: str = setting("adamw", "'adamw' (torch, fused when possible), 'adamw8bit' (needs the "
                             "bitsandbytes package; less optimizer memory), 'adafactor' (torch), "
                             "'prodigy' (needs prodigyopt; finds its own step size, use learning_rate 1.0). "
                             "Adafactor uses neither betas nor eps.",
                             choices=("adamw", "adamw8bit", "adafactor", "prodigy"))
    learning_rate: float = setting(1e-4, "Peak learning rate. 1e-4 is the Flux standard; 2e-4 learns "
                                   "faster but may overfit; 1e-3 fries a LoRA. Prodigy: 1.0.", gt=0.0,
                                   le=10.0)
    weight_decay: float = setting(1e-4, "Decoupled weight decay (pulls LoRA weights toward 0).", ge=0.0, le=1.0)
    betas: tuple[float, float] = setting((0.9, 0.999), "Adam momentum coefficients (beta1, beta2).",
                                         ge=0.0, lt=1.0)
    eps: float = setting(1e-8, "Adam epsilon (numerical floor of the denominator).", gt=0.0, le=1.0)
    lr_scheduler: str = setting("constant", "Learning-rate shape after warmup: 'constant', 'cosine' "
                                "(to 0 at the last step) or 'linear' (to 0).",
                                choices=("constant", "cosine", "linear"))
    warmup_steps: int = setting(0, "Optimizer steps of linear warmup from ~0 to the peak rate.", ge=0,
                                le=1_000_000)
    gradient_accumulation: int = setting(1, "Micro-batches summed before each optimizer step "
                                         "(effective batch = batch_size x this). Costs time, not memory.",
                                         ge=1, le=1024)
    max_grad_norm: float = setting(1.0, "Clip the gradient norm to this value (0 = no clipping).", ge=0.0,
                                   le=1000.0)

    def _check(self) -> None:
        if self.optimizer == "prodigy" and self.learning_rate < 0.1:
            self._fail("learning_rate", f"{self.learning_rate} with prodigy: Prodigy estimates the step "
                       "size itself and learning_rate is a multiplier of it; use 1.0 (0.1-2 is sane)")
        if self.optimizer != "prodigy" and self.learning_rate > MAX_LEARNING_RATE:
            self._fail("learning_rate", f"{self.learning_rate} would blow the LoRA up within a few steps "
                       f"(Flux LoRAs train at 1e-4 to 4e-4); use at most {MAX_LEARNING_RATE} with "
                       f"{self.optimizer} (larger values are for prodigy, which scales its own steps)")


@dataclass(frozen=True)
class FlowSettings(_Section):
    """Flow-matching noise levels, loss weighting and the guidance input (core/train/flow.py)."""

    SECTION: ClassVar[str] = "flow"
    timestep_sampling: str = setting(
        "balanced", "Which noise levels training sees: 'uniform'; 'sigmoid' (logit-normal, mid-noise "
        "heavy); 'shift' (fixed shift toward high noise); 'flux_shift' (shift from image size, as BFL); "
        "'content' (bias toward low noise: details, subjects); 'style' (bias toward high noise: "
        "composition, styles); 'balanced' (50/50 content and style, recommended).",
        choices=("uniform", "sigmoid", "shift", "flux_shift", "content", "style", "balanced"))
    sigmoid_scale: float = setting(1.0, "Spread of 'sigmoid' sampling: sigma = sigmoid(scale * N(0,1)). "
                                   "Larger = more mass near 0 and 1.", gt=0.0, le=10.0)
    shift: float = setting(3.0, "Fixed shift of 'shift' sampling (SimpleTuner's flow_schedule_shift): "
                           ">1 moves noise levels up (composition, colour), <1 down (fine detail). "
                           "1 = uniform.", gt=0.0, le=100.0)
    content_style_bias: float = setting(3.0, "Exponent of 'content' / 'style' / 'balanced' sampling "
                                        "(sigma = u^k or 1-u^k): 1 = uniform, 3 = ai-toolkit's cubic.",
                                        ge=1.0, le=10.0)
    loss_weighting: str = setting("bell_shaped", "Weight of each noise level in the loss: 'uniform' or "
                                  "'bell_shaped' (mid noise counts most, ends least; mean weight 1).",
                                  choices=("uniform", "bell_shaped"))
    guidance: float = setting(1.0, "Guidance value fed to guidance-distilled models (Flux.1 dev) "
                              "while training. 1.0 keeps the distillation (the compatible default); "
                              "3.5-4.5 reintroduces CFG behaviour. Ignored by models without it.",
                              ge=0.0, le=100.0)


@dataclass(frozen=True)
class DopSettings(_Section):
    """Differential output preservation: keep no-trigger outputs like the base model (seed 002)."""

    SECTION: ClassVar[str] = "dop"
    enabled: bool = setting(False, "Also train the prompt with the trigger replaced by the class word "
                            "to match the base model's output, so the subject appears only with the "
                            "trigger. Yes for characters, no for styles. Costs 2 extra forwards.")
    class_word: str = setting("", "Word that replaces the trigger in the preservation prompt "
                              "(e.g. 'woman', 'cat'). Required when DOP is on.")
    multiplier: float = setting(1.0, "Strength of the preservation loss (1.0 = equal to the main loss; "
                                "raise to 1.5-2 if the subject leaks into no-trigger images).", gt=0.0, le=100.0)
    every_n_steps: int = setting(1, "Do the preservation pass every N steps (1 = always; 4-8 for big "
                                 "models to save time).", ge=1, le=1_000_000)

    def _check(self) -> None:
        if self.enabled and not self.class_word.strip():
            self._fail("class_word", "DOP is enabled but class_word is empty; set the generic word for "
                       "your subject (e.g. 'person', 'cat') or turn dop.enabled off")


@dataclass(frozen=True)
class TrainSettings(_Section):
    """Length, batch, precision, memory savers and EMA of the training loop."""

    SECTION: ClassVar[str] = "train"
    steps: int = setting(1000, "Optimizer steps to train. Each uses batch_size x "
                         "gradient_accumulation images. Rule of thumb: 27 per image for subjects "
                         "(min 300), 100 per image for styles.", ge=1, le=1_000_000)
    batch_size: int = setting(1, "Images per micro-batch (1 is normal for small datasets).", ge=1, le=256)
    seed: int = setting(42, "Seed for noise, timesteps, data order and LoRA init: same seed = same run.",
                        ge=0, le=2**31 - 1)
    mixed_precision: str = setting("bf16", "Compute precision: 'bf16' autocast (fast, standard) or "
                                   "'no' (fp32, slow; for exact tests). fp16 overflows in Flux.",
                                   choices=("no", "bf16"))
    gradient_checkpointing: bool = setting(True, "Recompute block activations in the backward pass: "
                                           "much less memory, ~30% slower. Needed for Flux on <48 GB.")
    checkpoint_every_n_blocks: int = setting(1, "With gradient checkpointing, checkpoint only every "
                                             "N-th block (1 = all; 2-3 trade memory for speed).", ge=1,
                                             le=64)
    blocks_to_swap: int = setting(0, "Keep the base weights of the last N single blocks in system RAM and "
                                  "bring each to the GPU only while it runs (kohya's blocks_to_swap): "
                                  "for 10-16 GB cards; slower, the same LoRA. 0 = off.", ge=0, le=64)
    ema: bool = setting(False, "Keep an exponential moving average of the LoRA weights and save that "
                        "(smoother results, same memory as one extra LoRA copy).")
    ema_decay: float = setting(0.999, "EMA decay per optimizer step (0.999 averages ~1000 steps; "
                               "warmed up early so short runs are not dominated by the start).",
                               gt=0.0, lt=1.0)


_RUN_NAME = re.compile(r"\w[\w.\- ]{0,99}")
RUN_NAME_RULE = ("letters, digits, '_', '-', '.' or spaces, up to 100 characters, starting with a letter, digit "
                 "or '_' and not ending with '.' or a space")
"""The one naming rule of runs: a run name is a folder name and a URL segment (no paths, no '..')."""


def is_run_name(name: object) -> bool:
    return isinstance(name, str) and _RUN_NAME.fullmatch(name) is not None and name[-1] not in ". "


@dataclass(frozen=True)
class RunSettings(_Section):
    """Naming, trigger, saving and preview cadence of one run."""

    SECTION: ClassVar[str] = "run"
    name: str = setting("flux_lora", "Run name; the run folder and file names use it "
                        "(letters, digits, '_', '-', '.' or spaces).")
    trigger: str = setting("", "Trigger word your captions contain (e.g. 'ohwx' or 'maya_char'); "
                           "prepended to captions that lack it. Empty = no trigger.")
    save_every: int = setting(250, "Save a checkpoint every N steps (0 = only the final LoRA).", ge=0,
                              le=1_000_000)
    max_step_saves_to_keep: int = setting(4, "Keep only the newest N step checkpoints (0 = keep all); "
                                          "the final LoRA is always kept.", ge=0, le=100_000)
    sample_every: int = setting(250, "Render preview images every N steps (0 = no previews).", ge=0,
                                le=1_000_000)
    lora_format: str = setting("kohya", "Key layout of Flux.1 LoRA files: 'kohya' (ComfyUI, Forge and kohya "
                               "sd-scripts apply every layer; diffusers drops txt_in, which lora.targets "
                               "'context' trains) or 'diffusers' (ai-toolkit's layout: ComfyUI, Forge and "
                               "diffusers apply every layer; kohya sd-scripts does not read it). Flux.2 files "
                               "have one layout that every loader reads.", choices=("kohya", "diffusers"))

    def _check(self) -> None:
        if not is_run_name(self.name):
            self._fail("name", f"{self.name!r} is not a safe folder name; use {RUN_NAME_RULE}")
        if self.trigger != self.trigger.strip():
            self._fail("trigger", f"{self.trigger!r} has leading/trailing spaces; remove them")


_SECTIONS: dict[str, type[_Section]] = {
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
    "max_train_steps": "train.steps", "train_batch_size": "train.batch_size", "use_ema": "train.ema",
    "dtype": "train.mixed_precision", "gradient_checkpointing_interval": "train.checkpoint_every_n_blocks",
    "blocks_to_swap": "train.blocks_to_swap",
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
    close = _nearest(key, pool)
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


def _build_section(name: str, data: Any) -> _Section:
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
        if self.optim.warmup_steps >= self.train.steps:
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
