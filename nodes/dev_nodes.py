"""Developer nodes: tiny seeded Flux models and the demo's own pictures, so graphs, the demo and
end-to-end tests run on CPU with nothing but the pack."""

from comfy_api.latest import io

from ._comfy.input_folder import input_subfolder
from ._comfy.tiny_models import VAE_KINDS, available_variants, build_tiny_flux_models
from ._demo_images import DEMO_FOLDER, DEMO_IMAGES, write_demo_images


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
                io.Combo.Input("vae", options=list(VAE_KINDS), default="random", optional=True,
                               tooltip="random: a seeded random autoencoder, its pictures are noise. colour (Flux.1 "
                               "only): encodes each 8 x 8 block's average colour and decodes it back, so samples "
                               "show what a LoRA learned."),
            ],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, variant, seed, vae="random") -> io.NodeOutput:
        models = build_tiny_flux_models(variant, seed=seed, vae=vae)
        return io.NodeOutput(models.model, models.clip, models.vae)


class FluxLabDemoImages(io.ComfyNode):
    """Writes the demo's captioned pictures into ComfyUI's input folder on first use and gives that
    folder to DatasetFromFolder, so the demo runs from a Manager install with no files to fetch."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxLabDemoImages",
            display_name="Demo Images (Flux LoRA Lab dev)",
            category="FluxLoRALab/dev",
            description=f"Three 64 px pictures with captions ({', '.join(DEMO_IMAGES)}), written into "
                        f"input/{DEMO_FOLDER}/ when missing. Wire `folder` into DatasetFromFolder's folder.",
            inputs=[],
            outputs=[io.String.Output("folder")],
        )

    @classmethod
    def fingerprint_inputs(cls) -> str:
        """Run again when a picture or caption went missing (the files themselves never change)."""
        folder = input_subfolder(DEMO_FOLDER)
        return ",".join(sorted(p.name for p in folder.glob("*"))) if folder.is_dir() else "missing"

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(str(write_demo_images(input_subfolder(DEMO_FOLDER))))
