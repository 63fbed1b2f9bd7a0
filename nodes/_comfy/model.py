"""A Flux MODEL from ComfyUI's loaders, prepared for training without ever changing it.

`TrainingModelHandle` is what LoadFluxForTraining outputs and TrainLoRA consumes. It holds the shared
ModelPatcher and the chosen settings; each run asks it for a fresh adapter (`new_adapter(config)`), because
peft attaches a LoRA to an adapter tree once. The adapter's leaves are the run's own modules holding
the transformer's tensors (core/model/ownership.py): no copy when unquantized, and ComfyUI's module tree,
patches and weights stay as they were, so a stock KSampler on the same MODEL samples bit-identically
after training, and ComfyUI patching a LoRA into the MODEL for a sampling prompt never reaches a
run. The one visible trace is `requires_grad=False` on the owner's parameters, which ComfyUI never
trains.

Model management: the patcher is loaded through `comfy.model_management.load_models_gpu` with
`force_full_load=True` (training touches every weight each step, so a partial "lowvram" load would
stream the whole model per step), at node execution and again right before each run, so ComfyUI
counts the memory as used and a model it unloaded in between is loaded back. Neither host has a
public way to pin a model: while a run trains, another prompt that needs the memory may unload it;
the run keeps its own references, so it goes on, but ComfyUI no longer counts that memory. A
dynamic-VRAM MODEL (0.33.0 on NVIDIA) is never force-loaded; runs copy its weights instead.
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
from torch import nn

from ...core.config import TrainConfig
from ...core.model.adapter import FluxTrainingAdapter, UnsupportedModelError, detect_flux_family
from .host import is_dynamic, kept_loaded, offload
from .memory import estimate_memory

QUANTIZATION = {"auto": "auto", "none": "none", "int8": "qint8", "fp8": "qfloat8", "int4": "qint4"}
"""LoadFluxForTraining's quantization choice -> TrainConfig `model.quantize` ('auto' is settled per run by
TrainLoRA: nodes/_comfy/memory.fit_run)."""
TRAINING_DTYPES = {"bf16": "bf16", "fp32": "no"}
"""LoadFluxForTraining's training_dtype choice -> TrainConfig `train.mixed_precision`."""


def model_sections(quantization: str, training_dtype: str, gradient_checkpointing: bool,
                   checkpoint_every_n_blocks: int) -> TrainConfig:
    """LoadFluxForTraining's widgets as the TrainConfig sections they decide (model.quantize,
    train.mixed_precision / gradient_checkpointing / checkpoint_every_n_blocks), checked by the
    config itself; the other sections stay at their defaults and are not used."""
    for widget, value, choices in (("quantization", quantization, QUANTIZATION),
                                   ("training_dtype", training_dtype, TRAINING_DTYPES)):
        if value not in choices:
            raise ValueError(f"LoadFluxForTraining {widget}={value!r} is not supported; use one of {', '.join(choices)}.")
    return TrainConfig().with_overrides({
        "model": {"quantize": QUANTIZATION[quantization]},
        "train": {"mixed_precision": TRAINING_DTYPES[training_dtype], "gradient_checkpointing": gradient_checkpointing,
                  "checkpoint_every_n_blocks": checkpoint_every_n_blocks or None},  # 0: auto
    })


def model_overrides(config: TrainConfig) -> dict:
    """The sections LoadFluxForTraining decides, taken from `config` (for `TrainConfig.with_overrides`)."""
    t = config.train
    return {"model": {"quantize": config.model.quantize},
            "train": {"mixed_precision": t.mixed_precision, "gradient_checkpointing": t.gradient_checkpointing,
                      "checkpoint_every_n_blocks": t.checkpoint_every_n_blocks}}


def weights_fingerprint(module: nn.Module, samples_per_tensor: int = 8) -> str:
    """A cheap, stable id of a module's weights: sha256 over every state-dict entry's name, shape and
    dtype plus `samples_per_tensor` values at fixed, evenly spaced positions (read in float64).

    Cheap: a few values per tensor, gathered on the weights' device and copied once, so a 12B model
    costs milliseconds, not a full read. Stable: the same weights give the same string in any process.
    It tells different checkpoints or seeds apart; it would miss an edit that touches no sampled value.
    """
    digest = hashlib.sha256()
    picked = []
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        flat = tensor.detach().reshape(-1)
        if flat.numel():
            count = min(samples_per_tensor, flat.numel())
            index = torch.linspace(0, flat.numel() - 1, count).round().long().to(flat.device)
            picked.append(flat[index].to(torch.float64).cpu())
    if picked:
        digest.update(torch.cat(picked).numpy().tobytes())
    return digest.hexdigest()[:32]


def flux_transformer(patcher) -> nn.Module:
    """`patcher.model.diffusion_model`, or a clear error for anything that is not a diffusion MODEL."""
    transformer = getattr(getattr(patcher, "model", None), "diffusion_model", None)
    if not isinstance(transformer, nn.Module):
        raise UnsupportedModelError(
            f"LoadFluxForTraining got a {type(patcher).__name__} without a diffusion model; connect the MODEL output "
            "of a Flux checkpoint / diffusion-model loader."
        )
    return transformer


def ensure_loaded(patcher) -> None:
    """Load the whole model on its load device through ComfyUI's model management (no-op on CPU).
    A dynamic-VRAM patcher never holds its weights resident (a full load asserts there): runs copy
    them to the training device instead (`new_adapter`)."""
    import comfy.model_management

    if not is_dynamic(patcher):
        comfy.model_management.load_models_gpu([patcher], force_full_load=True)


def _check_dtype(patcher, settings: TrainConfig) -> None:
    if settings.train.mixed_precision == "bf16":
        return
    dtype = patcher.model_dtype() if hasattr(patcher, "model_dtype") else None
    manual_cast = getattr(patcher.model, "manual_cast_dtype", None)
    if dtype not in (None, torch.float32) and manual_cast is None:
        raise ValueError(
            f"training_dtype 'fp32' needs the model in fp32, but this MODEL computes in {dtype} and the shared "
            "weights are never cast; choose training_dtype 'bf16', or load the model with weight_dtype fp32."
        )


class TrainingModelHandle:
    """What TrainLoRA receives from LoadFluxForTraining (socket FLUXLAB_TRAINING_MODEL).

    For each run TrainLoRA should:
      - merge `model_overrides(handle.settings)` into its TrainConfig (quantize, mixed precision,
        checkpointing) and settle 'auto' (nodes/_comfy/memory.fit_run);
      - call `new_adapter(config)` and put the result in `TrainingJob.adapter` (fresh each run: a LoRA
        can be attached to an adapter tree only once);
      - pass `base_fingerprint` as `TrainingJob.base_fingerprint` (saved in every checkpoint; a resume
        can refuse a different base);
      - check `family` ("flux1" / "flux2") against the dataset's (`DatasetHandle.require_family`).
    `patcher` is ComfyUI's shared MODEL: never patch it, clone it for sampling previews instead.
    """

    def __init__(self, patcher, settings: TrainConfig):
        transformer = flux_transformer(patcher)
        self.family: str = detect_flux_family(transformer)
        """"flux1" or "flux2" (UnsupportedModelError, naming what was found, for anything else)."""
        _check_dtype(patcher, settings)
        self.patcher = patcher
        self.settings: TrainConfig = settings
        """The sections LoadFluxForTraining decides (`model_sections`); the rest are defaults, unused."""
        # Either way the weights read below are the base's: loading this patcher, or offloading, takes
        # off a clone that ComfyUI patched a LoRA into for sampling ('auto' loads nothing until a run
        # has picked, and quantized runs train on copies).
        if settings.model.quantize == "none":
            ensure_loaded(patcher)
        else:
            offload(patcher)
        self.device: torch.device = torch.device(patcher.load_device)
        """Where training runs: ComfyUI's load device for this MODEL."""
        self.base_fingerprint: str = f"{self.family}:{weights_fingerprint(transformer)}"
        """Stable id of the base weights (family + `weights_fingerprint` of the transformer)."""
        self.memory_estimate: str = estimate_memory(self)
        """Human-readable memory estimate for the chosen settings (shown on the node)."""

    @property
    def transformer(self) -> nn.Module:
        return flux_transformer(self.patcher)

    def trains_in_place(self, config: TrainConfig) -> bool:
        """A run of `config` trains on ComfyUI's loaded weights themselves ('none' on a resident MODEL)."""
        return config.model.quantize == "none" and not is_dynamic(self.patcher)

    def run_lifetime(self, config: TrainConfig):
        """Hold for as long as a run lives: a run on the loaded weights ('none') keeps ComfyUI from
        unloading them under it (`host.kept_loaded`); quantized and dynamic-VRAM runs train on their
        own copies and pin nothing."""
        if self.trains_in_place(config):
            return kept_loaded(self.patcher)
        return contextlib.nullcontext()

    def new_adapter(self, config: TrainConfig) -> FluxTrainingAdapter:
        """A fresh core adapter over the shared weights for a run of `config` ('auto' settled); call once per run.

        Unquantized: loads the MODEL again first (ComfyUI may have unloaded it since the node ran).
        Quantized: takes ComfyUI's float copy off the device instead, then core builds the quantized
        block layers on `device`, one at a time from the offloaded weights (only read).
        The run's leaves hold the same tensors (core/model/ownership.py), so ComfyUI's LoRA patching and
        offloading of the shared MODEL never reach the run; on a dynamic-VRAM MODEL (weights streamed
        from system RAM per op) they are copies on `device`.
        """
        if config.model.quantize == "none":
            ensure_loaded(self.patcher)
        else:
            offload(self.patcher)  # quantized copies replace ComfyUI's float blocks on the device
        return FluxTrainingAdapter.for_run(self.transformer, config, device=self.device,
                                           copy_weights=is_dynamic(self.patcher))
