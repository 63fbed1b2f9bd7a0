"""A LoRA file's effect as ComfyUI itself applies it: its stock loader (`load_lora_for_models`), the
keys it could not place, and the patched transformer's output. Shared by every round-trip test."""

import logging

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
