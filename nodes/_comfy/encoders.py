"""ComfyUI's VAE and CLIP as core.data encoders, where the caches live, and the dataset handle.

Latents go into the model's latent space exactly as ComfyUI's samplers put them: `VAE.encode` then
the family's `latent_format.process_in` (what `BaseModel.process_latent_in` does to a KSampler's
input). Text goes through `clip.tokenize` + `clip.encode_from_tokens(return_pooled=True)`, as
CLIPTextEncode does. For Flux.2, ComfyUI left-pads the context with zeros to 512 tokens at sampling
time (`model_base.Flux2.extra_conds`); Flux.2's text tokens carry RoPE positions and zero tokens still
take part in attention, so the encoder pads the same way and training sees what inference sees (cost:
cache entries of 512 tokens).

Caches: `<ComfyUI output dir>/fluxlab/.dataset_cache/.latent_cache/` for every dataset. The output
directory survives restarts (the temp directory is wiped at start-up) and the dataset folders stay
untouched. One shared folder is safe: entries are keyed by file content, placement and encoder
fingerprint, so different folders never collide and a copied image is encoded once. The leading dot
keeps it out of run names (which start with a letter or digit) under `fluxlab/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import ImageFile

from ...core.data import DatasetError, DatasetReport, DatasetSpec, TrainingDataset, build_dataset
from ...core.model.flux_family import FAMILIES, family_of_latents
from ...core.model.flux_family import family as flux_family
from .model import weights_fingerprint

log = logging.getLogger(__name__)

REPORT_EVENT = "fluxlab.dataset_report"


def latent_format_classes() -> dict:
    """ComfyUI's latent format class of each family."""
    import comfy.latent_formats

    return {"flux1": comfy.latent_formats.Flux, "flux2": comfy.latent_formats.Flux2}


def latent_format_for(vae):
    """(family name, ComfyUI latent format) of the family whose VAE gives the VAE's latent channels."""
    channels = getattr(vae, "latent_channels", None)
    family = family_of_latents(channels)
    if family is None:
        known = " and ".join(f"{f.display_name}'s VAE gives {f.latent_channels}" for f in FAMILIES.values())
        raise DatasetError(
            f"The VAE gives {channels} latent channels; {known}. Connect the VAE "
            "of the Flux model you train (e.g. ae.safetensors / flux2-vae.safetensors)."
        )
    return family.name, latent_format_classes()[family.name]()


class ComfyLatentEncoder:
    """core.data LatentEncoder over a ComfyUI VAE: pixels (B, H, W, 3) in [0, 1] -> model-space latents."""

    def __init__(self, vae):
        self.vae = vae
        self.family, self.latent_format = latent_format_for(vae)
        self.fingerprint = (f"comfy-vae:{type(self.latent_format).__name__}:{getattr(vae, 'vae_dtype', '')}:"
                            f"{weights_fingerprint(vae.first_stage_model)}")
        self.calls = 0

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        latent = self.vae.encode(pixels)
        return self.latent_format.process_in(latent).float().cpu()


class ComfyTextEncoder:
    """core.data TextEncoder over a ComfyUI CLIP: caption -> (context (T, D), pooled (P,) or None)."""

    def __init__(self, clip, pad_to: int | None = None):
        self.clip = clip
        self.pad_to = pad_to
        clip.load_model()  # applies the CLIP's own patches (e.g. a LoRA) so the fingerprint sees them
        model = clip.cond_stage_model
        self.fingerprint = (f"comfy-clip:{type(clip.tokenizer).__name__}:{type(model).__name__}:"
                            f"layer{getattr(clip, 'layer_idx', None)}:pad{pad_to}:{weights_fingerprint(model)}")
        self.calls = 0

    def encode(self, caption: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.calls += 1
        context, pooled = self.clip.encode_from_tokens(self.clip.tokenize(caption), return_pooled=True)
        context = context[0] if context.ndim == 3 else context
        if self.pad_to is not None and context.shape[0] < self.pad_to:
            context = torch.nn.functional.pad(context, (0, 0, self.pad_to - context.shape[0], 0))
        return context.cpu(), None if pooled is None else pooled.reshape(-1).cpu()


def resolve_folder(text: str) -> Path:
    """An absolute folder, or one relative to ComfyUI's input directory; errors name both."""
    import folder_paths

    if not text or not text.strip():
        raise DatasetError("folder is empty; give an absolute path or a folder inside ComfyUI's input directory.")
    raw = Path(text.strip()).expanduser()
    input_dir = Path(folder_paths.get_input_directory())
    folder = raw if raw.is_absolute() else input_dir / raw
    if not folder.is_dir():
        where = "" if raw.is_absolute() else f" (relative paths are looked up in ComfyUI's input directory {input_dir})"
        raise DatasetError(f"Dataset folder {folder} does not exist or is not a folder{where}; check the path.")
    return folder


def folder_signature(text: str) -> str:
    """Names, sizes and modification times of every file under the folder (hidden entries skipped):
    ComfyUI re-runs the node when this changes, so edits to the folder are picked up; the encoding
    cache keeps the re-run cheap. A missing folder gives a constant (execution then names it)."""
    try:
        folder = resolve_folder(text)
    except DatasetError as exc:
        return f"unusable: {exc}"
    entries = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        stat = path.stat()
        entries.append(f"{relative}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def cache_root() -> Path:
    """`<ComfyUI output dir>/fluxlab/.dataset_cache` (see the module docstring for why)."""
    import folder_paths

    return Path(folder_paths.get_output_directory()) / "fluxlab" / ".dataset_cache"


@contextlib.contextmanager
def strict_image_decoding():
    """Truncated images must fail to decode while the dataset is built. ComfyUI's
    node_helpers.pillow flips PIL's global LOAD_TRUNCATED_IMAGES to True around a retry, and other
    packs may leave it on; then a truncated file would decode with grey fill instead of being refused."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


@dataclass(frozen=True)
class DatasetHandle:
    """What TrainLoRA receives from DatasetFromFolder (socket FLUXLAB_DATASET).

    TrainLoRA should put `dataset` in `TrainingJob.data` (`dataset.batch(step, batch_size, seed)` is a pure
    function of the step, so resume needs no loader state), `report.data` in `TrainingJob.dataset_report`,
    use `trigger` for `run.trigger` and `class_word` for `dop.class_word` (DOP captions are in the batches
    only when class_word is set), and call `require_family(model_handle.family)` first. `vae` and `clip`
    are the ComfyUI objects the data was encoded with, for preview prompts and decoding.
    """

    dataset: TrainingDataset
    report: DatasetReport
    spec: DatasetSpec
    trigger: str
    class_word: str
    family: str
    """"flux1" / "flux2": the family the latents (VAE) and contexts (padding) were made for."""
    vae: object
    clip: object
    latent_fingerprint: str
    text_fingerprint: str

    def require_family(self, family: str) -> None:
        if family != self.family:
            raise DatasetError(
                f"The dataset was encoded for {self.family} (its VAE) but the training model is {family}; "
                "connect the VAE and CLIP that belong to the model you train."
            )


def _progress():
    """core.data progress callback driving ComfyUI's node progress bar; its hook also lets Cancel stop
    a long encode between images (the cache only holds complete entries)."""
    import comfy.utils

    bar = None

    def report(done: int, total: int, path: str) -> None:
        nonlocal bar
        if bar is None:
            bar = comfy.utils.ProgressBar(max(total, 1))
        bar.update_absolute(done, max(total, 1))

    return report


def send_report_event(report: DatasetReport) -> None:
    """Broadcast the report to the panel as `fluxlab.dataset_report` ({"run_id": None, "report", "text"}).
    Only inside a running server: in-process use (tests, scripts) has no PromptServer to send with."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        log.debug("no PromptServer running; %s not sent", REPORT_EVENT)
        return
    instance.send_sync(REPORT_EVENT, {"run_id": None, "report": report.data, "text": report.text})


def build_dataset_handle(spec: DatasetSpec, vae, clip, previous: DatasetHandle | None = None) -> DatasetHandle:
    """Encode what the cache lacks and return the handle. With `previous` (a chained node's output),
    its folders come first and the same VAE and CLIP are required."""
    latents = ComfyLatentEncoder(vae)
    texts = ComfyTextEncoder(clip, flux_family(latents.family).context_tokens)
    if previous is not None:
        if (previous.latent_fingerprint, previous.text_fingerprint) != (latents.fingerprint, texts.fingerprint):
            raise DatasetError(
                "The chained dataset was encoded with another VAE or CLIP; connect the same VAE and CLIP to every "
                "DatasetFromFolder of one training set."
            )
        spec = spec.chained_after(previous.spec)
    with strict_image_decoding():
        dataset = build_dataset(spec, latents, texts, progress=_progress())
    log.info("dataset built: %d latents and %d captions encoded", latents.calls, texts.calls)
    send_report_event(dataset.report)
    return DatasetHandle(dataset, dataset.report, spec, spec.trigger, spec.class_word, latents.family, vae, clip,
                         latents.fingerprint, texts.fingerprint)
