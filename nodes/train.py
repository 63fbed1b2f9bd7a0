"""TrainLoRA: the training node. Widgets (+ the advanced node's) -> TrainConfig -> a run on a background
thread -> outputs, and a text on the node: the settings the run uses and its memory plan.

The setting widgets and their way back into a TrainConfig are nodes/setting_widgets.py; the essentials
are TrainLoRA's widgets, the rest TrainLoRAAdvanced's (nodes/train_advanced.py). Settings owned by other
nodes are not widgets: quantization, training dtype and gradient checkpointing (LoadFluxForTraining:
they shape the model it builds), the trigger and class word (DatasetFromFolder: the captions were
encoded with them), and the run name (`run_name`).
"""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..core.data.report import for_run
from ..core.run.curve import loss_points, render_image
from ..core.run.events import Info
from ..core.run.rundir import RunDir
from ..core.train.preview import parse_sizes, prompt_library
from ..core.train.resume import ON_EXISTING, settle_run
from ..core.train.trainer import TrainingJob, train
from . import types
from ._comfy import memory, previews, runs, sampling
from ._comfy.model import model_overrides
from ._comfy.text_encoder import ComfyClipL
from .legacy_inputs import refuse_first_layout
from .run_text import run_text
from .setting_widgets import (DEFAULT_PRESET, PRESET_CHOICES, TRAIN_NODE, build_config, preset_table, setting_widgets,
                              where_to_fix)
from .train_advanced import PREVIEW_DEFAULTS, AdvancedSettings

MODES = ("wait", "background")


def curve_image(handle) -> torch.Tensor:
    """The loss curve so far as a ComfyUI IMAGE (1, H, W, 3) float in [0, 1]."""
    steps, losses = loss_points(handle.events.history())
    array = np.asarray(render_image(steps, losses), dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None]


class TrainLoRA(io.ComfyNode):
    """Trains a LoRA on the dataset; `wait` blocks until done, `background` returns at once."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TrainLoRA",
            display_name="Train LoRA (Flux LoRA Lab)",
            category="FluxLoRALab",
            description="Train a Flux LoRA. Run folder: output/fluxlab/<run_name>/; queue the same run name "
                        "again to resume it. The final LoRA is also copied to loras/fluxlab/<run_name>.safetensors.",
            inputs=[
                types.TrainingModel.Input("model", tooltip="From LoadFluxForTraining."),
                types.Dataset.Input("dataset", tooltip="From DatasetFromFolder (its trigger and class word are used)."),
                preset_input(),
                io.String.Input("run_name", default="flux_lora",
                                tooltip="Run folder output/fluxlab/<run_name>/. The same name resumes that run "
                                        "(also to train a finished run further); a running one is refused."),
                io.Combo.Input("mode", options=list(MODES), default="wait",
                               tooltip="wait: the node blocks until training ends (Cancel stops it and saves a "
                                       "checkpoint). background: returns at once and the queue stays free; control "
                                       "the run from the Flux LoRA Lab panel."),
                *setting_widgets(TRAIN_NODE),
                io.String.Input("preview_prompts", multiline=True, default="", optional=True,
                                tooltip="Preview prompts, one per line, rendered before training (baseline/) and "
                                        "at every checkpoint. 'nickname: prompt' names the images after the "
                                        "nickname (a prompt library). A prompt with the trigger is also rendered "
                                        "without it (class word in its place): progression/ pairs them."),
                io.Int.Input("preview_width", default=512, min=64, max=2048, step=16, optional=True,
                             tooltip="Width of the preview images."),
                io.Int.Input("preview_height", default=512, min=64, max=2048, step=16, optional=True,
                             tooltip="Height of the preview images."),
                io.Int.Input("preview_steps", default=20, min=1, max=100, optional=True,
                             tooltip="Sampling steps of the preview images (4-8 are enough to see a trend on CPU)."),
                io.Combo.Input("on_existing_run", options=list(ON_EXISTING), default="resume", optional=True,
                               tooltip="When output/fluxlab/<run_name>/ already holds a run. resume: go on from "
                                       "its newest checkpoint, refused (nothing touched) if the MODEL, dataset or "
                                       "LoRA shape differ. new run: train fresh as <run_name>_2 (_3, ...). new run "
                                       "from its LoRA: the same, starting from the old run's newest LoRA. The old "
                                       "run's files are never overwritten."),
                types.Dataset.Input("eval_dataset", optional=True,
                                    tooltip="A DatasetFromFolder of held-out images: its evaluation loss (fixed samples, "
                                            "noise levels and noise; see run_eval_timesteps) is scored before step 1 "
                                            "and at every checkpoint and drawn with the training loss."),
                types.Settings.Input("advanced", optional=True, tooltip="From 'Advanced LoRA training settings' "
                                     "(TrainLoRAAdvanced): every other setting. Without it the preset decides them."),
                io.Clip.Input("clip", optional=True, tooltip="Encodes the preview prompts (default: the dataset's CLIP)."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the preview images (default: the dataset's VAE)."),
            ],
            outputs=[
                types.Run.Output(display_name="run"),
                io.String.Output(display_name="lora_path", tooltip="The final LoRA (background: where it will be)."),
                io.Image.Output(display_name="loss_curve"),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            is_output_node=True,  # training is the point: the node runs even with nothing connected
        )

    @classmethod
    def fingerprint_inputs(cls, **inputs):
        """Never the same: ComfyUI runs TrainLoRA whenever it is queued, so queuing an unchanged graph
        resumes a stopped or failed run (or says at once that it finished) instead of serving the
        last result from its cache."""
        return float("nan")

    @classmethod
    def validate_inputs(cls, preset, mode):
        """ComfyUI 0.3.75 does not check V3 combo values itself; these two decide what runs at all.
        (Setting widgets are checked by TrainConfig when the node runs, with the setting's own message.)"""
        if preset not in PRESET_CHOICES:
            return f"unknown preset {preset!r}; choose one of {list(PRESET_CHOICES)}"
        if mode not in MODES:
            return f"unknown mode {mode!r}; choose one of {list(MODES)}"
        return True

    @classmethod
    def execute(cls, model, dataset, preset, run_name, mode, preview_prompts="", preview_width=512,
                preview_height=512, preview_steps=20, on_existing_run="resume",
                eval_dataset=None, advanced: AdvancedSettings | None = None, clip=None, vae=None,
                **settings) -> io.NodeOutput:
        refuse_first_layout((cls.hidden.prompt or {}).get(cls.hidden.unique_id, {}).get("inputs", {}))
        dataset.require_family(model.family)
        if eval_dataset is not None:
            eval_dataset.require_family(model.family)
        data = dataset.dataset
        extra = dict(advanced.values) if advanced is not None else {}  # setting widgets + preview options
        preview = {name: extra.pop(name, default) for name, default in PREVIEW_DEFAULTS.items()}
        config = build_config(preset, {**settings, **extra}, run_name=run_name.strip(), trigger=dataset.trigger,
                              class_word=dataset.class_word, n_images=data.image_count,
                              model_overrides=model_overrides(model.settings))
        spec = previews.build_preview_spec(prompt_library(preview_prompts), clip or dataset.clip,
                                           vae or dataset.vae, model.family, width=preview_width,
                                           height=preview_height, steps=preview_steps,
                                           seed=preview["preview_seed"], guidance=preview["preview_guidance"],
                                           patcher=model.patcher, more_sizes=parse_sizes(preview["preview_more_sizes"]),
                                           negative_prompt=preview["preview_negative_prompt"],
                                           real_guidance=preview["preview_real_cfg"], trigger=dataset.trigger,
                                           class_word=dataset.class_word)
        report = dataset.report
        if config.lora.init_lora:  # confined like every LoRA a graph names: the loras and output folders
            try:
                init = sampling.lora_file(config.lora.init_lora)
            except (ValueError, FileNotFoundError) as err:
                raise ValueError(f"TrainLoRA {where_to_fix('lora.init_lora')}: {err}") from err
            config = config.with_overrides({"lora": {"init_lora": str(init)}})
        # Before any thread or file: a run that would resume on other weights or data is refused, one
        # that will not fit says so (not an OOM at step 1), and 'auto' settles quantization.
        config, name_note = settle_run(runs.runs_root(), config, on_existing_run, model.base_fingerprint,
                                       data.fingerprint)
        run_id = config.run.name
        config, plan, auto_note = memory.fit_run(model, config, data)
        text = run_text(config, preset, data.image_count, plan, [name_note, auto_note], advanced is not None)
        run_report = None if report is None else for_run(
            report.data, data, config.train.batch_size * config.optim.gradient_accumulation, preset)

        def train_fn(control, emit):
            for note in (name_note, auto_note):
                if note:
                    emit(Info(message=note))
            runs.leave_inference_mode(model.transformer)
            with model.run_lifetime(config):
                adapter = model.new_adapter(config)
                job = TrainingJob(config=config, adapter=adapter, data=data,
                                  text_encoder=ComfyClipL.for_run(config, dataset.clip, adapter),
                                  run_dir=RunDir(control.run_dir), base_fingerprint=model.base_fingerprint,
                                  dataset_fingerprint=data.fingerprint,
                                  eval_data=None if eval_dataset is None else eval_dataset.dataset, previews=spec,
                                  dataset_report=run_report)
                return train(job, control, emit)

        handle = runs.start_run(run_id, train_fn, blocking=mode == "wait", node_id=cls.hidden.unique_id)
        ref = runs.RunRef(run_id, handle.run_dir.root)
        final = handle.run_dir.final_lora_path
        if mode == "background":
            return cls._outputs(ref, str(final), handle, text)
        handle.join()
        summary = handle.summary()
        if handle.control.cancelled and summary["status"] != "finished":  # Cancel after the last step: done
            runs.raise_interrupted()
        if summary["status"] == "failed":
            raise RuntimeError(f"training run {run_id!r} failed: {summary['error']} (its checkpoints stay in "
                               f"{handle.run_dir.root}; queue the same run name to resume)")
        lora_path = str(final) if final.is_file() else summary["lora_path"] or ""
        return cls._outputs(ref, lora_path, handle, f"{text}\nFinished: {lora_path}")

    @classmethod
    def _outputs(cls, ref: runs.RunRef, lora_path: str, handle, text: str) -> io.NodeOutput:
        """The loss curve as the node's image and `text` under it (web/node_text.js shows `text`)."""
        curve = curve_image(handle)
        return io.NodeOutput(ref, lora_path, curve, ui={**ui.PreviewImage(curve, cls=cls).as_dict(), "text": [text]})


def preset_input() -> io.Input:
    """The preset list; its values for TrainLoRA's widgets ride along in the schema, where the browser
    extension reads them to fill the widgets when the preset changes (web/train_settings.js)."""
    widget = io.Combo.Input("preset", options=list(PRESET_CHOICES), default=DEFAULT_PRESET,
                            tooltip="Fills the settings below with a preset's values (you can edit them after): "
                                    "character (rank 32, DOP on: needs trigger + class word), style (rank 64, "
                                    "lr 1.5e-4, high-noise bias), concept (rank 32), custom (the engine defaults). "
                                    "Settings on no widget (without an advanced node) are the preset's.")
    widget.extra_dict = {"fluxlab_preset_values": preset_table()}
    return widget
