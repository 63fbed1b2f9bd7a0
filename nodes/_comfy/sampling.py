"""Sample a Flux MODEL with a LoRA file exactly as the stock graph does, step for step.

What SampleCheckpoint / CompareCheckpoints show must be what users get (DESIGN.md), so every step
here is the stock node's own code path, called with the same arguments in the same order:
  LoraLoaderModelOnly  comfy.utils.load_torch_file(safe_load=True) + comfy.sd.load_lora_for_models
                       (strength 0: the model unchanged, as the stock node returns it)
  CLIPTextEncode       clip.tokenize + clip.encode_from_tokens_scheduled
  FluxGuidance         node_helpers.conditioning_set_values(..., {"guidance": g})
  ConditioningZeroOut  the negative when none is given (cfg 1, Flux's default, never evaluates it)
  EmptySD3LatentImage / EmptyFlux2LatentImage  zeros of the model's latent channels at /8 or /16
  KSampler             nodes.common_ksampler: fix_empty_latent_channels, prepare_noise(seed),
                       latent_preview callback, comfy.sample.sample
  VAEDecode            vae.decode (+ the 5-D batch reshape)
so the pixels equal the stock graph's for the same file and seed (tests/e2e/test_sample_compare.py).
common_ksampler is re-stated rather than imported: ComfyUI's top-level module `nodes` is shadowed
by this pack's own `nodes` package wherever the pack's root is on sys.path (tests, scripts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.utils
import folder_paths
import latent_preview
import node_helpers
import torch
from comfy_api.latest import io, ui

from ...core.model.flux_family import family as flux_family
from ...core.run.rundir import RunDir
from ...core.run.runner import check_run_id
from .encoders import latent_format_classes
from .lora_files import checked_lora
from .runs import run_folder_names, runs_root


def sampler_names() -> list[str]:
    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    return list(comfy.samplers.KSampler.SCHEDULERS)


@dataclass(frozen=True)
class SampleSettings:
    """KSampler's widgets plus the empty latent's size (denoise is always 1: text to image)."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    width: int
    height: int

    def __post_init__(self):
        if self.sampler_name not in comfy.samplers.KSampler.SAMPLERS:
            raise ValueError(f"sampler_name {self.sampler_name!r} is not one of ComfyUI's samplers")
        if self.scheduler not in comfy.samplers.KSampler.SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r} is not one of ComfyUI's schedulers")


# --- where runs and LoRA files are --------------------------------------------------------------

def run_folder_of(run) -> tuple[str, Path]:
    """(run id, run folder) of a FLUXLAB_RUN value (core.run.runner.RunHandle or anything with
    `run_id` and `run_dir`, the latter a core.run.rundir.RunDir or a path)."""
    run_dir = getattr(run, "run_dir", None)
    if run_dir is None or not hasattr(run, "run_id"):
        raise TypeError(f"the run input is a {type(run).__name__}, not a Flux LoRA Lab run (connect TrainLoRA's run output)")
    return str(run.run_id), run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)  # (Path.root is "/")


def run_folder_named(name: str) -> tuple[str, Path]:
    """(run id, run folder) of a run name typed in a widget: <output>/fluxlab/<name>/."""
    name = check_run_id(name.strip())  # the naming rule TrainLoRA enforces: no paths, no ".."
    folder = runs_root() / name
    if not folder.is_dir():
        existing = run_folder_names()
        raise FileNotFoundError(f"run_name {name!r}: no run folder {folder}; runs there: {existing or 'none'}")
    return name, folder


def lora_file(name_or_path: str) -> Path:
    """A LoRA given as the name the stock LoRA loaders list (loras folder), or as an absolute path
    inside ComfyUI's output or loras folders (e.g. a run's checkpoint_000125/lora.safetensors).
    Other places are refused: a graph must not read arbitrary files of the server."""
    text = name_or_path.strip()
    path = Path(text).expanduser()
    if path.is_absolute():
        # normpath drops ".." without following links: links placed in those folders are the admin's choice.
        path = Path(os.path.normpath(path))
        allowed = [Path(os.path.normpath(p)) for p in (folder_paths.get_output_directory(), *folder_paths.get_folder_paths("loras"))]
        if not any(path.is_relative_to(root) for root in allowed):
            raise ValueError(f"lora {text!r}: absolute paths must lie in ComfyUI's output or loras folders ({', '.join(map(str, allowed))})")
        if not path.is_file():
            raise FileNotFoundError(f"lora {text!r}: no such file")
        return path
    found = folder_paths.get_full_path("loras", text)
    if found is None:
        raise FileNotFoundError(f"lora {text!r}: not an absolute path to a file and not a name in the loras folder "
                                f"({', '.join(folder_paths.get_folder_paths('loras'))})")
    return Path(found)


# --- the stock nodes' steps ---------------------------------------------------------------------

def apply_lora(model, path: Path | None, strength: float):
    """LoraLoaderModelOnly(model, path, strength): a patched clone; `model` itself for no LoRA or 0.
    The file is checked against the model first (lora_files.checked_lora)."""
    if path is None or strength == 0:
        return model
    lora = checked_lora(model, Path(path))
    model_lora, _ = comfy.sd.load_lora_for_models(model, None, lora, strength, 0)
    return model_lora


def encode_prompt(clip, text: str):
    """CLIPTextEncode."""
    if clip is None:
        raise RuntimeError("the clip input is None: connect the text encoder of the Flux model")
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def with_guidance(conditioning, guidance: float):
    """FluxGuidance: the distilled guidance value Flux.1 dev / Flux.2 dev read (others ignore it)."""
    return node_helpers.conditioning_set_values(conditioning, {"guidance": guidance})


def zeroed(conditioning):
    """ConditioningZeroOut: an empty negative of the right shapes."""
    out = []
    for tensor, options in conditioning:
        options = options.copy()
        for key in ("pooled_output", "conditioning_lyrics"):
            if options.get(key) is not None:
                options[key] = torch.zeros_like(options[key])
        out.append([torch.zeros_like(tensor), options])
    return out


def empty_latent(model, width: int, height: int) -> dict:
    """EmptySD3LatentImage (Flux.1: 16 channels at /8) or EmptyFlux2LatentImage (Flux.2: 128 at /16)."""
    latent_format = model.get_model_object("latent_format")
    name = next((n for n, cls in latent_format_classes().items() if isinstance(latent_format, cls)), None)
    if name is None:
        raise ValueError(f"this node samples Flux.1 / Flux.2 models; the MODEL's latent format is {type(latent_format).__name__}")
    family, down = flux_family(name), flux_family(name).vae_downscale
    samples = torch.zeros([1, family.latent_channels, height // down, width // down],
                          device=comfy.model_management.intermediate_device())
    return {"samples": samples}


def ksample(model, settings: SampleSettings, positive, negative, latent: dict) -> dict:
    """nodes.common_ksampler with denoise 1 (see the module docstring for why it is re-stated)."""
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, settings.seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, settings.steps)
    samples = comfy.sample.sample(
        model, noise, settings.steps, settings.cfg, settings.sampler_name, settings.scheduler, positive, negative,
        latent_image, denoise=1.0, disable_noise=False, start_step=None, last_step=None, force_full_denoise=False,
        noise_mask=latent.get("noise_mask"), callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=settings.seed,
    )
    return dict(latent, samples=samples)


def decode(vae, latent: dict) -> torch.Tensor:
    """VAEDecode."""
    images = vae.decode(latent["samples"])
    if images.ndim == 5:
        images = images.reshape(-1, images.shape[-3], images.shape[-2], images.shape[-1])
    return images


def render(model, vae, positive, negative, settings: SampleSettings) -> torch.Tensor:
    """EmptyLatent -> KSampler -> VAEDecode on an already LoRA-patched model; IMAGE (1, H, W, 3)."""
    latent = ksample(model, settings, positive, negative if negative is not None else zeroed(positive),
                     empty_latent(model, settings.width, settings.height))
    return decode(vae, latent)


# --- showing results ----------------------------------------------------------------------------

def save_temp_images(images: torch.Tensor, prefix: str, node_cls) -> list[dict]:
    """Save an IMAGE batch into ComfyUI's temp folder as PreviewImage does (same PNG conversion);
    returns [{"filename", "subfolder", "type": "temp"}] that /view serves."""
    saved = ui.ImageSaveHelper.save_images(images, filename_prefix=prefix, folder_type=io.FolderType.temp,
                                           cls=node_cls, compress_level=1)
    return [dict(result) for result in saved]
