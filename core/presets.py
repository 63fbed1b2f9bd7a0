"""Starting points for the three kinds of LoRA users train, as data (values from the seed documents).

A preset is a partial config (nested dict) applied on top of `TrainConfig()` defaults; the user's own
overrides go on top of the preset. What each value is and where it comes from:

character  rank 32 (alpha = rank), lr 1e-4, adamw8bit, gradient accumulation 4, EMA 0.999, gradient
           checkpointing: the ai-toolkit Flux character template (seed 000). DOP on with multiplier 1.0
           (seed 002: "Subject/Character: yes"); the class word (e.g. 'woman') and trigger must come
           from the user, so applying it without them is an error that says so. 'content' sampling
           (seed 002: bias toward low noise, "best for subject LoRAs") and bell_shaped weighting (seed 002).
style      rank 64, lr 1.5e-4 (seed 000 "Style LoRA for Flux"), no DOP (seed 002: a style should
           affect everything), 'style' sampling (bias toward high noise), bell_shaped.
concept    like character but DOP off (seed 002: "maybe"; turn it on with a class word), plain AdamW
           without accumulation and 'balanced' sampling (seed 002's recommended default).

adamw8bit keeps about a quarter of AdamW's optimizer memory (it matters on a 24 GB card at rank 32-64);
requirements.txt installs bitsandbytes. Where it is missing, applying the character preset is an
error naming the pip command and the way around it (optim.optimizer 'adamw'), before anything runs.

Steps follow Astria's published rules (seed 004), counted in images shown: 'portrait' 27 per image,
at least 300, for subjects and concepts; 'high' 100 per image, at least 300, for styles. Astria
trains one image per step; with gradient accumulation a step shows that many images, so the
suggested optimizer steps are the rule divided by it (character: 20 images -> 540 / 4 = 135 steps).
"""

from __future__ import annotations

import difflib
import math

from .config import ConfigError, TrainConfig, merge_sections

_COMMON = {
    "optim": {"optimizer": "adamw", "learning_rate": 1e-4, "lr_scheduler": "constant",
              "gradient_accumulation": 1, "max_grad_norm": 1.0},
    "flow": {"loss_weighting": "bell_shaped", "guidance": 1.0},
    "train": {"batch_size": 1, "gradient_checkpointing": True, "ema": True, "ema_decay": 0.999,
              "mixed_precision": "bf16"},
    "run": {"save_every": 250, "max_step_saves_to_keep": 12, "sample_every": 250},
}

PRESETS: dict[str, dict] = {
    "character": {
        "lora": {"rank": 32, "alpha": None, "targets": "all"},
        "optim": {"optimizer": "adamw8bit", "gradient_accumulation": 4},
        "flow": {"timestep_sampling": "content"},
        "dop": {"enabled": True, "multiplier": 1.0, "every_n_steps": 1},
    },
    "style": {
        "lora": {"rank": 64, "alpha": None, "targets": "all"},
        "optim": {"learning_rate": 1.5e-4},
        "flow": {"timestep_sampling": "style"},
        "dop": {"enabled": False},
    },
    "concept": {
        "lora": {"rank": 32, "alpha": None, "targets": "all"},
        "flow": {"timestep_sampling": "balanced"},
        "dop": {"enabled": False},
    },
}

# (images shown per image, minimum images shown) per preset: Astria 'portrait' for subjects, 'high' for styles.
STEP_RULES: dict[str, tuple[int, int]] = {"character": (27, 300), "concept": (27, 300), "style": (100, 300)}


def _check_name(preset: str) -> None:
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError("preset", f"unknown preset {preset!r}{hint}; choose one of {list(PRESETS)}")


def suggested_steps(preset: str, n_images: int, accumulation: int | None = None) -> int:
    """Astria-style optimizer steps: ceil(max(minimum, per_image * n_images) / accumulation), with
    the preset's own gradient accumulation when `accumulation` is None."""
    _check_name(preset)
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ConfigError("n_images", f"need a positive number of training images, got {n_images!r}")
    per_image, minimum = STEP_RULES[preset]
    if accumulation is None:
        accumulation = preset_dict(preset)["optim"]["gradient_accumulation"]
    return math.ceil(max(minimum, per_image * n_images) / accumulation)


def preset_dict(preset: str) -> dict:
    """The preset's partial config (a fresh copy), common values included."""
    _check_name(preset)
    return merge_sections(_COMMON, PRESETS[preset])


def apply_preset(preset: str, overrides: dict | None = None, n_images: int | None = None) -> TrainConfig:
    """TrainConfig = defaults <- preset <- overrides (nested dict, checked like `from_dict`).

    With n_images and no `train.steps` in overrides, steps = suggested_steps(preset, n_images) at the
    gradient accumulation the run will use."""
    overrides = overrides or {}
    data = merge_sections(preset_dict(preset), overrides)
    if n_images is not None and "steps" not in overrides.get("train", {}):
        accumulation = data["optim"]["gradient_accumulation"]
        data = merge_sections(data, {"train": {"steps": suggested_steps(preset, n_images, accumulation)}})
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as err:
        if PRESETS[preset].get("dop", {}).get("enabled") and err.key in ("dop.class_word", "run.trigger"):
            raise ConfigError(err.key, f"preset {preset!r} turns on DOP, which needs a trigger word "
                              "(run.trigger) and the generic class word it stands for (dop.class_word, "
                              f"e.g. 'woman', 'man', 'cat'), or set dop.enabled false. ({err})") from err
        raise
