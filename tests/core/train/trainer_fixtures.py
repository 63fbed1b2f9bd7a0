"""Shared pieces of the training-loop tests: tiny real Flux, a planted teacher, synthetic batches.

The teacher is the base model plus a planted low-rank change on layers the LoRA targets. A student
LoRA trained to match the teacher's predictions must recover that change: that is what "it learns"
means here, with no dataset or VAE in the way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from tests.comfy_host import import_comfy

TOKENS, CONTEXT_DIM, POOLED_DIM = 8, 64, 32


def tiny_owner(variant: str = "flux1-dev", seed: int = 0):
    """ComfyUI's own Flux class, tiny and seeded (the thing LoadFluxForTraining adopts)."""
    import_comfy()
    from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer

    return build_tiny_flux_transformer(TinyFluxSpec(variant, seed=seed))


def adopt(owner, *, checkpointing: bool = False):
    from flux_lora_lab.core.model.adapter import FluxTrainingAdapter

    return FluxTrainingAdapter.adopt(owner, checkpointing=checkpointing)


def planted_teacher(owner, targets: list[str], rank: int = 2, scale: float = 0.5, seed: int = 123):
    """A copy of `owner` whose `targets` linears get W += scale * U V^T (rank `rank`), as an adapter."""
    teacher_owner = copy.deepcopy(owner)
    generator = torch.Generator().manual_seed(seed)
    modules = dict(teacher_owner.named_modules())
    with torch.no_grad():
        for name in targets:
            weight = modules[name].weight
            out_f, in_f = weight.shape
            u = torch.randn(out_f, rank, generator=generator) / rank**0.5
            v = torch.randn(rank, in_f, generator=generator) / in_f**0.5
            weight.add_(scale * (u @ v))
    return adopt(teacher_owner)


def planted_lora_teacher(base_owner, quantize: str, targets_preset: str = "attention", rank: int = 2,
                         scale: float = 0.2, seed: int = 123):
    """The student's own (quantized) base plus a planted rank-`rank` branch on the targeted layers.

    For a quantized base the planted change cannot go into the weights (requantizing would add its
    own error), so it rides on a LoRA branch: the teacher computes q(W) x + scale * U V x exactly.
    """
    from flux_lora_lab.core.model import lora, quant
    from flux_lora_lab.core.lora_settings import LoraSettings

    teacher = adopt(base_owner)
    quant.quantize_base(teacher.module, quantize)
    lora.attach_lora(teacher.module, LoraSettings(rank=rank, alpha=rank, targets=targets_preset))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora.lora_layers(teacher.module).values():
            down, up = layer.lora_A[lora.ADAPTER].weight, layer.lora_B[lora.ADAPTER].weight
            down.copy_(torch.randn(down.shape, generator=generator) / down.shape[1] ** 0.5)
            up.copy_(scale * torch.randn(up.shape, generator=generator) / rank**0.5)
    teacher.module.eval()
    return teacher


@dataclass
class SyntheticBatch:
    latents: torch.Tensor
    context: torch.Tensor
    pooled: torch.Tensor | None
    loss_mask: torch.Tensor | None = None
    dop_context: torch.Tensor | None = None
    dop_pooled: torch.Tensor | None = None
    loss_weights: torch.Tensor | None = None


class SyntheticData:
    """A fixed pool of (latent, prompt) pairs; batch(step) is a pure function of step, like the real dataset.

    Each prompt's DOP twin is the same prompt with its first token (the "trigger") replaced by a
    shared "class word" token.
    """

    def __init__(self, *, items: int = 8, channels: int = 16, size: int = 8, pooled: bool = True, seed: int = 7):
        g = torch.Generator().manual_seed(seed)
        self.latents = torch.randn(items, channels, size, size, generator=g)
        self.context = torch.randn(items, TOKENS, CONTEXT_DIM, generator=g)
        self.pooled = torch.randn(items, POOLED_DIM, generator=g) if pooled else None
        class_token = torch.randn(CONTEXT_DIM, generator=g)
        self.dop_context = self.context.clone()
        self.dop_context[:, 0] = class_token
        self.dop_pooled = None if self.pooled is None else self.pooled + 0.5 * torch.randn(POOLED_DIM, generator=g)
        self.items = items
        self.seeds: set[int] = set()

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.items // batch_size)

    def batch(self, step: int, batch_size: int, seed: int) -> SyntheticBatch:
        """The pool's items in a fixed order; `seed` (the run's train.seed) is only recorded in `seeds`."""
        self.seeds.add(seed)
        index = [(step * batch_size + i) % self.items for i in range(batch_size)]
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        self.served = self.latents[index]  # the clean latents of the batch the trainer now trains on
        return SyntheticBatch(self.latents[index], self.context[index], pick(self.pooled),
                              dop_context=self.dop_context[index],
                              dop_pooled=pick(self.dop_pooled))


class Taught:
    """The student as the trainer sees it when a teacher, not the data, says what to predict.

    The trainer's loss is |predict(noisy) - (noise - x0)|^2. This adapter predicts
    student(noisy) - teacher(noisy) + (noise - x0), so the loss is |student - teacher|^2 (the offset
    carries no gradient): the student learns the teacher's function. noise - x0 = (noisy - x0) / sigma
    comes from the clean latents the data served last. A DOP pass gets the same offset in its
    prior and its prediction, so their difference is the student's own change, as in real training.
    Everything else is the student's (`__getattr__`)."""

    def __init__(self, student, teacher, data: SyntheticData, guidance: float = 1.0):
        self.student, self.teacher, self.data, self.guidance = student, teacher, data, guidance

    def __getattr__(self, name):
        return getattr(self.student, name)

    def predict(self, latents, sigmas, context, pooled=None, guidance=None):
        s = sigmas.double().view(-1, 1, 1, 1)
        flow_target = (latents.double() - self.data.served.to(latents.device).double()) / s
        with torch.no_grad():
            taught = self.teacher.predict(latents, sigmas, context, pooled, self.guidance).double()
        offset = (flow_target - taught).to(latents.dtype)
        return self.student.predict(latents, sigmas, context, pooled, guidance) + offset


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()
