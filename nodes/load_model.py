"""LoadFluxForTraining: a Flux MODEL from ComfyUI's own loaders, prepared for LoRA training."""

from comfy_api.latest import io, ui

from ._comfy.model import QUANTIZATION, TRAINING_DTYPES, TrainingModelHandle, model_sections
from .types import TrainingModel


class LoadFluxForTraining(io.ComfyNode):
    """Detects Flux.1 / Flux.2, loads the weights through ComfyUI's model management and shows a memory
    estimate. The MODEL itself is never changed: sampling with it gives the same images as before."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LoadFluxForTraining",
            display_name="Load Flux for Training (Flux LoRA Lab)",
            category="FluxLoRALab",
            description="Prepare a Flux.1 or Flux.2 MODEL for LoRA training without modifying it.",
            inputs=[
                io.Model.Input("model", tooltip="A Flux.1 (dev / schnell / Krea) or Flux.2 MODEL from ComfyUI's "
                               "checkpoint or diffusion-model loader. It is shared, never modified."),
                io.Combo.Input("quantization", options=list(QUANTIZATION), default="auto",
                               tooltip="Base weights while training: 'none' uses the loaded weights as they are "
                               "(no copy); 'fp8' / 'int8' (~half) and 'int4' (~quarter, some quality loss) train "
                               "on frozen quantized copies of the block layers. 'auto' picks, when a run starts, "
                               "the first of none, fp8, int8, int4 (then checkpointing on every block, then "
                               "block swap) that fits the device's free memory for that run's settings, and "
                               "says why in the run's log. The LoRA itself stays in float."),
                io.Combo.Input("training_dtype", options=list(TRAINING_DTYPES), default="bf16",
                               tooltip="'bf16': bf16 autocast, the standard. 'fp32': no autocast, slow, needs an "
                               "fp32 MODEL. Also the compute dtype of quantized layers."),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute block activations in the backward pass: much less memory, "
                                 "about 30% slower. Needed for Flux on GPUs under 48 GB."),
                io.Int.Input("checkpoint_every_n_blocks", default=0, min=0, max=64,
                             tooltip="With gradient checkpointing, checkpoint only every N-th block (1 = all; "
                             "2-3 trade memory for speed). 0 = auto: when a run starts, the least recompute "
                             "that fits the device's free memory (none at all when there is room), said in "
                             "the run's log."),
            ],
            outputs=[
                TrainingModel.Output(display_name="training_model", tooltip="The Flux model ready for TrainLoRA."),
                io.String.Output(display_name="memory_estimate", tooltip="Rough memory use for these settings."),
            ],
        )

    @classmethod
    def execute(cls, model, quantization, training_dtype, gradient_checkpointing, checkpoint_every_n_blocks) -> io.NodeOutput:
        settings = model_sections(quantization=quantization, training_dtype=training_dtype,
                                  gradient_checkpointing=gradient_checkpointing,
                                  checkpoint_every_n_blocks=checkpoint_every_n_blocks)
        handle = TrainingModelHandle(model, settings)
        return io.NodeOutput(handle, handle.memory_estimate, ui=ui.PreviewText(handle.memory_estimate))
