"""Flux LoRA Lab: a ComfyUI node pack that trains Flux LoRAs inside the graph.

ComfyUI imports this file when it scans custom_nodes. Nothing heavy runs here: the nodes (and torch,
peft, quanto behind them) are imported only when ComfyUI calls `comfy_entrypoint`. We export the V3
entry point and not NODE_CLASS_MAPPINGS: in ComfyUI 0.3.75 the loader ignores `comfy_entrypoint`
when NODE_CLASS_MAPPINGS is present.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import FluxLabExtension

    return FluxLabExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
