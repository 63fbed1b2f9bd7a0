"""A LoRA file's effect as ComfyUI itself applies it: its stock loader (`load_lora_for_models`), the
keys it could not place, and the patched transformer's output. Shared by every round-trip test."""

import functools
import importlib.util
import logging
from pathlib import Path

import torch

UNMATCHED_MARKS = ("lora key not loaded", "NOT LOADED")


def load_through_comfy(patcher, lora_sd: dict, caplog, strength: float = 1.0):
    """(patched MODEL, the loader's complaints about keys it did not place) for `lora_sd` on `patcher`."""
    import comfy.sd

    with caplog.at_level(logging.WARNING):
        patched, _ = comfy.sd.load_lora_for_models(patcher, None, lora_sd, strength, 0)
    unmatched = [r.getMessage() for r in caplog.records if any(m in r.getMessage() for m in UNMATCHED_MARKS)]
    return patched, unmatched


@torch.no_grad()
def patched_forward(patched, latents, sigmas, context, pooled, guidance) -> torch.Tensor:
    """The transformer's output with the LoRA patched into its weights (patched back out after)."""
    patched.patch_model()
    try:
        return patched.model.diffusion_model(latents, sigmas, context, y=pooled, guidance=guidance)
    finally:
        patched.unpatch_model()


@functools.cache
def stock_lora_loader():
    """ComfyUI's own nodes.LoraLoader. Loaded from the host's nodes.py by path: where the pack's root is on
    sys.path (a whole test session) the top-level name `nodes` is the pack's own package."""
    from tests.comfy_host import COMFY_DIR

    spec = importlib.util.spec_from_file_location("comfyui_stock_nodes", COMFY_DIR / "nodes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LoraLoader


def load_with_stock_lora_loader(lora_file: Path, models, loras_dir: Path, caplog):
    """(MODEL, CLIP, unplaced-key complaints) of the stock LoraLoader node at model and clip strength 1
    loading `lora_file` from a `loras_dir` registered with ComfyUI for the call, as a user's loras folder."""
    import folder_paths

    loras_dir.mkdir()
    (loras_dir / lora_file.name).write_bytes(lora_file.read_bytes())
    folder_paths.add_model_folder_path("loras", str(loras_dir))
    try:
        with caplog.at_level(logging.WARNING):
            model, clip = stock_lora_loader()().load_lora(models.model, models.clip, lora_file.name, 1.0, 1.0)
    finally:
        folder_paths.folder_names_and_paths["loras"][0].remove(str(loras_dir))
    unmatched = [r.getMessage() for r in caplog.records if any(m in r.getMessage() for m in UNMATCHED_MARKS)]
    return model, clip, unmatched
