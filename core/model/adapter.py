"""The model adapter: the one object through which the trainer sees the model it trains.

The trainer never touches ComfyUI's classes or family details; it calls `predict` and injects LoRA
into `module` (core/model/lora.py picks the targets). Family differences (Flux.1 vs Flux.2, guidance
embedding or not) live in `flux.FluxArch`, read from the owner module once.
"""

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from . import quant
from .block_swap import BlockSwap
from .flux import FluxArch, TrainFlux, UnsupportedModelError
from .ownership import own_leaves

__all__ = ["TrainingAdapter", "FluxTrainingAdapter", "detect_flux_family", "UnsupportedModelError", "COMPUTE_DTYPES"]

COMPUTE_DTYPES = {"bf16": torch.bfloat16, "no": torch.float32}
"""`train.mixed_precision` -> the dtype quantized layers compute in (autocast's dtype for 'bf16')."""


@runtime_checkable
class TrainingAdapter(Protocol):
    """What the training loop needs from a model."""

    family: str
    latent_channels: int
    patch_size: int
    uses_guidance: bool
    pooled_dim: int | None
    module: nn.Module

    def predict(self, latents: Tensor, sigmas: Tensor, context: Tensor, pooled: Tensor | None = None, guidance: Tensor | None = None) -> Tensor: ...

    def swap_blocks(self, count: int, device) -> None: ...


def detect_flux_family(module: nn.Module) -> str:
    """"flux1" or "flux2" for a ComfyUI Flux transformer; UnsupportedModelError (a ValueError) otherwise."""
    return FluxArch.of(module).family


class FluxTrainingAdapter:
    """Flux.1 / Flux.2 behind `TrainingAdapter`, over a `TrainFlux` that adopts the owner's weights."""

    def __init__(self, module: TrainFlux):
        self.module = module
        self.arch = module.arch

    @classmethod
    def adopt(cls, owner: nn.Module, *, checkpointing: bool, checkpoint_every: int = 1) -> "FluxTrainingAdapter":
        """Wrap ComfyUI's Flux transformer (`ModelPatcher.model.diffusion_model`) for training.

        The base weights are shared, not copied, and frozen (`requires_grad=False`): ComfyUI only
        runs them without gradients, and a trainable base would cost optimizer memory by mistake.
        `checkpoint_every` (>= 1) is used only when `checkpointing` is on.
        """
        if checkpointing and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be an int >= 1 when checkpointing is on, got {checkpoint_every!r}")
        module = TrainFlux(owner, checkpoint_every=checkpoint_every if checkpointing else 0)
        module.requires_grad_(False)
        return cls(module)

    @classmethod
    def for_run(cls, owner: nn.Module, config: TrainConfig, *, device, copy_weights: bool) -> "FluxTrainingAdapter":
        """The adapter one run trains on, held as `config` says: gradient checkpointing
        (`train.gradient_checkpointing`, `train.checkpoint_every_n_blocks`), the frozen base quantized
        per `model.quantize` on `device`, computing in `train.mixed_precision`'s dtype; then every leaf
        becomes the run's own (core/model/ownership.py: the owner's tensors, or copies on `device` when
        `copy_weights`, for weights not resident there). `model.quantize` 'auto' must be settled first
        (the memory planner decides it against the device's free memory).
        """
        t, mode = config.train, config.model.quantize
        if mode == "auto":
            raise ValueError("model.quantize 'auto' must be settled before the run builds its model "
                             "(core/train/memory_plan.choose picks the mode)")
        if t.gradient_checkpointing and t.checkpoint_every_n_blocks is None:
            raise ValueError("an auto train.checkpoint_every_n_blocks must be settled before the run builds its "
                             "model (core/train/memory_plan.choose picks the interval)")
        adapter = cls.adopt(owner, checkpointing=t.gradient_checkpointing, checkpoint_every=t.checkpoint_every_n_blocks)
        quant.quantize_base(adapter.module, mode, device=device, compute_dtype=COMPUTE_DTYPES[t.mixed_precision])
        own_leaves(adapter.module, owner, device, copy=copy_weights)
        return adapter

    @property
    def family(self) -> str:
        return self.arch.family

    @property
    def latent_channels(self) -> int:
        return self.arch.latent_channels

    @property
    def patch_size(self) -> int:
        """Latent pixels per token side (Flux.1: 2, Flux.2: 1); image tokens = ceil(H/p) * ceil(W/p)."""
        return self.arch.patch_size

    @property
    def uses_guidance(self) -> bool:
        """True for guidance-distilled models (Flux.1 dev/Krea, Flux.2 dev): pass `guidance`."""
        return self.arch.has_guidance

    @property
    def pooled_dim(self) -> int | None:
        """Width of the pooled text vector the model takes (CLIP-L), or None (Flux.2)."""
        return self.arch.pooled_dim

    def swap_blocks(self, count: int, device) -> None:
        """Keep the base weights of the last `count` single blocks in system memory (core/model/block_swap.py).
        Call after the LoRA is attached and made trainable: what requires grad stays on the device."""
        self.module.swap = BlockSwap(list(self.module.single_blocks), count, device) if count else None

    def predict(self, latents: Tensor, sigmas: Tensor, context: Tensor, pooled: Tensor | None = None, guidance: Tensor | float | None = None) -> Tensor:
        """The model output (flow velocity, noise - x0) for noisy `latents` (B, C, H, W) at `sigmas` (B,) in [0, 1].

        ComfyUI's Flux takes the sigma itself as timestep (ModelSamplingFlux). `context` (B, T, D)
        and `pooled` (B, P) are cast to the latents' dtype. `guidance` is a (B,) tensor or one float
        for the batch; models without guidance embedding ignore it, as in ComfyUI.
        """
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"{self.family} expects latents (B, {self.latent_channels}, H, W), got {tuple(latents.shape)}")
        dtype = latents.dtype
        pooled = None if pooled is None or self.arch.pooled_dim is None else pooled.to(dtype)
        if guidance is not None and self.uses_guidance:
            guidance = torch.as_tensor(guidance, dtype=sigmas.dtype, device=sigmas.device).reshape(-1).expand(latents.shape[0])
        else:
            guidance = None
        return self.module(latents, sigmas, context.to(dtype), pooled, guidance)
