"""Matmul FLOPs of one Flux.1 LoRA training step, counted layer by layer (1 multiply-add = 2 FLOPs).

Why count and not measure: the fraction of a GPU's bf16 matrix rate a step reaches needs the work
the step must do, independent of how the kernels do it. Elementwise work (norms, RoPE, softmax,
modulation, GELU) is left out: it is memory-bound and well under 1 % of the matmul FLOPs at 512 px.

Per block, with L = image + text tokens and h the hidden size (mlp ratio m = 4 in Flux.1):
  double block: per token of each stream qkv h*3h + proj h*h + mlp m*h*h + m*h*h = (4 + 2m) h^2 MACs
  single block: linear1 h*(3h + m*h) + linear2 (h + m*h)*h                      = (4 + 2m) h^2 MACs
  joint attention over all L tokens: QK^T and PV, L^2 * h MACs each             = 2 L^2 h  MACs
so a block's forward is 2 * (12 h^2 L + 2 h L^2) FLOPs; the modulation linears see one vector per
sample (negligible) and the embedders / final layer see tokens once (counted, small).

A LoRA step with a frozen base:
  forward       F = F_linear + F_attention + F_lora_fwd
  backward      input gradients of every block linear (= F_linear of the blocks: dX = dY W),
                no weight gradients for the frozen base, attention backward = 2 x its forward
                (dQ, dK from dS; dP, dV from dO), and the LoRA: input and weight gradients of
                both factors = 2 x its forward.
  checkpointing recomputes the blocks' forward once more during backward (hardware FLOPs; the
                "model FLOPs" used for the utilisation fraction do not count the recompute).
A LoRA of rank r on a linear in->out costs r*(in + out) MACs per token forward.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FluxShape:
    """The dimensions that set a Flux.1 step's FLOPs (defaults: Flux.1-dev)."""

    hidden: int = 3072
    mlp_ratio: float = 4.0
    double_blocks: int = 19
    single_blocks: int = 38
    patch_channels: int = 64  # 16 latent channels x 2 x 2 patch
    context_dim: int = 4096  # T5-XXL
    pooled_dim: int = 768  # CLIP-L pooled
    image_tokens: int = 1024
    text_tokens: int = 512
    batch: int = 1

    @property
    def tokens(self) -> int:
        return self.image_tokens + self.text_tokens


def lora_linears(s: FluxShape, train_modulation: bool) -> list[tuple[int, int, int]]:
    """(in, out, tokens) of every linear the `all` preset targets (modulations optional)."""
    h, mh = s.hidden, int(s.mlp_ratio * s.hidden)
    out = []
    for tokens in (s.image_tokens, s.text_tokens):  # each double block has an image and a text stream
        out += [(h, 3 * h, tokens), (h, h, tokens), (h, mh, tokens), (mh, h, tokens)] * s.double_blocks
        if train_modulation:
            out += [(h, 6 * h, 1)] * s.double_blocks
    out += [(h, 3 * h + mh, s.tokens), (h + mh, h, s.tokens)] * s.single_blocks
    if train_modulation:
        out += [(h, 3 * h, 1)] * s.single_blocks
    return out


def step_flops(s: FluxShape, rank: int = 16, train_modulation: bool = False) -> dict:
    """FLOPs of one training step (batch `s.batch`), by part; see the module docstring."""
    h, mh, L, b = s.hidden, int(s.mlp_ratio * s.hidden), s.tokens, s.batch
    blocks = s.double_blocks + s.single_blocks
    block_linear = 2 * b * blocks * (4 * h * h + 2 * h * mh) * L
    attention = 2 * b * blocks * 2 * h * L * L
    modulation = 2 * b * (s.double_blocks * 2 * h * 6 * h + s.single_blocks * h * 3 * h + h * 2 * h)
    embed = 2 * b * (s.image_tokens * s.patch_channels * h + s.text_tokens * s.context_dim * h
                     + (256 * h + h * h) * 2 + s.pooled_dim * h + h * h + s.image_tokens * h * s.patch_channels)
    lora_fwd = 2 * b * rank * sum((i + o) * t for i, o, t in lora_linears(s, train_modulation))
    forward = block_linear + attention + modulation + embed + lora_fwd
    backward = block_linear + 2 * attention + 2 * lora_fwd
    recompute = block_linear + attention + lora_fwd  # the blocks' forward, once more
    return {
        "block_linear_fwd": block_linear, "attention_fwd": attention, "embed_and_modulation_fwd": embed + modulation,
        "lora_fwd": lora_fwd, "forward": forward, "backward": backward, "recompute": recompute,
        "model_flops_per_step": forward + backward,
        "hardware_flops_per_step_checkpointed": forward + backward + recompute,
    }


def flux1_dev(image_px: int, text_tokens: int = 512, batch: int = 1) -> FluxShape:
    """Flux.1-dev at a square resolution: /8 VAE, 2x2 patches -> (px / 16)^2 image tokens."""
    return FluxShape(image_tokens=(image_px // 16) ** 2, text_tokens=text_tokens, batch=batch)
