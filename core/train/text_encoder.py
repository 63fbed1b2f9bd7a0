"""The run's text-encoder LoRA (lora.train_text_encoder, lora.train_t5): attached, optimised, used in the step.

Off, the step feeds the pooled vectors the dataset cached. On, it encodes the batch's captions (and
DOP's) through the LoRA'd CLIP-L every step, so the gradient of the flow loss reaches the text LoRA;
the T5 context stays cached unless lora.train_t5 also puts a LoRA on T5-XXL (kohya's train_t5xxl,
which needs train_text_encoder as there), when the context too is encoded in the step. DOP's prior is
the base model with the base encoders: every LoRA is off for it. The text LoRAs have no dropout:
their masks would need their own seeded stream to keep resume exact, and kohya's train without. It is a
LoRA also when lora.network is 'lokr' (the `lora_te1_` keys hold LoRA pairs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional, Sequence

import torch

from .. import seeding
from ..model import lora
from ..model.lora_random import init_lora
from ..model.text_lora import TextEncoderAdapter, attach_text_lora
from ..setting import ConfigError

TEXT_PARAM_PREFIX = "text_encoder:"
"""Prefix of the CLIP-L LoRA's parameters in the optimizer, EMA and resume state."""

SETTING = "lora.train_text_encoder"


class TextEncoderTraining:
    """The attached text LoRA of one run and how the step gets its pooled vectors."""

    def __init__(self, adapter: TextEncoderAdapter, config, device: torch.device):
        self.adapter, self.device = adapter, device
        spec = dataclasses.replace(config.lora, dropout=0.0, network="lora")
        self.t5 = config.lora.train_t5
        attach_text_lora(adapter.module, spec, t5=self.t5)
        init_lora(adapter.module, spec, seeding.stream_seed(config.train.seed, "text lora init", 0))

    @classmethod
    def for_run(cls, job, device: torch.device) -> Optional["TextEncoderTraining"]:
        """None when the run trains no text encoder; refuses what cannot train one, naming the setting."""
        if not job.config.lora.train_text_encoder:
            if job.config.lora.train_t5:
                raise ConfigError("lora.train_t5", "needs lora.train_text_encoder on (as kohya's train_t5xxl "
                                  "needs text-encoder training): turn that on too, or turn train_t5 off")
            return None
        if job.adapter.family != "flux1":
            raise ConfigError(SETTING, f"the model is {job.adapter.family}: only Flux.1's CLIP-L can carry a "
                              "text-encoder LoRA here (Flux.2's Mistral / Qwen3 encoder gives the whole context and "
                              "is not trained by this pack); turn lora.train_text_encoder off")
        if job.text_encoder is None:
            raise ConfigError(SETTING, "is on but the run was given no text encoder; train from a graph whose "
                              "DatasetFromFolder has Flux.1's CLIP connected, or turn it off")
        return cls(job.text_encoder, job.config, device)

    @property
    def module(self) -> torch.nn.Module:
        return self.adapter.module

    def pooled(self, captions: Sequence[str]) -> torch.Tensor:
        return self.adapter.encode_pooled(list(captions)).to(self.device, torch.float32)

    def context(self, captions: Sequence[str]) -> torch.Tensor:
        return self.adapter.encode_context(list(captions)).to(self.device, torch.float32)


def trainable(module: torch.nn.Module, text_module: Optional[torch.nn.Module] = None) -> list:
    """[(name, parameter)] of every LoRA the run trains, transformer first (optimizer and checkpoint order)."""
    named = lora.trainable_parameters(module)
    if text_module is not None:
        named += [(TEXT_PARAM_PREFIX + name, p) for name, p in lora.trainable_parameters(text_module)]
    return named


def param_groups(named: list, text_lr: float) -> list:
    """Optimizer groups of `trainable()`'s list: the transformer's LoRA at optim.learning_rate, the text
    LoRAs (CLIP-L, and T5 with lora.train_t5) at lora.text_encoder_lr (kohya's text_encoder_lr)."""
    text = [p for name, p in named if name.startswith(TEXT_PARAM_PREFIX)]
    groups = [{"params": [p for name, p in named if not name.startswith(TEXT_PARAM_PREFIX)]}]
    return groups + [{"params": text, "lr": text_lr}] if text else groups


def pooled_for(text: Optional[TextEncoderTraining], batch, device, dop: bool = False) -> Optional[torch.Tensor]:
    """The step's pooled vectors (DOP's with `dop`): through the text LoRA from the batch's captions when it
    trains, else the ones the dataset cached."""
    if text is not None:
        return text.pooled(batch.dop_captions if dop else batch.captions)
    cached = batch.dop_pooled if dop else batch.pooled
    return None if cached is None else cached.to(device)


def context_for(text: Optional[TextEncoderTraining], batch, device, dop: bool = False) -> Optional[torch.Tensor]:
    """The step's T5 context (DOP's with `dop`): through the T5 LoRA from the captions with lora.train_t5,
    else the cached one."""
    if text is not None and text.t5:
        return text.context(batch.dop_captions if dop else batch.captions)
    cached = batch.dop_context if dop else batch.context
    return None if cached is None else cached.to(device)


def text_lora_disabled(text: Optional[TextEncoderTraining]):
    """The base CLIP-L (and T5) inside the block (DOP's prior, baselines); nothing to do without a text LoRA."""
    return lora.lora_disabled(text.module) if text is not None else contextlib.nullcontext()
