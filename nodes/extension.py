"""Registers the pack's V3 nodes with ComfyUI; imported only from `comfy_entrypoint`."""

from comfy_api.latest import ComfyExtension, io

from .compare import CompareCheckpoints
from .dataset import DatasetFromFolder
from .dev_nodes import FluxLabDemoImages, FluxLabTinyModels
from .load_model import LoadFluxForTraining
from .sample import SampleCheckpoint
from .train import TrainLoRA
from .train_advanced import TrainLoRAAdvanced


class FluxLabExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI 0.3.75 never calls on_load (0.33.0 does); on both, get_node_list runs before the server copies its route
        # table into the app, so the pack's routes (and its pre-flight of missing model files) are added here (once).
        from ._comfy.preflight import register_preflight
        from ._comfy.routes import register_routes

        register_routes()
        register_preflight()
        return [FluxLabTinyModels, FluxLabDemoImages, LoadFluxForTraining, DatasetFromFolder, SampleCheckpoint, CompareCheckpoints,
                TrainLoRA, TrainLoRAAdvanced]
