"""TrainLoRA: the training node. Widgets -> TrainConfig -> a run on a background thread -> outputs.

The setting widgets and their way back into a TrainConfig are nodes/setting_widgets.py. Settings
owned by other nodes are not widgets: quantization, training dtype and gradient checkpointing
(LoadFluxForTraining: they shape the model it builds), the trigger and class word
(DatasetFromFolder: the captions were encoded with them), and the run name (`run_name`).
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
from .setting_widgets import PRESET_CHOICES, build_config, setting_widgets

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
                io.Combo.Input("preset", options=list(PRESET_CHOICES), default="concept",
                               tooltip="Starting values for every setting below left at -1 / 'preset': character "
                                       "(rank 32, DOP on: needs trigger + class word), style (rank 64, high-noise "
                                       "bias), concept (rank 32), custom (the engine defaults)."),
                io.String.Input("run_name", default="flux_lora",
                                tooltip="Run folder output/fluxlab/<run_name>/. The same name resumes that run "
                                        "(also to train a finished run further); a running one is refused."),
                io.Combo.Input("mode", options=list(MODES), default="wait",
                               tooltip="wait: the node blocks until training ends (Cancel stops it and saves a "
                                       "checkpoint). background: returns at once and the queue stays free; control "
                                       "the run from the Flux LoRA Lab panel."),
                *setting_widgets(),
                io.String.Input("preview_prompts", multiline=True, default="", optional=True,
                                tooltip="Preview prompts, one per line, rendered before training (baseline/) and "
                                        "at every checkpoint. 'nickname: prompt' names the images after the "
                                        "nickname (a prompt library). A prompt with the trigger is also rendered "
                                        "without it (class word in its place): progression/ pairs them."),
                io.String.Input("preview_negative_prompt", default="", optional=True,
                                tooltip="Negative prompt for real CFG previews (used when preview_real_cfg > 1)."),
                io.Float.Input("preview_real_cfg", default=1.0, min=1.0, max=20.0, step=0.1, optional=True,
                               tooltip="Real classifier-free guidance of the previews (SimpleTuner's "
                                       "validation_guidance_real): 1 = off (Flux's distilled guidance only); "
                                       "above 1 each step also runs the negative prompt, twice the time."),
                io.String.Input("preview_more_sizes", default="", optional=True,
                                tooltip="More preview sizes besides width x height, e.g. '768x1024, 1024x768'."),
                io.Clip.Input("clip", optional=True, tooltip="Encodes the preview prompts (default: the dataset's CLIP)."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the preview images (default: the dataset's VAE)."),
                io.Int.Input("preview_width", default=512, min=64, max=2048, step=16, optional=True),
                io.Int.Input("preview_height", default=512, min=64, max=2048, step=16, optional=True),
                io.Int.Input("preview_steps", default=20, min=1, max=100, optional=True),
                io.Int.Input("preview_seed", default=0, min=0, max=2**31 - 1, optional=True),
                io.Float.Input("preview_guidance", default=3.5, min=0.0, max=30.0, step=0.1, optional=True),
                types.Dataset.Input("eval_dataset", optional=True,
                                    tooltip="A DatasetFromFolder of held-out images: its evaluation loss (fixed samples, "
                                            "noise levels and noise; see run_eval_timesteps) is scored before step 1 "
                                            "and at every checkpoint and drawn with the training loss."),
                io.Combo.Input("on_existing_run", options=list(ON_EXISTING), default="resume", optional=True,
                               tooltip="When output/fluxlab/<run_name>/ already holds a run. resume: go on from "
                                       "its newest checkpoint, refused (nothing touched) if the MODEL, dataset or "
                                       "LoRA shape differ. new run: train fresh as <run_name>_2 (_3, ...). new run "
                                       "from its LoRA: the same, starting from the old run's newest LoRA. The old "
                                       "run's files are never overwritten."),
            ],
            outputs=[
                types.Run.Output(display_name="run"),
                io.String.Output(display_name="lora_path", tooltip="The final LoRA (background: where it will be)."),
                io.Image.Output(display_name="loss_curve"),
            ],
            hidden=[io.Hidden.unique_id],
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
    def execute(cls, model, dataset, preset, run_name, mode, preview_prompts="", clip=None, vae=None,
                preview_width=512, preview_height=512, preview_steps=20, preview_seed=0, preview_guidance=3.5,
                preview_negative_prompt="", preview_real_cfg=1.0, preview_more_sizes="", on_existing_run="resume", eval_dataset=None, **settings) -> io.NodeOutput:
        dataset.require_family(model.family)
        if eval_dataset is not None:
            eval_dataset.require_family(model.family)
        data = dataset.dataset
        config = build_config(preset, settings, run_name=run_name.strip(), trigger=dataset.trigger,
                              class_word=dataset.class_word, n_images=data.image_count,
                              model_overrides=model_overrides(model.settings))
        spec = previews.build_preview_spec(prompt_library(preview_prompts), clip or dataset.clip,
                                           vae or dataset.vae, model.family, width=preview_width,
                                           height=preview_height, steps=preview_steps, seed=preview_seed,
                                           guidance=preview_guidance, patcher=model.patcher,
                                           more_sizes=parse_sizes(preview_more_sizes),
                                           negative_prompt=preview_negative_prompt, real_guidance=preview_real_cfg,
                                           trigger=dataset.trigger, class_word=dataset.class_word)
        report = dataset.report
        if config.lora.init_lora:  # confined like every LoRA a graph names: the loras and output folders
            try:
                init = sampling.lora_file(config.lora.init_lora)
            except (ValueError, FileNotFoundError) as err:
                raise ValueError(f"TrainLoRA widget 'lora_init_lora': {err}") from err
            config = config.with_overrides({"lora": {"init_lora": str(init)}})
        # Before any thread or file: a run that would resume on other weights or data is refused, one
        # that will not fit says so (not an OOM at step 1), and 'auto' settles quantization.
        config, name_note = settle_run(runs.runs_root(), config, on_existing_run, model.base_fingerprint,
                                       data.fingerprint)
        run_id = config.run.name
        config, _, auto_note = memory.fit_run(model, config, data)

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
                                  eval_data=None if eval_dataset is None else eval_dataset.dataset, previews=spec, dataset_report=None if report is None else for_run(
                                      report.data, data, config.train.batch_size * config.optim.gradient_accumulation,
                                      preset))
                return train(job, control, emit)

        handle = runs.start_run(run_id, train_fn, blocking=mode == "wait", node_id=cls.hidden.unique_id)
        ref = runs.RunRef(run_id, handle.run_dir.root)
        final = handle.run_dir.final_lora_path
        if mode == "background":
            return cls._outputs(ref, str(final), handle)
        handle.join()
        summary = handle.summary()
        if handle.control.cancelled and summary["status"] != "finished":  # Cancel after the last step: done
            runs.raise_interrupted()
        if summary["status"] == "failed":
            raise RuntimeError(f"training run {run_id!r} failed: {summary['error']} (its checkpoints stay in "
                               f"{handle.run_dir.root}; queue the same run name to resume)")
        lora_path = str(final) if final.is_file() else summary["lora_path"] or ""
        return cls._outputs(ref, lora_path, handle)

    @classmethod
    def _outputs(cls, ref: runs.RunRef, lora_path: str, handle) -> io.NodeOutput:
        curve = curve_image(handle)
        return io.NodeOutput(ref, lora_path, curve, ui=ui.PreviewImage(curve, cls=cls))
