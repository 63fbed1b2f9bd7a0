"""The run's CLIP-L LoRA (lora.train_text_encoder): attached, optimised and used in the step.

Off, the step feeds the pooled vectors the dataset cached. On, it encodes the batch's captions (and
DOP's) through the LoRA'd CLIP-L every step, so the gradient of the flow loss reaches the text LoRA;
the T5 context stays cached (it is Flux.1's context and stays frozen). DOP's prior is the base model
with the base CLIP: both LoRAs are off for it. The CLIP-L LoRA has no dropout: its masks would need
their own seeded stream to keep resume exact, and kohya's text-encoder LoRAs train without. It is a
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
        attach_text_lora(adapter.module, spec)
        init_lora(adapter.module, spec, seeding.stream_seed(config.train.seed, "text lora init", 0))

    @classmethod
    def for_run(cls, job, device: torch.device) -> Optional["TextEncoderTraining"]:
        """None when the run trains no text encoder; refuses what cannot train one, naming the setting."""
        if not job.config.lora.train_text_encoder:
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


def trainable(module: torch.nn.Module, text_module: Optional[torch.nn.Module] = None) -> list:
    """[(name, parameter)] of every LoRA the run trains, transformer first (optimizer and checkpoint order)."""
    named = lora.trainable_parameters(module)
    if text_module is not None:
        named += [(TEXT_PARAM_PREFIX + name, p) for name, p in lora.trainable_parameters(text_module)]
    return named


def param_groups(named: list, text_lr: float) -> list:
    """Optimizer groups of `trainable()`'s list: the transformer's LoRA at optim.learning_rate, the CLIP-L
    LoRA (if any) at lora.text_encoder_lr (kohya's text_encoder_lr)."""
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


def text_lora_disabled(text: Optional[TextEncoderTraining]):
    """The base CLIP-L inside the block (DOP's prior, baselines); nothing to do without a text LoRA."""
    return lora.lora_disabled(text.module) if text is not None else contextlib.nullcontext()
