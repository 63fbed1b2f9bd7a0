"""CompareCheckpoints: a labelled grid of a run's checkpoints (rows) x prompts (columns), one seed,
each cell sampled exactly as the stock graph would (nodes/_comfy/sampling.py), plus the UI data the
A/B widget reads."""

from __future__ import annotations

import logging

import numpy as np
import torch
from comfy_api.latest import io

from ..core.run.grid import compose_grid, label_height, note_strip
from ..core.train.preview import prompt_lines
from ._comfy import sampling
from .sample import CATEGORY, check_run_name, lora_source_inputs, resolve_run, source_fingerprint

log = logging.getLogger(__name__)

UI_KEY = "fluxlab_compare"
UI_VERSION = 1


class CompareCheckpoints(io.ComfyNode):
    """Rows = base (no LoRA), the chosen checkpoints (oldest first), final; columns = prompts; every
    cell uses the same seed, so a column differs only by the LoRA. A cell is bit-identical to the
    stock graph CLIPTextEncode -> FluxGuidance -> LoraLoaderModelOnly(strength) -> KSampler(cfg,
    negative = CLIPTextEncode(negative_prompt)) -> VAEDecode; the base row skips the LoRA loader.

    UI data (the `executed` websocket message's `output`, and /history):
      output["images"]: [grid PNG]  (temp folder, shown on the node like PreviewImage)
      output["fluxlab_compare"]: [ {                     # a one-element list (ComfyUI merges ui lists)
        "version": 1,
        "run_id": str, "run_dir": str,
        "rows":    [{"label": "base" | "step 125" | "final",
                     "checkpoint": "base" | "checkpoint_000125" | "final",   # what POST /fluxlab/runs/{id}/use takes
                     "step": int | null, "lora_path": str | null}, ...],
        "columns": [{"prompt": str}, ...],
        "seed": int, "steps": int, "strength": float, "width": int, "height": int,
        "cells":   [[{"filename": str, "subfolder": str, "type": "temp"}, ...per column], ...per row],
        "grid":    {"filename", "subfolder", "type"},
        "layout":  {"cell_width": int, "cell_height": int, "label_height": int},
        "training": str | null,   # a run still training: "training - 1 of 3 checkpoints so far (step 40 of 300)..."
      } ]
    Cell files are served by GET /view?filename=..&subfolder=..&type=temp. Grid geometry: width =
    columns * cell_width, height = rows * cell_height + (rows + 1) * label_height (core/run/grid.py; grows with cell width).

    A run still training (TrainLoRA in background mode hands it over at once) is compared as it is:
    the rows saved so far, and a note strip under the grid (also "training" above) saying how many
    checkpoints are still to come. Never an error: the user sees the base row at once and what to expect.
    """

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CompareCheckpoints",
            display_name="Compare Checkpoints (Flux LoRA Lab)",
            category=CATEGORY,
            description="A grid of a run's checkpoints x prompts at one seed, sampled as stock ComfyUI would, for A/B comparison.",
            is_output_node=True,  # shows its grid and A/B widget on its own, like PreviewImage
            inputs=[
                io.Model.Input("model", tooltip="The Flux MODEL the run trained on."),
                io.Clip.Input("clip", tooltip="Its text encoder, to encode the prompts."),
                io.Vae.Input("vae"),
                io.String.Input("prompts", multiline=True, default="a photo of a person",
                                tooltip="One prompt per line; each is a column."),
                io.String.Input("checkpoints", default="all",
                                tooltip="'all', 'latest N', 'none', or steps separated by commas ('125, 250')."),
                io.Boolean.Input("include_base", default=True, tooltip="A first row without the LoRA."),
                io.Boolean.Input("include_final", default=True, tooltip="A last row with lora_final.safetensors."),
                io.Float.Input("strength", default=1.0, min=-100.0, max=100.0, step=0.01),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Int.Input("steps", default=20, min=1, max=10000),
                io.Float.Input("guidance", default=3.5, min=0.0, max=100.0, step=0.1),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.String.Input("negative_prompt", default="", tooltip="Only used when cfg != 1."),
                io.Combo.Input("sampler_name", options=sampling.sampler_names(), default="euler"),
                io.Combo.Input("scheduler", options=sampling.scheduler_names(), default="simple"),
                io.Int.Input("width", default=1024, min=16, max=16384, step=16),
                io.Int.Input("height", default=1024, min=16, max=16384, step=16),
                *lora_source_inputs(),
            ],
            outputs=[io.Image.Output(display_name="grid")],
        )

    @classmethod
    def validate_inputs(cls, run_name=None):
        """Only run_name (see sample.check_run_name: one argument, one message); the selection and the
        prompts are checked by execute() before anything is sampled."""
        return check_run_name(run_name)

    @classmethod
    def fingerprint_inputs(cls, run_name=None, **_):
        return source_fingerprint(run_name)

    @classmethod
    def execute(cls, model, clip, vae, prompts, checkpoints, include_base, include_final, strength, seed, steps,
                guidance, cfg, negative_prompt, sampler_name, scheduler, width, height, run=None, run_name="") -> io.NodeOutput:
        _, source = resolve_run(run, run_name)
        rows = source.rows(checkpoints, include_base, include_final)
        columns = prompt_lines(prompts)
        if not columns:
            raise ValueError("prompts is empty: write one prompt per line")
        note = source.coming(checkpoints, include_final)  # None unless the run is still training
        settings = sampling.SampleSettings(seed, steps, cfg, sampler_name, scheduler, width, height)
        positives = [sampling.with_guidance(sampling.encode_prompt(clip, text), guidance) for text in columns]
        negative = sampling.encode_prompt(clip, negative_prompt)

        images = []  # row-major, each (1, H, W, 3)
        for row in rows:
            patched = sampling.apply_lora(model, row.lora_path, strength)
            images += [sampling.render(patched, vae, positive, negative, settings) for positive in positives]
        cell_width = int(images[0].shape[2]) if images else width
        parts = []
        if images:
            cells = torch.cat(images)
            parts.append(compose_grid(
                [[cells[r * len(columns) + c].cpu().numpy() for c in range(len(columns))] for r in range(len(rows))],
                row_labels=[row.label for row in rows], column_labels=columns,
            ))
        if note:
            log.info("CompareCheckpoints: run %s: %s", source.run_id, note)
            parts.append(note_strip(note, cell_width * len(columns), cell_width))
        grid = torch.from_numpy(np.ascontiguousarray(np.concatenate(parts))).unsqueeze(0)

        saved = sampling.save_temp_images(cells, "fluxlab_compare_cell", cls) if images else []
        (grid_file,) = sampling.save_temp_images(grid, "fluxlab_compare_grid", cls)
        description = {
            "version": UI_VERSION, "run_id": source.run_id, "run_dir": str(source.root),
            "rows": [row.describe() for row in rows],
            "columns": [{"prompt": text} for text in columns],
            "seed": seed, "steps": steps, "strength": strength, "width": width, "height": height,
            "cells": [saved[r * len(columns):(r + 1) * len(columns)] for r in range(len(rows))],
            "grid": grid_file,
            "layout": {"cell_width": cell_width, "cell_height": int(images[0].shape[1]) if images else height,
                       "label_height": label_height(cell_width)},
            "training": note,
        }
        return io.NodeOutput(grid, ui={"images": [grid_file], UI_KEY: [description]})
