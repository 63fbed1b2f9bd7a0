"""The LoRA's random draws (initial weights, dropout masks) from the run's own seeds, never torch's
global generator.

Why: two runs in one process (ComfyUI runs them as threads) that seed and draw from the global
generator race on it, so neither equals the same run alone. Every draw here comes from a generator
made for that draw from (run seed, purpose, index), the way the data order and the noise are drawn.

- `init_lora` redraws what peft initialised with the global generator, with peft's distributions:
  lora_A ~ U(-1/sqrt(in), 1/sqrt(in)) (`default`, Kaiming-uniform with a = sqrt(5)) or
  N(0, 1/rank) (`gaussian`), lora_B = 0; and LoKr's as LyCORIS draws them: w1, w1_a, w1_b, w2_a
  Kaiming-uniform (the same bound, 1/sqrt(fan in)), w2 and w2_b zero (core/model/lokr.py).
- `SeededDropout` replaces peft's dropout: its mask is a function of (the run's current step seed,
  the layer's name), so the recomputation of a checkpointed block draws the same mask as the forward
  it replays, which torch only guarantees for the global generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..lora_settings import LoraSettings
from ..seeding import stream_seed
from .lokr import lokr_layers
from .lora import ADAPTER, lora_layers


def init_lora(module: nn.Module, spec: LoraSettings, seed: int) -> None:
    """Draw every attached LoRA pair of `module` from (seed, layer name), in place."""
    with torch.no_grad():
        for name, layer in lora_layers(module).items():
            down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            g = torch.Generator().manual_seed(stream_seed(seed, "lora_init", name))
            if spec.init == "gaussian":
                values = torch.randn(down.shape, generator=g) / spec.rank
            else:
                bound = 1.0 / down.shape[1] ** 0.5
                values = (torch.rand(down.shape, generator=g) * 2 - 1) * bound
            down.copy_(values)
            up.zero_()
        for name, layer in lokr_layers(module).items():
            for part, param in layer.parts().items():
                if part in ("w2", "w2_b"):
                    param.zero_()
                    continue
                g = torch.Generator().manual_seed(stream_seed(seed, "lokr_init", f"{name}.{part}"))
                bound = 1.0 / param.shape[1] ** 0.5
                param.copy_((torch.rand(param.shape, generator=g) * 2 - 1) * bound)


@dataclass
class StepSeed:
    """The seed of the micro-step being trained, set by the trainer, read by every SeededDropout."""

    value: int = 0


class SeededDropout(nn.Module):
    """Inverted dropout whose mask is drawn from (step seed, layer name) on the input's device."""

    def __init__(self, p: float, name: str, step_seed: StepSeed):
        super().__init__()
        self.p, self.name, self.step_seed = p, name, step_seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        g = torch.Generator(device=x.device).manual_seed(stream_seed(self.step_seed.value, "lora_dropout", self.name))
        keep = torch.rand(x.shape, generator=g, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


def use_seeded_dropout(module: nn.Module, p: float) -> StepSeed:
    """Swap peft's dropout on every LoRA layer of `module` for SeededDropout; returns the shared step seed."""
    step_seed = StepSeed()
    if p > 0:
        for name, layer in lora_layers(module).items():
            layer.lora_dropout[ADAPTER] = SeededDropout(p, name, step_seed)
        for name, layer in lokr_layers(module).items():
            layer.dropout = SeededDropout(p, name, step_seed)
    return step_seed
