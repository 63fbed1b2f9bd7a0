"""Config and presets: every bad value is refused with an error naming the setting; round trips hold."""

import json

import pytest

from flux_lora_lab.core.config import ConfigError, LoraSettings, TrainConfig
from flux_lora_lab.core.presets import PRESETS, apply_preset, preset_dict, suggested_steps

BAD_VALUES = [
    ({"lora": {"rank": 0}}, "lora.rank", "[1, "),
    ({"lora": {"rank": "32"}}, "lora.rank", "expected int"),
    ({"lora": {"rank": True}}, "lora.rank", "expected int"),
    ({"lora": {"alpha": 0}}, "lora.alpha", "(0"),
    ({"lora": {"dropout": 1.0}}, "lora.dropout", "[0.0, 1.0)"),
    ({"lora": {"init": "loftq"}}, "lora.init", "'default'"),
    ({"lora": {"targets": "attn"}}, "lora.targets", "did you mean 'attention'"),
    ({"model": {"quantize": "int8"}}, "model.quantize", "did you mean 'qint8'"),
    ({"optim": {"optimizer": "sgd"}}, "optim.optimizer", "not one of"),
    ({"optim": {"learning_rate": 0}}, "optim.learning_rate", "(0.0, 10.0]"),
    ({"optim": {"betas": [0.9, 1.0]}}, "optim.betas", "[0.0, 1.0)"),
    ({"optim": {"betas": [0.9]}}, "optim.betas", "list of 2"),
    ({"optim": {"eps": -1e-8}}, "optim.eps", "outside"),
    ({"optim": {"gradient_accumulation": 0}}, "optim.gradient_accumulation", "[1, "),
    ({"optim": {"max_grad_norm": -1}}, "optim.max_grad_norm", "[0.0, 1000.0]"),
    ({"optim": {"lr_scheduler": "cosine_with_restarts"}}, "optim.lr_scheduler", "not one of"),
    ({"optim": {"optimizer": "prodigy", "learning_rate": 1e-3}}, "optim.learning_rate", "use 1.0"),
    ({"optim": {"warmup_steps": 100}, "train": {"steps": 100}}, "optim.warmup_steps", "less than"),
    ({"flow": {"timestep_sampling": "logit_normal"}}, "flow.timestep_sampling", "not one of"),
    ({"flow": {"sigmoid_scale": 0}}, "flow.sigmoid_scale", "outside"),
    ({"flow": {"shift": 0}}, "flow.shift", "outside"),
    ({"flow": {"content_style_bias": 0.5}}, "flow.content_style_bias", "[1.0, 10.0]"),
    ({"flow": {"loss_weighting": "bell"}}, "flow.loss_weighting", "did you mean 'bell_shaped'"),
    ({"flow": {"guidance": -1}}, "flow.guidance", "outside"),
    ({"dop": {"enabled": True}, "run": {"trigger": "ohwx"}}, "dop.class_word", "class_word is empty"),
    ({"dop": {"enabled": True, "class_word": "cat"}}, "run.trigger", "no trigger word"),
    ({"dop": {"enabled": True, "class_word": "ohwx"}, "run": {"trigger": "ohwx"}}, "dop.class_word",
     "equals the trigger"),
    ({"dop": {"multiplier": 0}}, "dop.multiplier", "outside"),
    ({"dop": {"every_n_steps": 0}}, "dop.every_n_steps", "[1, "),
    ({"dop": {"enabled": "yes"}}, "dop.enabled", "expected bool"),
    ({"train": {"steps": 0}}, "train.steps", "[1, "),
    ({"train": {"batch_size": 0}}, "train.batch_size", "[1, "),
    ({"train": {"seed": -1}}, "train.seed", "[0, "),
    ({"train": {"mixed_precision": "fp16"}}, "train.mixed_precision", "not one of"),
    ({"train": {"checkpoint_every_n_blocks": 0}}, "train.checkpoint_every_n_blocks", "[1, "),
    ({"train": {"ema_decay": 1.0}}, "train.ema_decay", "(0.0, 1.0)"),
    ({"run": {"name": "../evil"}}, "run.name", "safe folder name"),
    ({"run": {"name": ""}}, "run.name", "safe folder name"),
    ({"run": {"trigger": " ohwx"}}, "run.trigger", "spaces"),
    ({"run": {"save_every": -1}}, "run.save_every", "[0, "),
    ({"run": {"max_step_saves_to_keep": -2}}, "run.max_step_saves_to_keep", "[0, "),
    ({"run": {"sample_every": -1}}, "run.sample_every", "[0, "),
    ({"version": 2}, "version", "not supported"),
    # Not numbers: NaN passes every comparison, so it must be refused by name.
    ({"optim": {"learning_rate": float("nan")}}, "optim.learning_rate", "nan is not a finite number"),
    ({"optim": {"learning_rate": float("inf")}}, "optim.learning_rate", "not a finite number"),
    ({"optim": {"betas": [0.9, float("nan")]}}, "optim.betas", "not a finite number"),
    ({"flow": {"guidance": float("nan")}}, "flow.guidance", "not a finite number"),
    ({"lora": {"alpha": float("inf")}}, "lora.alpha", "not a finite number"),
    ({"train": {"ema_decay": float("nan")}}, "train.ema_decay", "not a finite number"),
    # Numbers no run survives: bounded, with the setting named.
    ({"optim": {"learning_rate": 1e6}}, "optim.learning_rate", "outside the allowed range"),
    ({"optim": {"learning_rate": 0.5}}, "optim.learning_rate", "would blow the LoRA up"),
    ({"lora": {"rank": 100_000}}, "lora.rank", "outside the allowed range [1, 1024]"),
    ({"train": {"batch_size": 100_000}}, "train.batch_size", "outside the allowed range [1, 256]"),
]


@pytest.mark.parametrize("data,key,fragment", BAD_VALUES, ids=[k for _, k, _ in BAD_VALUES])
def test_bad_value_error_names_setting_value_and_range(data, key, fragment):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")
    assert fragment in str(info.value)


UNKNOWN_KEYS = [
    ({"lora": {"linear_alpha": 16}}, "lora.linear_alpha", "'lora.alpha'"),  # ai-toolkit spelling
    ({"optim": {"lr": 1e-4}}, "optim.lr", "'optim.learning_rate'"),
    ({"optim": {"optimzer": "adamw"}}, "optim.optimzer", "'optim.optimizer'"),  # typo
    ({"lora": {"learning_rate": 1e-4}}, "lora.learning_rate", "optim.learning_rate"),  # wrong section
    ({"dop": {"diff_output_preservation_class": "cat"}}, "dop.diff_output_preservation_class",
     "'dop.class_word'"),
    ({"loar": {"rank": 4}}, "loar", "'lora'"),
    ({"network": {}}, "network", "valid:"),
]


@pytest.mark.parametrize("data,key,suggestion", UNKNOWN_KEYS, ids=[k for _, k, _ in UNKNOWN_KEYS])
def test_unknown_keys_are_rejected_with_nearest_valid_key(data, key, suggestion):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert info.value.key == key
    assert "unknown" in str(info.value) and suggestion in str(info.value)


def test_round_trip_dict_and_json_for_defaults_and_a_full_config():
    full = TrainConfig.from_dict({
        "model": {"quantize": "qint4"},
        "lora": {"rank": 8, "alpha": 4, "dropout": 0.1, "init": "gaussian", "targets": "context",
                 "blocks": "double:0-1", "exclude_blocks": "double:1", "train_modulation": True, "init_lora": "/x/y.safetensors"},
        "optim": {"optimizer": "adafactor", "betas": [0.8, 0.99], "lr_scheduler": "cosine",
                  "warmup_steps": 10},
        "flow": {"timestep_sampling": "flux_shift", "guidance": 3.5},
        "dop": {"enabled": True, "class_word": "cat", "every_n_steps": 4},
        "train": {"steps": 20, "ema": True},
        "run": {"trigger": "sks toy", "name": "cat-toy_v1.2"},
    })
    for cfg in (TrainConfig(), full):
        data = cfg.to_dict()
        assert json.loads(json.dumps(data)) == data  # plain JSON, no tuples or objects
        assert TrainConfig.from_dict(data) == cfg
    assert full.optim.betas == (0.8, 0.99) and isinstance(full.lora.alpha, float)


def test_alpha_defaults_to_rank_and_follows_rank_overrides():
    cfg = TrainConfig.from_dict({"lora": {"rank": 32}})
    assert cfg.lora.alpha is None and cfg.lora.effective_alpha == 32.0 and cfg.lora.scale == 1.0
    assert cfg.with_overrides({"lora": {"rank": 8}}).lora.effective_alpha == 8.0
    assert LoraSettings(rank=16, alpha=8).scale == 0.5


def test_settings_are_frozen():
    cfg = TrainConfig()
    with pytest.raises(AttributeError):
        cfg.lora.rank = 4  # type: ignore[misc]


def test_describe_gives_a_doc_for_every_field_and_the_allowed_values():
    info = TrainConfig.describe()
    assert set(TrainConfig().to_dict()) - {"version"} == {k.split(".")[0] for k in info}
    assert all(len(v["doc"]) > 20 for v in info.values())
    assert info["flow.timestep_sampling"]["choices"][-1] == "balanced"
    assert info["lora.rank"]["ge"] == 1 and info["lora.rank"]["default"] == 16
    assert len(info) == sum(len(s) for k, s in TrainConfig().to_dict().items() if k != "version")


def test_presets_make_valid_configs_with_the_seed_values():
    char = apply_preset("character", {"run": {"trigger": "maya_char"}, "dop": {"class_word": "woman"}},
                        n_images=20)
    assert (char.lora.rank, char.lora.effective_alpha, char.optim.learning_rate) == (32, 32.0, 1e-4)
    assert char.optim.optimizer == "adamw8bit" and char.optim.gradient_accumulation == 4  # seed 000
    assert char.train.ema and char.train.ema_decay == 0.999
    assert char.dop.enabled and char.dop.class_word == "woman" and char.dop.multiplier == 1.0
    assert char.flow.timestep_sampling == "content" and char.flow.loss_weighting == "bell_shaped"
    assert char.train.steps == 135  # 27 * 20 images shown, 4 per optimizer step
    assert apply_preset("character", {"run": {"trigger": "m"}, "dop": {"class_word": "woman"},
                                      "optim": {"gradient_accumulation": 1}}, n_images=20).train.steps == 540

    style = apply_preset("style", n_images=10)
    assert not style.dop.enabled and style.flow.timestep_sampling == "style"
    assert (style.lora.rank, style.optim.learning_rate, style.train.steps) == (64, 1.5e-4, 1000)

    concept = apply_preset("concept", {"train": {"steps": 123}}, n_images=50)
    assert concept.train.steps == 123 and concept.flow.timestep_sampling == "balanced"
    for name in PRESETS:
        assert TrainConfig.from_dict(preset_dict(name) | {"dop": {"enabled": False}})


def test_character_preset_without_class_word_explains_dop():
    with pytest.raises(ConfigError, match="turns on DOP") as info:
        apply_preset("character", {"run": {"trigger": "ohwx"}})
    assert info.value.key == "dop.class_word"
    with pytest.raises(ConfigError, match="unknown setting"):
        apply_preset("style", {"lora": {"rnak": 4}})
    with pytest.raises(ConfigError, match="did you mean 'style'"):
        apply_preset("styel")


def test_character_preset_without_bitsandbytes_names_the_fix(monkeypatch):
    from flux_lora_lab.core.train import optim

    monkeypatch.setattr(optim, "available_optimizers", lambda: ["adamw", "adafactor"])
    names = {"run": {"trigger": "ohwx"}, "dop": {"class_word": "woman"}}
    with pytest.raises(ConfigError, match="preset 'character' trains with 'adamw8bit'.*`pip install bitsandbytes`.*'adamw'") as info:
        optim.require_installed(apply_preset("character", names), "character")
    assert info.value.key == "optim.optimizer"
    optim.require_installed(apply_preset("character", {**names, "optim": {"optimizer": "adamw"}}), "character")
    with pytest.raises(ConfigError, match="optim.optimizer asks to train with 'prodigy'"):
        optim.require_installed(apply_preset("style", {"optim": {"optimizer": "prodigy", "learning_rate": 1.0}}), "style")


def test_astria_step_rule():
    assert suggested_steps("character", 1) == 75  # minimum 300 images shown, 4 per step (accumulation)
    assert suggested_steps("character", 11, accumulation=1) == 300  # 297 -> 300
    assert suggested_steps("character", 12, accumulation=1) == 324
    assert suggested_steps("character", 12) == 81  # 324 / 4
    assert suggested_steps("concept", 100) == 2700
    assert suggested_steps("style", 2) == 300
    assert suggested_steps("style", 20) == 2000
    with pytest.raises(ConfigError, match="n_images"):
        suggested_steps("style", 0)


def test_run_names_follow_the_one_rule_the_runner_and_routes_use():
    """Measured before: the config refused spaces while the runner and the routes allowed them."""
    from flux_lora_lab.core.config import RunSettings
    from flux_lora_lab.core.run.runner import check_run_id

    for good in ("cat-toy", "style_v2.1", "my run", "Katze", "猫", "_x"):
        assert RunSettings(name=good).name == check_run_id(good) == good
    for bad in ("", "../x", "a/b", ".hidden", "-x", "x.", "x ", "a" * 101):
        with pytest.raises(ConfigError, match="not a safe folder name"):
            RunSettings(name=bad)
        with pytest.raises(ValueError, match="not usable as a folder name"):
            check_run_id(bad)
