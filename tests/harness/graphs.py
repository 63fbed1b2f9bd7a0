"""API-format graphs made of stock ComfyUI nodes, shared by the e2e tests and the demo."""

from __future__ import annotations

# Per tiny variant: the stock empty-latent node (Flux.1: 16 ch at /8, Flux.2: 128 ch at /16) and
# whether the model takes a distilled guidance value (FluxGuidance).
TINY_SAMPLING = {
    "flux1-dev": ("EmptySD3LatentImage", True),
    "flux1-schnell": ("EmptySD3LatentImage", False),
    "flux2-dev": ("EmptyFlux2LatentImage", True),
    "flux2-klein": ("EmptyFlux2LatentImage", False),
}


def tiny_sampling_graph(variant: str, seed: int = 0, width: int = 64, height: int = 64, steps: int = 2,
                        prompt: str = "a photo of a red fox", prefix: str = "fluxlab_tiny") -> dict:
    """FluxLabTinyModels -> CLIPTextEncode -> (FluxGuidance) -> KSampler -> VAEDecode -> SaveImage.

    The image node is "save" (its history output holds the saved files); cfg 1 as for distilled Flux.
    """
    latent_node, guided = TINY_SAMPLING[variant]
    positive = ["guidance", 0] if guided else ["text", 0]
    graph = {
        "models": {"class_type": "FluxLabTinyModels", "inputs": {"variant": variant, "seed": seed}},
        "text": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["models", 1], "text": prompt}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["models", 1], "text": ""}},
        "latent": {"class_type": latent_node, "inputs": {"width": width, "height": height, "batch_size": 1}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": ["models", 0], "positive": positive, "negative": ["negative", 0], "latent_image": ["latent", 0],
            "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
        }},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["models", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": f"{prefix}_{variant}"}},
    }
    if guided:
        graph["guidance"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["text", 0], "guidance": 3.5}}
    return graph


def node_inputs(client, node: str, **given) -> dict:
    """Every widget of `node` at its default (from the server's /object_info), then `given`."""
    info = client.object_info(node)[node]["input"]
    defaults = {name: spec[1]["default"] for section in ("required", "optional")
                for name, spec in info.get(section, {}).items()
                if len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]}
    return {**defaults, **given}
