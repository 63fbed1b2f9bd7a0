"""TrainLoRAAdvanced ("Advanced LoRA training settings"): every setting that is not on TrainLoRA.

Its widgets start at the values every named preset uses (nodes/setting_widgets.py), so an untouched node
trains exactly what TrainLoRA's preset alone would; a changed widget trains its value. Connected to
TrainLoRA's `advanced` input, all of them apply; without the node, TrainLoRA's preset decides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from comfy_api.latest import io

from . import types
from .setting_widgets import ADVANCED_NODE, setting_widgets

PREVIEW_DEFAULTS = {"preview_seed": 0, "preview_guidance": 3.5, "preview_negative_prompt": "", "preview_real_cfg": 1.0,
                    "preview_more_sizes": ""}
"""How TrainLoRA renders its previews when no advanced node is connected."""


@dataclass(frozen=True)
class AdvancedSettings:
    """The advanced node's widget values by widget name (setting widgets and preview options)."""

    values: Mapping


class TrainLoRAAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TrainLoRAAdvanced",
            display_name="Advanced LoRA training settings (Flux LoRA Lab)",
            category="FluxLoRALab",
            description=f"{ADVANCED_NODE}: plug into TrainLoRA's 'advanced' input. Every widget starts at the "
                        "value the presets use; what the node shows is what trains.",
            inputs=[
                *setting_widgets(ADVANCED_NODE),
                io.Int.Input("preview_seed", default=PREVIEW_DEFAULTS["preview_seed"], min=0, max=2**31 - 1,
                             control_after_generate=False, tooltip="Seed of the preview images (the same at "
                             "every checkpoint, so only the LoRA differs)."),
                io.Float.Input("preview_guidance", default=PREVIEW_DEFAULTS["preview_guidance"], min=0.0, max=30.0,
                               step=0.1, tooltip="Guidance of the preview images (Flux.1 dev: 3.5)."),
                io.String.Input("preview_negative_prompt", default=PREVIEW_DEFAULTS["preview_negative_prompt"],
                                tooltip="Negative prompt for real CFG previews (used when preview_real_cfg > 1)."),
                io.Float.Input("preview_real_cfg", default=PREVIEW_DEFAULTS["preview_real_cfg"], min=1.0, max=20.0,
                               step=0.1, tooltip="Real classifier-free guidance of the previews (SimpleTuner's "
                                                 "validation_guidance_real): 1 = off (Flux's distilled guidance only); "
                                                 "above 1 each step also runs the negative prompt, twice the time."),
                io.String.Input("preview_more_sizes", default=PREVIEW_DEFAULTS["preview_more_sizes"],
                                tooltip="More preview sizes besides width x height, e.g. '768x1024, 1024x768'."),
            ],
            outputs=[types.Settings.Output(display_name="advanced", tooltip="To TrainLoRA's 'advanced' input.")],
        )

    @classmethod
    def execute(cls, **values) -> io.NodeOutput:
        return io.NodeOutput(AdvancedSettings(MappingProxyType(dict(values))))
