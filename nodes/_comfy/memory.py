"""The memory plan (core/train/memory_plan.py) for a MODEL in ComfyUI: what LoadFluxForTraining shows,
and the check TrainLoRA makes before a run starts, against the memory free on the training device."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ...core.config import TrainConfig
from ...core.errors import FluxLabError
from ...core.model import flux_family, lora
from ...core.model.adapter import FluxTrainingAdapter
from ...core.train import memory_plan
from ...core.train.memory_plan import MemoryPlan, RunShape, gib
from . import host

_SHOWN = dict(rank=16, side=1024, text_tokens=512)
"""What the LoadFluxForTraining estimate assumes before TrainLoRA's settings are known."""


class RunWillNotFit(FluxLabError, MemoryError):
    """The plan's peak exceeds the memory free on the training device."""


def _shape(transformer: nn.Module, family: str):
    tree = FluxTrainingAdapter.adopt(transformer, checkpointing=False).module  # containers only, no copy
    return tree, memory_plan.shape_of(tree, family, float(transformer.params.mlp_ratio))


def _run(tree: nn.Module, names: list[str], rank: int, quantization: str, mixed_precision: str, checkpointing: bool,
         checkpoint_every: int, tokens: int, optimizer: str = "adamw", ema: bool = False, batch: int = 1,
         blocks_to_swap: int = 0) -> RunShape:
    """A RunShape from settings as TrainConfig spells them (`mixed_precision` "bf16" / "no"); an auto
    interval (None) stays None for memory_plan.choose to settle."""
    return RunShape(quantization=quantization, compute="bf16" if mixed_precision == "bf16" else "fp32",
                    lora_params=memory_plan.lora_parameter_count(tree, names, rank), optimizer=optimizer, ema=ema,
                    batch=batch, tokens=tokens, checkpoint_every=checkpoint_every if checkpointing else 0,
                    blocks_to_swap=blocks_to_swap)


def estimate_memory(handle) -> str:
    """The plan for a rank-16 LoRA on every block linear (AdamW), one 1024x1024 image with 512 text
    tokens: what LoadFluxForTraining shows before TrainLoRA's settings are known. With quantization
    'auto', what auto would pick for that run on the device as it is now."""
    transformer, family = handle.transformer, handle.family
    quantize, t = handle.settings.model.quantize, handle.settings.train
    tree, shape = _shape(transformer, family)
    state = transformer.state_dict()
    dtypes = sorted({str(d).removeprefix("torch.") for d in {v.dtype for v in state.values()}})
    names = tree.block_linear_names()
    run = _run(tree, names, _SHOWN["rank"], "none" if quantize == "auto" else quantize, t.mixed_precision,
               t.gradient_checkpointing, t.checkpoint_every_n_blocks,
               tokens=(_SHOWN["side"] // 16) ** 2 + _SHOWN["text_tokens"])
    stored = shape.block_weight_bytes + shape.other_bytes
    lines = [f"{flux_family.family(family).display_name}: {sum(v.numel() for v in state.values()) / 1e9:.2f} B parameters stored as "
             f"{'/'.join(dtypes)} ({gib(stored)}), training on {handle.device}."]
    if quantize == "auto" or run.checkpoint_every is None:
        choice = memory_plan.choose(shape, run, _available(handle), _modes(quantize))
        if choice is None:
            lines.append("Auto: even int4 with block swap does not fit this run now; TrainLoRA decides with its "
                         "own settings.")
            return "\n".join(lines)
        run = choice.run
        lines.append(f"Quantization / checkpointing {choice.reason}. TrainLoRA picks again for its own settings "
                     "when a run starts.")
    parts = memory_plan.plan(shape, run).parts
    if run.quantization == "none":
        lines.append(f"Base weights: {gib(parts['base weights'])}, ComfyUI's loaded weights shared as they are (no copy).")
    else:
        lines.append(f"Base weights: {gib(parts['base weights'])} ({run.quantization} copies of {len(names)} block "
                     f"linears + float embedders/norms), built one layer at a time from ComfyUI's {gib(stored)} copy, "
                     "which is offloaded to system RAM while the run trains.")
    lines.append(f"LoRA rank {_SHOWN['rank']} on all block linears with AdamW: {gib(parts['LoRA + optimizer'])} "
                 "(fp32 weights, gradients, optimizer states; scales with rank).")
    checkpointing = (f"gradient checkpointing every {run.checkpoint_every} block(s)"
                     if run.checkpoint_every else "no gradient checkpointing")
    lines.append(f"Activations at {_SHOWN['side']}x{_SHOWN['side']}, batch 1, {checkpointing}: {gib(parts['activations'])} "
                 f"(they grow with resolution and batch size). Compute: "
                 f"{'bf16 autocast' if t.mixed_precision == 'bf16' else 'fp32'}.")
    lines.append(f"Peak about {gib(sum(parts.values()))}; TrainLoRA checks its own settings before step 1.")
    return "\n".join(lines)


def run_plan(handle, config: TrainConfig, data) -> MemoryPlan:
    """The plan of this run as configured."""
    tree, shape = _shape(handle.transformer, handle.family)
    return memory_plan.plan(shape, _run_shape(tree, config, data))


def _run_shape(tree: nn.Module, config: TrainConfig, data) -> RunShape:
    """The run's LoRA targets and rank, optimizer, EMA, batch, checkpointing, and the largest batch
    the dataset will give (image tokens of the largest bucket + the text length). The transformer only:
    lora.train_text_encoder's CLIP-L copy and lora.train_t5's T5-XXL copy (4.7B parameters) and their
    activations are not counted."""
    names = lora.target_names(tree, config.lora)
    width, height = max(data.buckets, key=lambda wh: wh[0] * wh[1])
    text_tokens = data.batch(0, 1, 0).context.shape[1]
    t = config.train
    run = _run(tree, names, config.lora.rank, config.model.quantize, t.mixed_precision, t.gradient_checkpointing,
               t.checkpoint_every_n_blocks, tokens=(width // 16) * (height // 16) + text_tokens,
               optimizer=config.optim.optimizer, ema=t.ema, batch=t.batch_size, blocks_to_swap=t.blocks_to_swap)
    return dataclasses.replace(run, lora_params=lora.parameter_count(tree, names, config.lora))  # LoKr's too


def fit_run(handle, config: TrainConfig, data) -> tuple:
    """(config, plan, note) for a run that fits the training device, or RunWillNotFit with the plan and
    what to change. With `model.quantize` 'auto' the config comes back with the least lossy
    quantization / checkpointing / block swap that fits (`memory_plan.choose`); with an auto
    checkpoint interval (`train.checkpoint_every_n_blocks` empty) with the least recompute that fits,
    so a run with room to spare pays none; the note says what was picked and why. Otherwise it comes
    back as given, and the note is None."""
    tree, shape = _shape(handle.transformer, handle.family)
    run = _run_shape(tree, config, data)
    available = _available(handle)
    if config.model.quantize != "auto" and run.checkpoint_every is not None:
        planned = memory_plan.plan(shape, run)
        if planned.peak > available[run.quantization]:
            raise RunWillNotFit(f"TrainLoRA: run {config.run.name!r} will not fit on {handle.device}: "
                                f"{planned.advice(available[run.quantization])} Or quantization 'auto' on "
                                f"LoadFluxForTraining.\n{planned.describe()}")
        return config, planned, None
    choice = memory_plan.choose(shape, run, available, _modes(config.model.quantize))
    if choice is None:
        smallest = memory_plan.plan(shape, dataclasses.replace(run, quantization="qint4", checkpoint_every=1,
                                                               blocks_to_swap=shape.single_blocks))
        raise RunWillNotFit(f"TrainLoRA: run {config.run.name!r} will not fit on {handle.device} even with int4, "
                            f"checkpointing and every single block swapped: "
                            f"{smallest.advice(available['qint4'])}\n{smallest.describe()}")
    picked = choice.run
    settled = {"model": {"quantize": picked.quantization},
               "train": {"gradient_checkpointing": picked.checkpoint_every > 0,
                         "checkpoint_every_n_blocks": max(picked.checkpoint_every, 1),
                         "blocks_to_swap": picked.blocks_to_swap}}
    return config.with_overrides(settled), choice.plan, choice.reason


def _modes(quantize: str) -> tuple:
    """The quantizations 'auto' may pick from, or the one the user chose."""
    return memory_plan.AUTO_QUANTIZATION if quantize == "auto" else (quantize,)


def _available(handle) -> dict[str, int]:
    """What a run's peak may use on the device, per quantization: the free memory, plus ComfyUI's
    resident copy of this MODEL where the run reuses it ('none', trained in place) or frees it
    (quantized: `host.offload` takes it off a GPU; on the CPU it stays in RAM)."""
    free, resident = free_memory(handle.device), host.resident_bytes(handle.patcher)
    reused = resident if not host.is_dynamic(handle.patcher) else 0
    freed = resident if host.offload_frees_device(handle.patcher) else 0
    return {mode: free + (reused if mode == "none" else freed) for mode in memory_plan.QUANT_BYTES}


def free_memory(device: torch.device) -> int:
    import comfy.model_management

    return int(comfy.model_management.get_free_memory(device))
