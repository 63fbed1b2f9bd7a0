"""`train.compile`: regional compilation of the training forward, one `torch.compile` per block.

Why per block and not the whole model: the double blocks share one class and so do the single
blocks, so dynamo compiles each kind once and reuses the code for every block of that kind (torch
treats a module's parameters as graph inputs), which keeps the compile time that of two blocks
whatever the depth, and leaves the per-block checkpointing and block swapping of core/model/flux.py
as they are. Measured on the CPU bench (docs/benchmarks.md, no checkpointing): 1.09x (fp32) and
1.36x (bf16) steps/s after a first step of ~21 s (~4 s once inductor's on-disk cache holds the
graphs): a short CPU run barely earns that back, and the compile needs a C++ toolchain; hence `auto`
compiles on CUDA only, and there only where nothing is known to break it at a user's desk: inductor
needs Triton on CUDA (not in Windows' ComfyUI by default: without it the first step would fail),
quantized base weights (quanto's custom tensors; NF4 does not compile at all, seed 001) and block
swapping (weights change device every step: recompiles) stay eager. `on` compiles regardless. Not
yet measured on a GPU. What the compiled step computes is the eager step's within float tolerance
(tests/core/model/test_flux_compile.py).
"""

import importlib.util

import torch
from torch import nn

MODES = ("off", "auto", "on")


def wanted(mode: str, device: torch.device, *, quantized: bool = False, swapping: bool = False,
           has_triton: bool | None = None) -> bool:
    """Whether `mode` ("off" / "auto" / "on") compiles for a run on `device`. auto: CUDA with Triton
    installed, an unquantized base (`quantized`) and no block swap (`swapping`); `has_triton` None =
    look it up."""
    if mode not in MODES:
        raise ValueError(f"train.compile must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "on"
    if has_triton is None:
        has_triton = importlib.util.find_spec("triton") is not None
    return device.type == "cuda" and has_triton and not quantized and not swapping


def compile_blocks(tree: nn.Module) -> int:
    """Compile every double and single block of our training tree in place (`nn.Module.compile`);
    return how many. Attach the LoRA first: the compiled code traces the layers as they are then."""
    blocks = [*tree.double_blocks, *tree.single_blocks]
    for block in blocks:
        block.compile()
    return len(blocks)
