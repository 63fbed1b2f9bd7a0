"""TrainLoRA's widgets and config, and the run wiring of nodes/_comfy/runs.py, in-process.

The widgets are compiled from the engine's settings (nodes/setting_widgets.py); these tests pin what that
promises: every engine setting is a widget of TrainLoRA or of its advanced node or is owned by another
node, every widget holds a real value (the values are written out here, as the README documents them,
not read from the code under test), the preset table fills TrainLoRA with each preset's values, an
untouched advanced node trains what the preset alone does, changed widgets override, errors name the
widget, and prompts of the first layout are refused with what to change. The run wiring is tested with
a stand-in train_fn on the real runner: websocket forwarding per session, LoRA publishing, live-name
refusal, and the interrupt guard that keeps ComfyUI's per-op interrupt check away from training threads.
"""

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.comfy_host import import_comfy

import_comfy()

import comfy.model_management as mm  # noqa: E402

from flux_lora_lab.core.config import TrainConfig  # noqa: E402
from flux_lora_lab.core.presets import PRESETS  # noqa: E402
from flux_lora_lab.core.run.events import Checkpoint, Finished, Started, Step  # noqa: E402
from flux_lora_lab.core.run.runner import RunError  # noqa: E402
from flux_lora_lab.nodes import setting_widgets as widgets  # noqa: E402
from flux_lora_lab.nodes import train, train_advanced  # noqa: E402
from flux_lora_lab.nodes._comfy import routes, runs  # noqa: E402
from flux_lora_lab.nodes.legacy_inputs import legacy_problem  # noqa: E402

NAMES = dict(run_name="r1", trigger="ohwx", class_word="woman", n_images=5)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# What a user sees on a fresh TrainLoRA (the concept preset) and what each preset fills in.
FRESH = {"train_steps": 0, "lora_rank": 32, "lora_alpha": 32.0, "optim_learning_rate": 1e-4, "optim_optimizer": "adamw",
         "train_batch_size": 1, "optim_gradient_accumulation": 1, "lora_targets": "all", "flow_timestep_sampling": "balanced", "dop_enabled": False,
         "dop_every_n_steps": 1, "run_save_every": 250, "run_sample_every": 250, "train_seed": 42}
PRESET_FILL = {
    "character": {**FRESH, "optim_optimizer": "adamw8bit", "optim_gradient_accumulation": 4,
                  "flow_timestep_sampling": "content", "dop_enabled": True},
    "style": {**FRESH, "lora_rank": 64, "lora_alpha": 64.0, "optim_learning_rate": 1.5e-4,
              "flow_timestep_sampling": "style"},
    "concept": FRESH,
    "custom": {**FRESH, "train_steps": 1000, "lora_rank": 16, "lora_alpha": 16.0},
}
# The advanced node's starting values: what every named preset uses (the engine default where no preset sets it).
ADVANCED_SHOWN = {"train_ema": True, "train_ema_decay": 0.999, "train_blocks_to_swap": 0, "lora_dropout": 0.0,
                  "lora_init": "default", "lora_train_modulation": False, "lora_blocks": "", "optim_beta1": 0.9,
                  "optim_beta2": 0.999, "optim_weight_decay": 1e-4, "optim_lr_scheduler": "constant",
                  "optim_max_grad_norm": 1.0, "flow_loss_weighting": "bell_shaped",
                  "flow_guidance": 1.0, "flow_shift": 3.0, "dop_multiplier": 1.0, "run_max_step_saves_to_keep": 12,
                  "run_lora_format": "kohya", "preview_seed": 0, "preview_guidance": 3.5}


def defaults(node) -> dict:
    """{widget: default} of a node's schema."""
    return {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}


def essentials(preset: str = "concept", **changed) -> dict:
    return {**PRESET_FILL[preset], **changed}


# -- widgets and config ---------------------------------------------------------------------------
def test_every_setting_is_a_widget_of_one_node_or_owned_by_another():
    described = TrainConfig.describe()
    on_train, on_advanced = defaults(train.TrainLoRA), defaults(train_advanced.TrainLoRAAdvanced)
    assert not set(on_train) & set(on_advanced), "a setting lives on one node"
    covered = {k for k in described if widgets.widget_name(k) in {**on_train, **on_advanced}} | {"optim.betas"}
    assert covered | set(widgets.NOT_WIDGETS) == set(described)
    assert {"optim_beta1", "optim_beta2"} <= set(on_advanced)
    rank = next(i for i in train.TrainLoRA.define_schema().inputs if i.id == "lora_rank")
    assert described["lora.rank"]["doc"] in rank.tooltip and "character: 32" in rank.tooltip and "style: 64" in rank.tooltip


def test_trainlora_shows_the_essentials_as_real_values_and_nothing_else():
    shown = defaults(train.TrainLoRA)
    assert {k: shown[k] for k in FRESH} == FRESH
    assert list(shown) == ["preset", "run_name", "mode", "train_steps", "lora_rank", "lora_alpha", "optim_learning_rate",
                           "optim_optimizer", "train_batch_size", "optim_gradient_accumulation", "lora_targets", "flow_timestep_sampling", "dop_enabled",
                           "dop_every_n_steps", "run_save_every", "run_sample_every", "train_seed", "preview_prompts",
                           "preview_width", "preview_height", "preview_steps", "on_existing_run"]
    for node in (train.TrainLoRA, train_advanced.TrainLoRAAdvanced):
        # lora_lokr_factor -1 is LyCORIS' own value (the largest factor), not a 'use the preset' marker
        markers = [k for k, v in defaults(node).items() if v in (-1, "preset") and k != "lora_lokr_factor"]
        assert not markers, "no 'use the preset' markers"
    advanced = defaults(train_advanced.TrainLoRAAdvanced)
    assert {k: advanced[k] for k in ADVANCED_SHOWN} == ADVANCED_SHOWN


def test_the_preset_table_in_the_schema_fills_each_presets_values():
    preset = next(i for i in train.TrainLoRA.define_schema().inputs if i.id == "preset")
    table = preset.as_dict()["fluxlab_preset_values"]
    assert table == PRESET_FILL
    assert json.loads(json.dumps(table)) == table, "it travels in /object_info"


def test_named_presets_agree_on_every_advanced_setting():
    """The advanced node shows one value per setting, so a preset may differ only in TrainLoRA's essentials."""
    for key, widget in widgets.setting_widget_map().items():
        if widget.node == widgets.ADVANCED_NODE:
            values = {repr(getattr(getattr(widgets.preset_config(p), key.split(".")[0]), key.split(".")[1])) for p in PRESETS}
            assert len(values) == 1, f"presets differ on {key}: {values}; make it an essential or agree"


@pytest.mark.parametrize("preset, rank, sampling, lr, dop", [
    ("character", 32, "content", 1e-4, True), ("style", 64, "style", 1.5e-4, False), ("concept", 32, "balanced", 1e-4, False),
])
def test_a_presets_fill_trains_the_preset_with_or_without_an_untouched_advanced_node(preset, rank, sampling, lr, dop):
    alone = widgets.build_config(preset, essentials(preset), **NAMES)
    assert (alone.lora.rank, alone.lora.effective_alpha, alone.lora.targets) == (rank, float(rank), "all")
    assert (alone.flow.timestep_sampling, alone.optim.learning_rate, alone.dop.enabled) == (sampling, lr, dop)
    assert alone.train.steps == max(300, (100 if preset == "style" else 27) * 5) // (4 if preset == "character" else 1)
    assert (alone.run.save_every, alone.run.max_step_saves_to_keep, alone.run.sample_every) == (250, 12, 250)
    assert (alone.train.ema, alone.train.ema_decay, alone.flow.loss_weighting) == (True, 0.999, "bell_shaped")
    advanced = {k: v for k, v in defaults(train_advanced.TrainLoRAAdvanced).items() if not k.startswith("preview_")}
    assert widgets.build_config(preset, {**essentials(preset), **advanced}, **NAMES) == alone


def test_custom_is_the_engine_defaults():
    config = widgets.build_config("custom", essentials("custom"), **NAMES)
    assert config == TrainConfig().with_overrides({"run": {"name": "r1", "trigger": "ohwx"}, "dop": {"class_word": "woman"},
                                                   "lora": {"alpha": 16.0}})
    assert (config.train.steps, config.lora.rank, config.train.ema, config.run.max_step_saves_to_keep) == (1000, 16, False, 4)


def test_changed_widgets_override_the_preset():
    values = {**essentials("character", lora_rank=8, lora_alpha=4.0, optim_learning_rate=3e-4, train_steps=12,
                           flow_timestep_sampling="sigmoid"),
              "optim_beta1": 0.9, "optim_beta2": 0.99, "train_ema": False, "lora_blocks": "double:0"}
    config = widgets.build_config("character", values, **NAMES)
    assert (config.lora.rank, config.lora.effective_alpha, config.lora.scale) == (8, 4.0, 0.5)
    assert config.optim.betas == (0.9, 0.99) and config.train.ema is False and config.lora.blocks == "double:0"
    assert config.flow.timestep_sampling == "sigmoid" and config.optim.learning_rate == 3e-4
    assert config.train.steps == 12 and config.dop.enabled is True, "what was not changed stays the preset's"
    assert config.run.max_step_saves_to_keep == 12, "an advanced setting without its widget is the preset's"


def test_settings_of_other_nodes_win():
    model = {"train": {"mixed_precision": "no", "gradient_checkpointing": False}, "model": {"quantize": "qint8"}}
    config = widgets.build_config("style", essentials("style"), model_overrides=model, **NAMES)
    assert (config.train.mixed_precision, config.train.gradient_checkpointing, config.model.quantize) == ("no", False, "qint8")
    assert (config.run.trigger, config.dop.class_word) == ("ohwx", "woman")


@pytest.mark.parametrize("preset, values, words", [
    ("custom", {"lora_rank": 0}, ("widget 'lora_rank'", "lora.rank", "[1, 1024]")),
    ("custom", {"optim_optimizer": "sgd"}, ("widget 'optim_optimizer'", "'sgd' is not one of")),
    ("custom", {"optim_warmup_steps": 50, "train_steps": 10}, ("optim_warmup_steps", "on its Advanced LoRA training settings node", "less than")),
    ("custom", {"optim_beta1": 1.0, "optim_beta2": 0.999}, ("widget 'optim_beta1' / 'optim_beta2' on its Advanced LoRA training settings node", "optim.betas")),
    ("character", {}, ("DatasetFromFolder", "class word")),
    ("sketch", {}, ("preset", "unknown preset")),
])
def test_bad_values_name_the_widget(preset, values, words):
    names = dict(NAMES, class_word="") if preset == "character" else NAMES
    with pytest.raises(ValueError) as error:
        widgets.build_config(preset, {**essentials(preset if preset in PRESET_FILL else "custom"), **values}, **names)
    for word in words:
        assert word in str(error.value)


def test_validation_checks_preset_and_mode():
    assert train.TrainLoRA.validate_inputs(preset="style", mode="background") is True
    assert "unknown preset" in train.TrainLoRA.validate_inputs(preset="portrait", mode="wait")
    assert "unknown mode" in train.TrainLoRA.validate_inputs(preset="style", mode="later")


def test_prompts_of_the_first_layout_are_refused_with_what_to_change():
    """The first TrainLoRA's inputs (its defaults, captured before the change) and one with a moved setting."""
    old = dict(json.loads((FIXTURES / "old_trainlora_widgets.json").read_text()))
    problem = legacy_problem(old)
    assert "optim_beta1" in problem and "preview_guidance" in problem and "TrainLoRAAdvanced" in problem
    assert "'advanced' input" in problem and "lora_targets" in problem and "'preset' no longer means" in problem
    assert legacy_problem(defaults(train.TrainLoRA)) is None
    assert "flow_shift" in legacy_problem({**defaults(train.TrainLoRA), "flow_shift": 2.0})


# -- run wiring ------------------------------------------------------------------------------------
def _fake_train(steps: int, gate: threading.Event | None = None):
    def train_fn(control, emit):
        emit(Started(run_id=threading.current_thread().name.removeprefix("fluxlab-run-"), total_steps=steps))
        for step in range(1, steps + 1):
            if gate is not None:
                gate.wait(10)
            emit(Step(step=step, total=steps, loss=1.0 / step, lr=1e-4))
        root = control.run_dir
        (root / "lora_final.safetensors").write_bytes(b"lora bytes %d" % steps)
        emit(Checkpoint(step=steps, path=str(root / f"checkpoint_{steps:06d}")))
        emit(Finished(step=steps, lora_path=str(root / "lora_final.safetensors")))
    return train_fn


def test_events_are_forwarded_once_per_session_and_the_lora_is_published(tmp_path):
    sent = []
    send = lambda event, data: sent.append((event, data))  # noqa: E731
    for steps in (2, 3):  # the second session continues the same events.jsonl
        handle = runs.start_run("fwd", _fake_train(steps), blocking=False, root=tmp_path / "runs", send=send,
                                publish_to=tmp_path / "loras")
        assert handle.join(10)
    kinds = [event for event, _ in sent]
    assert kinds == ["fluxlab.started", *["fluxlab.step"] * 2, "fluxlab.checkpoint", "fluxlab.finished",
                     "fluxlab.started", *["fluxlab.step"] * 3, "fluxlab.checkpoint", "fluxlab.finished"]
    seqs = [data["seq"] for _, data in sent]
    assert seqs == list(range(len(seqs))), "each record once, in order"
    assert all(data["run_id"] == "fwd" for _, data in sent)
    assert (tmp_path / "loras" / "fwd.safetensors").read_bytes() == b"lora bytes 3"


def test_publishing_clears_copies_a_killed_server_left_behind(tmp_path):
    """Measured before: a kill during the copy into loras/fluxlab left `.tmp-<run>.safetensors.<hex>`
    there forever. Temps idle for 10 minutes go; one being written now stays."""
    loras = tmp_path / "loras"
    loras.mkdir()
    stale, live = loras / ".tmp-old.safetensors.1a2b3c4d", loras / ".tmp-other.safetensors.5e6f7a8b"
    stale.write_bytes(b"half a lora")
    live.write_bytes(b"being copied")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    source = tmp_path / "final.safetensors"
    source.write_bytes(b"lora")
    assert runs.publish_lora(source, "new", loras) == "fluxlab/new.safetensors"
    assert not stale.exists() and live.exists() and (loras / "new.safetensors").read_bytes() == b"lora"


def test_a_live_run_name_is_refused_and_blocking_runs_report_progress(tmp_path, monkeypatch):
    gate = threading.Event()
    sent = []
    monkeypatch.setattr(runs, "_progress_target", lambda node_id: {"prompt_id": "p", "node": node_id})
    handle = runs.start_run("busy", _fake_train(2, gate), blocking=True, node_id="7", root=tmp_path,
                            send=lambda e, d: sent.append((e, d)), publish_to=tmp_path / "loras")
    try:
        with pytest.raises(RunError, match="already"):
            runs.start_run("busy", _fake_train(1), blocking=False, root=tmp_path, send=lambda e, d: None)
    finally:
        gate.set()
        handle.join(10)
    assert [d for e, d in sent if e == "progress"] == [{"value": 1, "max": 2, "prompt_id": "p", "node": "7"},
                                                       {"value": 2, "max": 2, "prompt_id": "p", "node": "7"}]


def test_comfy_interrupt_checks_skip_training_threads_and_cancel_is_read_not_cleared(tmp_path):
    seen = {}

    def train_fn(control, emit):
        try:
            mm.throw_exception_if_processing_interrupted()  # what every comfy op forward calls
            seen["raised"] = False
        except mm.InterruptProcessingException:
            seen["raised"] = True
        seen["cancelled"] = control.poll().cancelled  # the blocking run's hook reads the flag

    mm.interrupt_current_processing(True)
    try:
        runs.start_run("guarded", train_fn, blocking=True, root=tmp_path, send=lambda e, d: None).join(10)
        assert seen == {"raised": False, "cancelled": True}
        assert mm.processing_interrupted(), "the flag is left for the prompt that owns it"
        with pytest.raises(mm.InterruptProcessingException):
            runs.raise_interrupted()
        assert not mm.processing_interrupted(), "ending the node consumes it, as ComfyUI's nodes do"
        mm.interrupt_current_processing(True)
        with pytest.raises(mm.InterruptProcessingException):
            mm.throw_exception_if_processing_interrupted()  # other threads keep ComfyUI's behaviour
    finally:
        mm.interrupt_current_processing(False)


def test_weights_made_under_inference_mode_become_trainable_through():
    with torch.inference_mode():
        layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    before = [p.clone() for p in layer.parameters()]
    layer.requires_grad_(False)
    x = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="Inference tensors"):
        layer(x).sum().backward()
    assert runs.leave_inference_mode(layer) == 4 and runs.leave_inference_mode(layer) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    layer(x).sum().backward()
    assert x.grad is not None


def test_curve_image_is_a_comfy_image(tmp_path):
    sent = []
    handle = runs.start_run("curve", _fake_train(3), blocking=False, root=tmp_path, send=lambda e, d: sent.append(e),
                            publish_to=tmp_path / "loras")
    handle.join(10)
    image = train.curve_image(handle)
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3 and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0


@pytest.mark.parametrize("path, ok", [("learning_curve.svg", True), ("checkpoint_000002/prompt_0.png", True),
                                      ("", False), ("../x", False), ("a/../../x", False), ("..\\x", False),
                                      ("/etc/passwd", False), ("C:\\x", False), ("C:x", False)])
def test_relative_path_rules(path, ok):
    assert (routes.relative_path_problem(path) is None) == ok


@pytest.mark.skipif(not hasattr(mm, "in_training"), reason="this host has no model_management.in_training")
def test_in_training_is_set_while_any_run_trains_and_restored_after(tmp_path):
    """Hosts with the flag take their autograd-safe kernels (Flux's RoPE among them) only while it is
    set; two overlapping runs keep it set until the last one ends, then it is as it was."""
    first_in, second_in, first_done = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first(control, emit):
        seen["first"] = mm.in_training
        first_in.set()
        second_in.wait(10)
        first_done.set()

    def second(control, emit):
        second_in.set()
        first_done.wait(10)
        seen["second_after_first"] = mm.in_training

    assert mm.in_training is False
    a = runs.start_run("flag_a", first, blocking=False, root=tmp_path, send=lambda e, d: None)
    first_in.wait(10)
    b = runs.start_run("flag_b", second, blocking=False, root=tmp_path, send=lambda e, d: None)
    a.join(10), b.join(10)
    assert seen == {"first": True, "second_after_first": True}
    assert mm.in_training is False


def test_one_map_names_the_widgets_of_every_setting_for_errors_too():
    """The map that builds the widgets also reads them back and names them in errors (a pair too)."""
    table = widgets.setting_widget_map()
    assert table["optim.betas"].names == ("optim_beta1", "optim_beta2") and table["optim.betas"].kind == "pair"
    assert (table["lora.alpha"].kind, table["train.ema"].kind, table["lora.targets"].kind) == ("float", "switch", "choice")
    assert (table["lora.rank"].node, table["optim.betas"].node) == ("TrainLoRA", "Advanced LoRA training settings")
    assert widgets.overrides_from_widgets({"optim_beta1": 0.8, "optim_beta2": 0.95, "train_steps": 0}) == \
        {"optim": {"betas": [0.8, 0.95]}}, "a pair needs both widgets; steps 0 is the preset's rule"
    with pytest.raises(ValueError, match=r"TrainLoRA widget 'lora_alpha': lora.alpha"):
        widgets.build_config("custom", essentials("custom", lora_alpha=0.0), **NAMES)
