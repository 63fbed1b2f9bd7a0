"""How much memory a run will need on its device, before it starts: a pure function of the model's
shape and the run's settings.

Why: an allocator error at step 1 ("CUDA out of memory", "DefaultCPUAllocator: can't allocate")
names nothing a user can change. The plan names each part (base weights, LoRA and its optimizer,
activations) with its size, so a run that will not fit stops with what to change.

The activation model is measured, not guessed: `ACTIVATION_BYTES` is what autograd keeps per token
per hidden unit of one block (our forward, LoRA on every linear, without checkpointing), counted with
`torch.autograd.graph.saved_tensors_hooks` on ComfyUI's Flux classes (tests/core/train/test_memory_plan.py
re-measures it, so a change to the forward that moves it fails there). Checkpointing keeps only a
block's input and recomputes one block at a time in the backward pass. `BACKWARD_TRANSIENT` is
calibrated on CPU (bench/memory.py, docs/benchmarks.md); on a GPU the caching allocator's
high-water mark may differ, which the GPU script is to measure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from .optim import OPTIMIZERS

ACTIVATION_BYTES = {
    # (family, compute) -> (double block, single block), in units of tokens x hidden x element size
    ("flux1", "fp32"): (20.2, 17.1), ("flux1", "bf16"): (21.7, 21.4),
    ("flux2", "fp32"): (24.2, 21.1), ("flux2", "bf16"): (25.8, 25.4),
}
BACKWARD_TRANSIENT = 4.1
"""What one block's backward pass holds beyond the saved tensors (activation gradients, the
recomputation's temporaries, the MLP's wide intermediates), in the same units times (1 + mlp ratio).
Saved-tensor hooks cannot see these: calibrated against the measured memory growth of a full-width
Flux.1 (hidden 3072) training step on CPU, with and without checkpointing, where the fit of
growth = RUNTIME_BYTES + per-token part gives the same value for both (bench/memory.py)."""
RUNTIME_BYTES = 64 * 2**20
"""Memory a training step takes whatever its size (autograd's graph, kernel workspaces, thread
buffers): the intercept of the same fit (68 and 71 MiB on CPU)."""
QUANT_BYTES = {"none": None, "qint8": 1.0, "qfloat8": 1.0, "qint4": 0.5 + 4 / 128}
"""Bytes per quantized block weight (int4: + a bf16 scale and shift per group of 128)."""
OPTIMIZER_BYTES = {name: spec.state_bytes for name, spec in OPTIMIZERS.items()}
"""Optimizer state per fp32 LoRA parameter (prodigy keeps four moments), from optim's table."""
_LORA_BYTES = 4 + 4  # fp32 weight + gradient


@dataclass(frozen=True)
class ModelShape:
    """What of the transformer the plan needs (`shape_of` reads it from a training tree)."""

    family: str
    hidden: int
    mlp_ratio: float
    double_blocks: int
    single_blocks: int
    block_weight_count: int
    block_weight_bytes: int
    """The block linears' weights as stored (what quantization replaces)."""
    largest_block_weight: int
    single_block_weight_count: int
    """Block-linear weights of one single block (what block swap moves per block)."""
    other_bytes: int
    """Everything else (embedders, final layer, norms, biases, Flux.2's shared modulations)."""


@dataclass(frozen=True)
class RunShape:
    quantization: str  # core.model.quant mode
    compute: str  # "bf16" or "fp32"
    lora_params: int
    optimizer: str
    ema: bool
    batch: int
    tokens: int
    """Largest image tokens + text tokens of any batch."""
    checkpoint_every: int | None
    """0 = off, k = every k-th block, None = auto: `choose` picks the least recompute that fits."""
    blocks_to_swap: int = 0


@dataclass(frozen=True)
class MemoryPlan:
    parts: dict
    """{part: bytes}; their sum is the peak."""

    @property
    def peak(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        lines = [f"{name}: {gib(size)}" for name, size in self.parts.items()]
        return "\n".join(lines + [f"peak: {gib(self.peak)}"])

    def advice(self, free: int) -> str:
        """What to change so the run fits in `free` bytes."""
        biggest = max(self.parts, key=self.parts.get)
        hints = {
            "base weights": "quantization int8 (or int4) on LoadFluxForTraining, or train_blocks_to_swap",
            "activations": "gradient checkpointing on every block, a lower resolution, or batch size 1",
            "LoRA + optimizer": "a lower lora_rank, fewer lora_targets, or optim_optimizer adamw8bit",
        }
        return (f"needs {gib(self.peak)} but {gib(free)} is free; the largest part is {biggest} "
                f"({gib(self.parts[biggest])}): try {hints[biggest]}.")


def plan(model: ModelShape, run: RunShape) -> MemoryPlan:
    if run.checkpoint_every is None:
        raise ValueError("checkpoint_every None (auto) has no plan until `choose` settles the interval")
    element = 2 if run.compute == "bf16" else 4
    per_block = ACTIVATION_BYTES[(model.family, run.compute)]
    token_units = run.batch * run.tokens * model.hidden * element
    blocks = [per_block[0]] * model.double_blocks + [per_block[1]] * model.single_blocks
    if run.checkpoint_every:
        kept = sum(k if i % run.checkpoint_every else 1.0 for i, k in enumerate(blocks))
        kept += max(blocks)  # the block being recomputed
    else:
        kept = sum(blocks)
    activations = (kept + BACKWARD_TRANSIENT * (1 + model.mlp_ratio)) * token_units + RUNTIME_BYTES

    quant = QUANT_BYTES[run.quantization]
    if quant is None:
        base = model.block_weight_bytes + model.other_bytes
    else:  # quantized blocks, plus one float layer being quantized or dequantized at a time
        base = model.block_weight_count * quant + model.other_bytes + model.largest_block_weight * element
    # Swapped blocks live in system memory; the running one and the one copied ahead are on the device.
    per_weight = quant if quant is not None else model.block_weight_bytes / model.block_weight_count
    base -= max(0, run.blocks_to_swap - 2) * model.single_block_weight_count * per_weight
    lora = run.lora_params * (_LORA_BYTES + OPTIMIZER_BYTES[run.optimizer] + (4 if run.ema else 0))
    return MemoryPlan({"base weights": int(base), "LoRA + optimizer": int(lora), "activations": int(activations)})


AUTO_QUANTIZATION = ("none", "qfloat8", "qint4")
"""What `choose` tries, by what each costs in fidelity: the loaded weights as they are, then fp8 and
int4 copies of the block weights (ai-toolkit's default is fp8). int8 takes the memory of fp8, so
auto never needs it."""


@dataclass(frozen=True)
class Choice:
    run: RunShape
    plan: MemoryPlan
    reason: str


def checkpoint_intervals(model: ModelShape) -> list[int]:
    """The checkpoint intervals auto tries, least recompute first: 0 (none), then the intervals that
    checkpoint 1, 2, 3, ... of the model's blocks (`index % k == 0`, core/model/flux.py), down to 1
    (every block). Each checkpointed block runs its forward twice; the others keep their activations."""
    blocks = model.double_blocks + model.single_blocks
    by_count: dict[int, int] = {}
    for every in range(blocks, 0, -1):
        by_count.setdefault(-(-blocks // every), every)  # the largest interval giving that many checkpoints
    return [0] + [by_count[count] for count in sorted(by_count)]


def choose(model: ModelShape, run: RunShape, available: dict[str, int],
           quantizations: tuple = AUTO_QUANTIZATION) -> Choice | None:
    """The least lossy, then fastest, way to fit `run` in memory, with why; None when nothing fits.

    `available[mode]` is what the plan's peak may use with quantization `mode` (the caller knows what
    the device holds: a run on ComfyUI's resident weights reuses them, a quantized run frees them by
    offloading). `quantizations`: the modes to try, in order (AUTO_QUANTIZATION for quantization
    auto, `(run.quantization,)` for a fixed one). For each, the checkpoint intervals: with
    `run.checkpoint_every` None (auto) those of `checkpoint_intervals`, from no recompute to every
    block, so a run with room to spare pays no recompute; with a fixed interval that one and then
    every block (exact, about 30 % slower). Last int4 with block swap of more and more single blocks
    (exact, slower again), when int4 is among the modes. The first that fits wins.
    """
    if run.checkpoint_every is None:
        intervals = checkpoint_intervals(model)
    else:
        intervals = [run.checkpoint_every] + ([1] if run.checkpoint_every != 1 else [])
    tried = []
    candidates = [replace(run, quantization=mode, checkpoint_every=every) for mode in quantizations for every in intervals]
    if "qint4" in quantizations:
        candidates += [replace(run, quantization="qint4", checkpoint_every=1, blocks_to_swap=swap)
                       for swap in range(max(run.blocks_to_swap, 2) + 2, model.single_blocks + 1, 2)]
    for candidate in candidates:
        planned = plan(model, candidate)
        budget = available[candidate.quantization]
        label = _label(candidate)
        if planned.peak <= budget:
            why = f"auto: {label} ({gib(planned.peak)} of {gib(budget)} available)"
            if len(tried) > 4:  # auto intervals try up to one per block: name the first and the last
                tried = tried[:2] + [f"{len(tried) - 3} more"] + tried[-1:]
            return Choice(candidate, planned, why + (f"; did not fit: {'; '.join(tried)}" if tried else ""))
        tried.append(f"{label} needs {gib(planned.peak)} of {gib(budget)}")
    return None


def _label(run: RunShape) -> str:
    parts = [{"none": "the loaded weights", "qfloat8": "fp8", "qint8": "int8", "qint4": "int4"}[run.quantization],
             "checkpointing every block" if run.checkpoint_every == 1 else
             f"checkpointing every {run.checkpoint_every} blocks" if run.checkpoint_every else "no checkpointing"]
    if run.blocks_to_swap:
        parts.append(f"{run.blocks_to_swap} blocks swapped")
    return ", ".join(parts)


def shape_of(tree: nn.Module, family: str, mlp_ratio: float) -> ModelShape:
    """The ModelShape of a training tree (core/model/flux.TrainFlux, before quantization)."""
    block_linears = [m for name in ("double_blocks", "single_blocks") for block in getattr(tree, name)
                     for m in block.modules() if isinstance(m, nn.Linear)]
    block_weights = {id(m.weight) for m in block_linears}
    weights = [m.weight for m in block_linears]
    other = sum(p.numel() * p.element_size() for p in tree.parameters() if id(p) not in block_weights)
    return ModelShape(
        family=family, hidden=tree.arch.hidden_size, mlp_ratio=mlp_ratio,
        double_blocks=len(tree.double_blocks), single_blocks=len(tree.single_blocks),
        block_weight_count=sum(w.numel() for w in weights),
        block_weight_bytes=sum(w.numel() * w.element_size() for w in weights),
        largest_block_weight=max(w.numel() for w in weights), other_bytes=other,
        single_block_weight_count=sum(m.weight.numel() for m in tree.single_blocks[0].modules() if isinstance(m, nn.Linear))
        if len(tree.single_blocks) else 0,
    )


def lora_parameter_count(tree: nn.Module, names: list[str], rank: int) -> int:
    """LoRA parameters of rank `rank` on the named linears of `tree`."""
    return sum(rank * (m.in_features + m.out_features) for m in (tree.get_submodule(n) for n in names))


def gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.0f} MiB"
