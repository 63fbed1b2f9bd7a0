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


def training_graph(client, run_name: str, *, mode: str = "wait", steps: int = 8, previews: bool = False,
                   dataset: str = "fluxlab_train_e2e", variant: str = "flux1-dev", **settings) -> dict:
    """FluxLabTinyModels -> LoadFluxForTraining -> DatasetFromFolder -> TrainLoRA, the custom preset at rank 4 (alpha
    4) for a few steps: the prompt every training test queues. `settings` are widgets of TrainLoRA or of its advanced
    node; a TrainLoRAAdvanced node ("adv") is added when one of its widgets is given."""
    advanced_names = set(client.object_info("TrainLoRAAdvanced")["TrainLoRAAdvanced"]["input"]["required"])
    advanced = {k: settings.pop(k) for k in list(settings) if k in advanced_names}
    settings.setdefault("lora_alpha", float(settings.get("lora_rank", 4)))  # alpha = rank, as the browser keeps it
    chosen = dict(model=["load", 0], dataset=["data", 0], preset="custom", run_name=run_name, mode=mode,
                  train_steps=steps, lora_rank=4, run_save_every=4, run_sample_every=0, preview_width=64,
                  preview_height=64, preview_steps=2)
    train = node_inputs(client, "TrainLoRA", **{**chosen, **settings})
    train["preview_prompts"] = "a photo of ohwx\na red fox" if previews else ""
    graph = {
        "models": {"class_type": "FluxLabTinyModels", "inputs": {"variant": variant, "seed": 0}},
        "load": {"class_type": "LoadFluxForTraining", "inputs": node_inputs(
            client, "LoadFluxForTraining", model=["models", 0], training_dtype="fp32", gradient_checkpointing=False)},
        "data": {"class_type": "DatasetFromFolder", "inputs": node_inputs(
            client, "DatasetFromFolder", folder=dataset, vae=["models", 2], clip=["models", 1], resolutions="64",
            trigger="ohwx")},
        "train": {"class_type": "TrainLoRA", "inputs": train},
    }
    if advanced:
        graph["adv"] = {"class_type": "TrainLoRAAdvanced", "inputs": node_inputs(client, "TrainLoRAAdvanced", **advanced)}
        train["advanced"] = ["adv", 0]
    return graph
