"""The memory plan (core/memory_plan.py) for a MODEL in ComfyUI: what LoadFluxForTraining shows,
and the check TrainLoRA makes before a run starts, against the memory free on the training device."""

from __future__ import annotations

import torch
from torch import nn

from ...core import lora, memory_plan
from ...core.adapter import FluxTrainingAdapter
from ...core.config import TrainConfig
from ...core.memory_plan import MemoryPlan, RunShape, gib
from ...core.trainer import lora_spec

_FAMILY_NAMES = {"flux1": "Flux.1", "flux2": "Flux.2"}
_SHOWN = dict(rank=16, side=1024, text_tokens=512)
"""What the LoadFluxForTraining estimate assumes before TrainLoRA's settings are known."""


class RunWillNotFit(MemoryError):
    """The plan's peak exceeds the memory free on the training device."""


def _shape(transformer: nn.Module, family: str):
    tree = FluxTrainingAdapter.adopt(transformer, checkpointing=False).module  # containers only, no copy
    return tree, memory_plan.shape_of(tree, family, float(transformer.params.mlp_ratio))


def _run(tree: nn.Module, names: list[str], rank: int, quantization: str, mixed_precision: str, checkpointing: bool,
         checkpoint_every: int, tokens: int, optimizer: str = "adamw", ema: bool = False, batch: int = 1,
         blocks_to_swap: int = 0) -> RunShape:
    """A RunShape from settings as TrainConfig spells them (`mixed_precision` "bf16" / "no")."""
    return RunShape(quantization=quantization, compute="bf16" if mixed_precision == "bf16" else "fp32",
                    lora_params=memory_plan.lora_parameter_count(tree, names, rank), optimizer=optimizer, ema=ema,
                    batch=batch, tokens=tokens, checkpoint_every=checkpoint_every if checkpointing else 0,
                    blocks_to_swap=blocks_to_swap)


def estimate_memory(transformer: nn.Module, family: str, settings, device) -> str:
    """The plan for a rank-16 LoRA on every block linear (AdamW), one 1024x1024 image with 512 text
    tokens: what LoadFluxForTraining shows before TrainLoRA's settings are known."""
    tree, shape = _shape(transformer, family)
    state = transformer.state_dict()
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values()})
    names = tree.block_linear_names()
    run = _run(tree, names, _SHOWN["rank"], settings.quant_mode, settings.mixed_precision, settings.gradient_checkpointing,
               settings.checkpoint_every_n_blocks, tokens=(_SHOWN["side"] // 16) ** 2 + _SHOWN["text_tokens"])
    parts = memory_plan.plan(shape, run).parts
    stored = shape.block_weight_bytes + shape.other_bytes
    lines = [f"{_FAMILY_NAMES[family]}: {sum(t.numel() for t in state.values()) / 1e9:.2f} B parameters stored as "
             f"{'/'.join(dtypes)} ({gib(stored)}), training on {device}."]
    if settings.quant_mode == "none":
        lines.append(f"Base weights: {gib(parts['base weights'])}, ComfyUI's loaded weights shared as they are (no copy).")
    else:
        lines.append(f"Base weights: {gib(parts['base weights'])} ({settings.quantization} copies of {len(names)} block "
                     f"linears + float embedders/norms), built one layer at a time from ComfyUI's {gib(stored)} copy, "
                     "which is offloaded to system RAM while the run trains.")
    lines.append(f"LoRA rank {_SHOWN['rank']} on all block linears with AdamW: {gib(parts['LoRA + optimizer'])} "
                 "(fp32 weights, gradients, optimizer states; scales with rank).")
    checkpointing = (f"gradient checkpointing every {settings.checkpoint_every_n_blocks} block(s)"
                     if settings.gradient_checkpointing else "no gradient checkpointing")
    lines.append(f"Activations at {_SHOWN['side']}x{_SHOWN['side']}, batch 1, {checkpointing}: {gib(parts['activations'])} "
                 f"(they grow with resolution and batch size). Compute: "
                 f"{'bf16 autocast' if settings.mixed_precision == 'bf16' else 'fp32'}.")
    lines.append(f"Peak about {gib(sum(parts.values()))}; TrainLoRA checks its own settings before step 1.")
    return "\n".join(lines)


def run_plan(handle, config: TrainConfig, data) -> MemoryPlan:
    """The plan of this run: its LoRA targets and rank, optimizer, EMA, batch, checkpointing, and the
    largest batch the dataset will give (image tokens of the largest bucket + the text length)."""
    tree, shape = _shape(handle.transformer, handle.family)
    names = lora.target_names(tree, lora_spec(config))
    width, height = max(data.buckets, key=lambda wh: wh[0] * wh[1])
    text_tokens = data.batch(0, 1).context.shape[1]
    t = config.train
    run = _run(tree, names, config.lora.rank, config.model.quantize, t.mixed_precision, t.gradient_checkpointing,
               t.checkpoint_every_n_blocks, tokens=(width // 16) * (height // 16) + text_tokens,
               optimizer=config.optim.optimizer, ema=t.ema, batch=t.batch_size, blocks_to_swap=t.blocks_to_swap)
    return memory_plan.plan(shape, run)


def check_fits(handle, config: TrainConfig, data) -> MemoryPlan:
    """The run's plan, or RunWillNotFit with the plan and what to change. Weights a run trains on in
    place ('none', resident) are already counted as used by the device."""
    planned = run_plan(handle, config, data)
    needed = planned.peak - (planned.parts["base weights"] if handle.trains_in_place else 0)
    free = free_memory(handle.device)
    if needed > free:
        raise RunWillNotFit(f"TrainLoRA: run {config.run.name!r} will not fit on {handle.device}: "
                            f"{planned.advice(free)}\n{planned.describe()}")
    return planned


def free_memory(device: torch.device) -> int:
    import comfy.model_management

    return int(comfy.model_management.get_free_memory(device))
