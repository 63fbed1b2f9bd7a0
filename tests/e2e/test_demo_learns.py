"""The demo shows learning: run the shipped demo workflow in the real server (its pictures come from
the pack's own Demo Images node), then sample every caption with stock ComfyUI nodes (KSampler, with
and without LoraLoaderModelOnly) and measure how far the samples land from their caption's training
latent (the picture through VAEEncode)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes._demo_images import DEMO_FOLDER, DEMO_IMAGES
from scripts.comfy_server import REPO_ROOT
from scripts.workflow_descriptions import DEMO_WORKFLOW
from scripts.workflow_prompt import ui_to_prompt

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEMO = REPO_ROOT / "workflows" / f"{DEMO_WORKFLOW}.json"
RUN = "demo_learns"  # not "demo": another test may train that one in the same server
SEEDS = 4  # samples per caption (one batch)


def _demo_prompt(client) -> dict:
    prompt = ui_to_prompt(json.loads(DEMO.read_text()), client.object_info())
    trainer = next(node for node in prompt.values() if node["class_type"] == "TrainLoRA")
    trainer["inputs"]["run_name"] = RUN
    return prompt


def _latents(server, result, node: str) -> torch.Tensor:
    files = result.outputs(node)["latents"]
    return torch.cat([load_file(Path(server.base_dir) / "output" / f["subfolder"] / f["filename"])["latent_tensor"]
                      for f in files])


def _sample_graph(caption: str, lora: str | None) -> dict:
    """Stock nodes only: the demo's tiny models, the caption, KSampler on a batch of SEEDS latents."""
    model = ["lora", 0] if lora else ["models", 0]
    graph = {
        "models": {"class_type": "FluxLabTinyModels", "inputs": {"variant": "flux1-dev", "seed": 0, "vae": "colour"}},
        "text": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["models", 1], "text": caption}},
        "guidance": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["text", 0], "guidance": 1.0}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["models", 1], "text": ""}},
        "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": SEEDS}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": model, "positive": ["guidance", 0], "negative": ["negative", 0], "latent_image": ["latent", 0],
            "seed": 11, "steps": 8, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sampler", 0], "filename_prefix": "latents/demo_learns"}},
    }
    if lora:
        graph["lora"] = {"class_type": "LoraLoaderModelOnly",
                         "inputs": {"model": ["models", 0], "lora_name": lora, "strength_model": 1.0}}
    return graph


def _training_latents(server, client) -> torch.Tensor:
    """Each demo picture through LoadImage -> VAEEncode (the latents the run trained on)."""
    graph = {"models": {"class_type": "FluxLabTinyModels", "inputs": {"variant": "flux1-dev", "seed": 0, "vae": "colour"}}}
    for stem in DEMO_IMAGES:
        name = f"demo_learns_{stem}.png"  # LoadImage lists the input folder's top level only
        shutil.copy(Path(server.base_dir) / "input" / DEMO_FOLDER / f"{stem}.png", Path(server.base_dir) / "input" / name)
        graph[f"load_{stem}"] = {"class_type": "LoadImage", "inputs": {"image": name}}
        graph[f"encode_{stem}"] = {"class_type": "VAEEncode", "inputs": {"pixels": [f"load_{stem}", 0], "vae": ["models", 2]}}
        graph[f"save_{stem}"] = {"class_type": "SaveLatent",
                                 "inputs": {"samples": [f"encode_{stem}", 0], "filename_prefix": f"latents/train_{stem}"}}
    result = client.run(graph, timeout=120)
    return torch.cat([_latents(server, result, f"save_{stem}") for stem in DEMO_IMAGES])


def test_demo_lora_samples_land_near_their_training_pictures(comfy_server, comfy_client):
    demo = comfy_client.run(_demo_prompt(comfy_client), timeout=900)
    assert (Path(comfy_server.base_dir) / "models" / "loras" / "fluxlab" / f"{RUN}.safetensors").is_file()
    assert any(image["filename"].startswith("compare") for image in demo.images()), demo.images()
    targets = _training_latents(comfy_server, comfy_client).flatten(1)  # (captions, features)

    distance, nearest = {}, {}
    for lora in (None, f"fluxlab/{RUN}.safetensors"):
        d_own, right = [], 0
        for index, (caption, _) in enumerate(DEMO_IMAGES.values()):
            samples = _latents(comfy_server, comfy_client.run(_sample_graph(caption, lora), timeout=120), "save")
            d = torch.cdist(samples.flatten(1), targets)  # (SEEDS, captions)
            d_own.append(d[:, index])
            right += int((d.argmin(dim=1) == index).sum())
        distance[lora], nearest[lora] = torch.cat(d_own).mean().item(), right / (SEEDS * len(DEMO_IMAGES))
    base, lora = distance[None], distance[f"fluxlab/{RUN}.safetensors"]
    print(f"distance to the caption's training latent: base {base:.3f}, LoRA {lora:.3f} (ratio {lora / base:.2f}); "
          f"nearest is the caption's picture: base {nearest[None]:.0%}, LoRA {nearest[f'fluxlab/{RUN}.safetensors']:.0%}")
    # Measured on 0.33.0: ratio 0.63, nearest 92 % with the LoRA and 25 % (chance: 33 %) without.
    assert lora < 0.8 * base, (lora, base)
    assert nearest[f"fluxlab/{RUN}.safetensors"] >= 0.75 > nearest[None], nearest
