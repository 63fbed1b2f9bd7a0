"""The Flux model files the bundled workflows name: which folder under models/ each goes in and where
people usually get it (no comfy here).

Why in the pack: a first run without model files ends at ComfyUI's own queue-time check of the
loader ("'flux1-dev.safetensors' not in []"), before any node of ours runs. So the guidance has to
reach the user elsewhere: the workflows carry it (their notes, and `properties.models` on each
loader, which ComfyUI's frontend turns into its missing-models list with download links), and the
pack's pre-flight (preflight.py) names the file, the folder and the source in the log.
Sources are the Hugging Face repositories ComfyUI's own Flux examples point at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

_BFL = "https://huggingface.co/black-forest-labs"
_TEXT_ENCODERS = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main"
_FLUX2_DEV = "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files"
_KLEIN_4B = "https://huggingface.co/Comfy-Org/flux2-klein-4B/resolve/main/split_files"

FP8_HINT = ("fp8: keep these files and set Load Diffusion Model's weight_dtype to fp8_e4m3fn (about half the "
            "memory), or pick an fp8 file of the same model (Flux.1: t5xxl_fp8_e4m3fn.safetensors for T5; Flux.2: "
            "the *_fp8mixed files); the pack trains on fp8 weights as they are loaded.")
GGUF_HINT = ("GGUF: install city96/ComfyUI-GGUF, put the .gguf file (e.g. flux1-dev-Q8_0.gguf from city96/FLUX.1-dev-gguf) "
             "in models/unet/ and replace Load Diffusion Model with its 'Unet Loader (GGUF)'; the pack reads such "
             "weights through their own dequantize (not covered by the pack's tests).")


@dataclass(frozen=True)
class ModelFile:
    """One file a workflow loads: `folder` under models/, what it is, and a direct download URL."""

    name: str
    folder: str
    what: str
    url: str

    @property
    def source(self) -> str:
        """'black-forest-labs/FLUX.1-dev on Hugging Face' (the repository part of the URL)."""
        owner, repo = self.url.split("huggingface.co/", 1)[1].split("/")[:2]
        return f"{owner}/{repo} on Hugging Face"

    def frontend_entry(self) -> dict:
        """The `properties.models` entry ComfyUI's frontend reads for its missing-models list."""
        return {"name": self.name, "url": self.url, "directory": self.folder}

    def guidance(self) -> str:
        return (f"{self.name} ({self.what}) goes in models/{self.folder}/; get it from {self.source}: {self.url}")


KNOWN_FILES = {f.name: f for f in (
    ModelFile("flux1-dev.safetensors", "diffusion_models", "Flux.1 [dev], 23.8 GB; accept its licence on the page first",
              f"{_BFL}/FLUX.1-dev/resolve/main/flux1-dev.safetensors"),
    ModelFile("flux1-schnell.safetensors", "diffusion_models", "Flux.1 [schnell], 23.8 GB",
              f"{_BFL}/FLUX.1-schnell/resolve/main/flux1-schnell.safetensors"),
    ModelFile("flux1-krea-dev.safetensors", "diffusion_models", "Flux.1 Krea [dev], 23.8 GB; accept its licence first",
              f"{_BFL}/FLUX.1-Krea-dev/resolve/main/flux1-krea-dev.safetensors"),
    ModelFile("clip_l.safetensors", "text_encoders", "Flux.1's CLIP-L text encoder, 246 MB",
              f"{_TEXT_ENCODERS}/clip_l.safetensors"),
    ModelFile("t5xxl_fp16.safetensors", "text_encoders", "Flux.1's T5-XXL text encoder, 9.8 GB",
              f"{_TEXT_ENCODERS}/t5xxl_fp16.safetensors"),
    ModelFile("t5xxl_fp8_e4m3fn.safetensors", "text_encoders", "T5-XXL in fp8, 4.9 GB",
              f"{_TEXT_ENCODERS}/t5xxl_fp8_e4m3fn.safetensors"),
    ModelFile("ae.safetensors", "vae", "the Flux.1 VAE, 335 MB", f"{_BFL}/FLUX.1-schnell/resolve/main/ae.safetensors"),
    ModelFile("flux-2-klein-4b.safetensors", "diffusion_models", "Flux.2 [klein] 4B",
              f"{_KLEIN_4B}/diffusion_models/flux-2-klein-4b.safetensors"),
    ModelFile("qwen_3_4b.safetensors", "text_encoders", "Qwen3-4B, Flux.2 klein 4B's text encoder (CLIP type flux2)",
              f"{_KLEIN_4B}/text_encoders/qwen_3_4b.safetensors"),
    ModelFile("flux2-vae.safetensors", "vae", "the Flux.2 VAE", f"{_FLUX2_DEV}/vae/flux2-vae.safetensors"),
    ModelFile("flux2_dev_fp8mixed.safetensors", "diffusion_models", "Flux.2 [dev] in mixed fp8",
              f"{_FLUX2_DEV}/diffusion_models/flux2_dev_fp8mixed.safetensors"),
    ModelFile("mistral_3_small_flux2_fp8.safetensors", "text_encoders", "Flux.2 dev's Mistral text encoder in fp8",
              f"{_FLUX2_DEV}/text_encoders/mistral_3_small_flux2_fp8.safetensors"),
)}

# The stock loaders' file widgets and the models/ folder each lists.
LOADER_WIDGETS = {
    "UNETLoader": (("unet_name", "diffusion_models"),),
    "DualCLIPLoader": (("clip_name1", "text_encoders"), ("clip_name2", "text_encoders")),
    "CLIPLoader": (("clip_name", "text_encoders"),),
    "VAELoader": (("vae_name", "vae"),),
    "CheckpointLoaderSimple": (("ckpt_name", "checkpoints"),),
}


def missing_file_message(name: str, folder: str, loader: str) -> str:
    """What to do about a file a loader names that is not in models/<folder>/."""
    known: Optional[ModelFile] = KNOWN_FILES.get(name)
    where = f"{loader} asks for {name!r}, which is not in models/{folder}/"
    if known is None:
        return f"Flux LoRA Lab: {where}; put the file there (or pick one the loader lists)."
    hint = FP8_HINT if folder in ("diffusion_models", "text_encoders") else ""
    return f"Flux LoRA Lab: {where}. {known.guidance()}. {hint}".rstrip()
