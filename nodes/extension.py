"""Registers the pack's V3 nodes with ComfyUI; imported only from `comfy_entrypoint`."""

from comfy_api.latest import ComfyExtension, io

from .dev_nodes import FluxLabTinyModels


class FluxLabExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [FluxLabTinyModels]
