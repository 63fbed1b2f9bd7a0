"""Developer nodes: tiny seeded Flux models so graphs, the demo and end-to-end tests run on CPU."""

from comfy_api.latest import io

from ._comfy.tiny_models import available_variants, build_tiny_flux_models


class FluxLabTinyModels(io.ComfyNode):
    """MODEL / CLIP / VAE of a tiny real-architecture Flux (random weights: for wiring and tests,
    not for pictures). Stands in for a checkpoint loader where no Flux weights exist."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxLabTinyModels",
            display_name="Tiny Flux Models (Flux LoRA Lab dev)",
            category="FluxLoRALab/dev",
            description="Seeded tiny Flux.1 / Flux.2 dev / Flux.2 klein (hosts with klein) built from ComfyUI's own classes, for testing graphs on CPU.",
            inputs=[
                io.Combo.Input("variant", options=available_variants(), default="flux1-dev"),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False),  # the weights
            ],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, variant, seed) -> io.NodeOutput:
        models = build_tiny_flux_models(variant, seed=seed)
        return io.NodeOutput(models.model, models.clip, models.vae)
