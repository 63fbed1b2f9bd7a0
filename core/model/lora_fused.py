"""A shorter forward for peft's LoRA Linear layers: the LoRA up-projection, its scale and the
residual add in one GEMM (`addmm`), with none of peft's per-call bookkeeping.

Why: peft computes `result + lora_B(lora_A(x)) * scaling`, i.e. after the rank-r product two more
passes over the whole (tokens, out) output, a `mul` and an `add`, plus both again in backward, and
a dozen Python checks per call. On the CPU bench that was the largest elementwise cost of a step
(`aten::mul` was the top op by time). `addmm(result, h, B^T, alpha=scaling)` lets the GEMM
accumulate into the base output; its backward scales only the rank-r side. The base layer is still
called as the owner's module (`base_layer(x)`), so quanto weights and ComfyUI's weight casting
behave as before. Any case peft handles that this does not (adapters disabled, merged, dropout,
variants, several adapters, an input in another dtype outside autocast) goes to peft's own forward.
"""

import types

import torch
from torch import Tensor, nn


def install(layer: nn.Module, adapter: str) -> None:
    """Give the peft LoRA `layer` the fused forward for its only adapter `adapter`."""
    peft_forward = layer.forward

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        if args or kwargs or not _plain(self, adapter, x):
            return peft_forward(x, *args, **kwargs)
        result = self.base_layer(x)
        down, up = self.lora_A[adapter].weight, self.lora_B[adapter].weight
        flat = torch.addmm(result.reshape(-1, result.shape[-1]), x.reshape(-1, x.shape[-1]) @ down.t(), up.t(),
                           alpha=self.scaling[adapter])
        return flat.view(result.shape)

    layer.forward = types.MethodType(forward, layer)


def _plain(layer: nn.Module, adapter: str, x: Tensor) -> bool:
    """True where the fused forward computes exactly what peft's would."""
    if layer.disable_adapters or layer.merged or layer.active_adapters != [adapter] or layer.lora_variant:
        return False
    if not isinstance(layer.lora_dropout[adapter], nn.Identity):
        return False
    same_dtype = x.dtype == layer.lora_A[adapter].weight.dtype
    return same_dtype or (not layer.cast_input_dtype_enabled and torch.is_autocast_enabled(x.device.type))
