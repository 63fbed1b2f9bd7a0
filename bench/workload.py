"""The one workload both trainers are timed on: a small Flux.1-dev built from ComfyUI's own classes,
a fixed pool of latents + conditioning, and the settings both sides share.

Why a bigger model than the test one (hidden 64): at hidden 64 a step is dominated by Python and
dispatch overhead, so the ratio would measure interpreters, not training. Hidden 256 with 2 double +
4 single blocks and 32x32 latents (256 px, 256 image tokens + 64 text tokens) keeps a step in the
tens of milliseconds on one CPU core, where the matmuls dominate, while `make bench` stays short.
The model is built exactly as the tests build theirs (`nodes._comfy.tiny_models`), only the config differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from tests.comfy_host import import_comfy


@dataclass(frozen=True)
class Workload:
    """Shape and training settings shared by the native node and our engine (JSON-able)."""

    hidden: int = 256
    heads: int = 4
    double_blocks: int = 2
    single_blocks: int = 4
    context_dim: int = 64
    pooled_dim: int = 32
    latent_size: int = 32  # latent pixels per side; 32 = a 256 px image (VAE /8), 16x16 = 256 tokens
    text_tokens: int = 64
    items: int = 8  # images (latent + prompt) in the data pool
    batch_size: int = 1
    rank: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01  # torch AdamW's default, which the native node uses
    precision: str = "fp32"  # "fp32" or "bf16" (native training_dtype / our mixed_precision)
    seed: int = 0
    axes_dim: tuple = ()  # RoPE axes; empty = derived from the head dim (bench/gpu.py sets Flux.1-dev's)

    def flux_config(self) -> dict:
        """A Flux.1-dev unet config (ComfyUI detects it as Flux, guidance embedding on)."""
        head_dim = self.hidden // self.heads
        if head_dim * self.heads != self.hidden or head_dim % 4:
            raise ValueError(f"hidden {self.hidden} / heads {self.heads} must give a head dim that is a multiple of 4")
        first = head_dim // 4  # real Flux: head 128 -> axes (16, 56, 56); keep that split shape
        axes = list(self.axes_dim) or [first, (head_dim - first) // 2, head_dim - first - (head_dim - first) // 2]
        return dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=self.pooled_dim,
                    context_in_dim=self.context_dim, hidden_size=self.hidden, mlp_ratio=4.0,
                    num_heads=self.heads, depth=self.double_blocks, depth_single_blocks=self.single_blocks,
                    axes_dim=axes, theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[])

    @property
    def base_dtype(self) -> torch.dtype:
        """How every peer stores the frozen base: bf16 in the bf16 rows, as Flux checkpoints are stored
        and as diffusers' recipe casts it (`transformer.to(weight_dtype)`); fp32 in the fp32 rows."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def image_tokens(self) -> int:
        return (self.latent_size // 2) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def bench_spec(workload: Workload):
    """A TinyFluxSpec whose config is the workload's, so the tests' own builders make the model."""
    from flux_lora_lab.nodes._comfy.host import flux_params
    from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec

    config = flux_params(workload.flux_config())

    @dataclass(frozen=True)
    class BenchFluxSpec(TinyFluxSpec):
        def config(self) -> dict:
            return dict(config)

    return BenchFluxSpec("flux1-dev", seed=workload.seed, dtype=workload.base_dtype)


def build_patcher(workload: Workload):
    """ComfyUI's MODEL (ModelPatcher around comfy's Flux model), seeded, weights in `base_dtype`, on CPU."""
    import_comfy()
    from flux_lora_lab.nodes._comfy.tiny_models import build_tiny_model_patcher

    return build_tiny_model_patcher(bench_spec(workload))


@dataclass
class Pool:
    """The data both trainers see: `items` latents (N, 16, S, S) with one prompt each."""

    latents: torch.Tensor
    context: torch.Tensor  # (N, T, context_dim)
    pooled: torch.Tensor  # (N, pooled_dim)


def make_pool(workload: Workload) -> Pool:
    g = torch.Generator().manual_seed(1234)
    n, s = workload.items, workload.latent_size
    return Pool(torch.randn(n, 16, s, s, generator=g),
                torch.randn(n, workload.text_tokens, workload.context_dim, generator=g),
                torch.randn(n, workload.pooled_dim, generator=g))
