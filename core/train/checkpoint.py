"""What a checkpoint holds and how a run comes back from one.

A checkpoint folder (core/run/rundir.py writes it atomically) holds:
  lora.safetensors             the portable LoRA users sample (EMA weights when EMA is on)
  optimizer_state.safetensors  everything resume needs that the LoRA file does not say: the raw
                               (non-EMA) LoRA weights, optimizer, LR scheduler, EMA shadow (no RNG
                               state: every draw is a function of the run seed and the step)
  training_state.json          step, loss history, config (written last: the completion marker)
  prompt_*_WxH.png             preview images, when previews are configured
Resume restores all of it, so a resumed run continues bit for bit where it stopped (the data order
and every random draw of a step are pure functions of (seed, step): see core/train/trainer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..model import lora, lora_format, text_lora
from ..run.atomic import Writer, bytes_writer
from ..run.rundir import CheckpointInfo
from .finite import require_finite_weights, require_in_fp16_range
from .optim import LoraEMA, averaged_weights_swapped_in
from .state_io import load_state, save_state
from .text_encoder import trainable

LORA_FILE = "lora.safetensors"
RESUME_FILE = "optimizer_state.safetensors"
SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
"""`run.save_dtype` -> the dtype of the LoRA file's down / up tensors."""


@dataclass
class TrainingState:
    """The live objects a checkpoint captures."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: LoraEMA | None
    text_module: torch.nn.Module | None = None
    """The CLIP-L carrying a text-encoder LoRA (lora.train_text_encoder), else None."""


@dataclass(frozen=True)
class LoraFileInfo:
    """What goes into every LoRA file's metadata besides the weights."""

    family: str
    trigger: str
    base_fingerprint: str
    config: Mapping[str, Any]
    layout: str = "kohya"
    dtype: str = "fp32"
    """`run.save_dtype`: the precision of the file only; resume reads the fp32 weights of RESUME_FILE."""

    def write(self, path: Path, weights: Mapping, step: int, text_weights: Mapping | None = None) -> Path:
        tensors = {f"{name}.{part}": t for name, w in {**weights, **(text_weights or {})}.items()
                   for part, t in w.tensors().items()}
        require_finite_weights(tensors, str(path))
        dtype = SAVE_DTYPES[self.dtype]
        if dtype == torch.float16:
            require_in_fp16_range(tensors, str(path))
        return lora_format.save_lora(path, weights, self.family, step=step, trigger=self.trigger or None,
                                     base_fingerprint=self.base_fingerprint, config=dict(self.config),
                                     layout=self.layout, dtype=dtype,
                                     text_tensors=text_lora.text_tensors(text_weights or {}, dtype))


def user_weights_swapped_in(state: TrainingState):
    """Context in which the module holds the weights users get: the EMA average when EMA is on, a
    schedule-free optimizer's averaged weights with adamw_schedulefree (the two never go together)."""
    if state.ema is not None:
        return state.ema.swapped_in()
    return averaged_weights_swapped_in(state.optimizer)


def user_weights(state: TrainingState, text: bool = False) -> dict:
    """The LoRA weights users get (EMA average when EMA is on, else the trained weights), cloned:
    the transformer's, or with `text` the CLIP-L's ({} when the run trains none)."""
    module = state.text_module if text else state.module
    if module is None:
        return {}
    with user_weights_swapped_in(state):
        return {name: w.clone() for name, w in lora.lora_state_dict(module).items()}


def checkpoint_writers(state: TrainingState, info: LoraFileInfo, step: int,
                       previews: Mapping[str, bytes]) -> dict[str, Writer]:
    """Writers for one checkpoint folder (file name -> function that writes it)."""
    weights, text_weights = user_weights(state), user_weights(state, text=True)
    resume_state = {
        "lora_raw": {name: p.detach().clone() for name, p in trainable(state.module, state.text_module)},
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else None,
    }
    writers: dict[str, Writer] = {
        LORA_FILE: lambda path: info.write(path, weights, step, text_weights),
        RESUME_FILE: lambda path: save_state(path, resume_state),
    }
    writers.update({name: bytes_writer(data) for name, data in previews.items()})
    return writers


def restore(state: TrainingState, checkpoint: CheckpointInfo) -> None:
    """Load a checkpoint's resume state into the live objects (LoRA attached with the same targets)."""
    saved = load_state(checkpoint.file(RESUME_FILE))
    params = dict(trainable(state.module, state.text_module))
    raw = saved["lora_raw"]
    if set(raw) != set(params):
        missing, extra = sorted(set(params) - set(raw)), sorted(set(raw) - set(params))
        raise ValueError(f"{checkpoint.path} was trained with other LoRA targets (missing {missing[:3]}, "
                         f"extra {extra[:3]}); resume with the same lora.targets / blocks / train_text_encoder / train_t5, "
                         "or use a new run name")
    with torch.no_grad():
        for name, param in params.items():
            if raw[name].shape != param.shape:
                raise ValueError(f"{checkpoint.path}: {name} has shape {tuple(raw[name].shape)}, this run "
                                 f"{tuple(param.shape)}; resume with the rank it was trained with")
            param.copy_(raw[name])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if (saved["ema"] is None) != (state.ema is None):
        raise ValueError(f"{checkpoint.path} was trained with train.ema={saved['ema'] is not None}; "
                         "resume with the same setting")
    if state.ema is not None:
        state.ema.load_state_dict(saved["ema"])
    # Nothing else to restore: every random draw of a step is seeded by (run seed, step), never by
    # torch's global generator (core/model/lora_random.py), which a checkpoint of one run must not reset.
