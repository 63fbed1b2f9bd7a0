"""Write a Flux.1-dev diffusion-model file that ComfyUI's stock `UNETLoader` detects as Flux.

Real Flux weights cannot be downloaded here, and ComfyUI's detection reads the widths off the
tensors (e.g. heads = hidden / 128), so the tiny test models are not detectable. This file has the
real widths (hidden 3072, 24 heads, T5 context 4096, CLIP pooled 768, guidance embedding) but only
ONE double and ONE single block: about 0.56 B parameters, 1.1 GB in bf16, random seeded weights.
It is generated on demand into `.cache/` (git-ignored) and reused; it is never committed.

    .venv-0.33.0/bin/python scripts/make_stock_flux_checkpoint.py [--out PATH] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = REPO_ROOT / ".cache" / "stock_flux1_tiny_depth.safetensors"
FORMAT = "fluxlab-stock-flux1-tiny-depth-v1"  # bump when the layout or the weight recipe changes

# ComfyUI's Flux.1-dev unet config (comfy/model_detection.py for BFL keys) with depth 1 + 1.
STOCK_FLUX1_CONFIG = dict(
    image_model="flux", in_channels=16, out_channels=16, patch_size=2, hidden_size=3072, num_heads=24,
    mlp_ratio=4.0, depth=1, depth_single_blocks=1, context_in_dim=4096, vec_in_dim=768,
    axes_dim=[16, 56, 56], theta=10000, qkv_bias=True, guidance_embed=True, txt_ids_dims=[],
)


def ensure_stock_flux1_checkpoint(path: Path = DEFAULT_PATH, seed: int = 0) -> Path:
    """The checkpoint at `path`, written first if it is missing or was made by another recipe/seed."""
    path = Path(path)
    if _existing_metadata(path) != _metadata(seed):
        write_stock_flux1_checkpoint(path, seed)
    return path


def write_stock_flux1_checkpoint(path: Path, seed: int = 0) -> Path:
    """Generate the weights (key layout taken from ComfyUI's own Flux class) and save them
    atomically: a crash never leaves a half-written file under the final name."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in _flux_parameter_shapes().items():
        if len(shape) >= 2:
            values = torch.randn(shape, generator=generator) / shape[1] ** 0.5
        elif name.endswith("scale"):  # RMSNorm gains
            values = torch.ones(shape)
        else:
            values = 0.02 * torch.randn(shape, generator=generator)
        tensors[name] = values.to(torch.bfloat16)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".partial-{os.getpid()}")
    save_file(tensors, str(partial), metadata=_metadata(seed))
    os.replace(partial, path)
    return path


def _flux_parameter_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter names (as BFL's released files spell them) and shapes of ComfyUI's Flux at
    STOCK_FLUX1_CONFIG, built on the meta device (no memory, no init). Hosts since 0.14 name the
    RMSNorm gains `weight` and map the files' `scale` onto them when loading."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bench._pack import register_pack
    from tests.comfy_host import import_comfy

    register_pack()
    import_comfy()
    import comfy.ldm.flux.model
    import comfy.ops

    from flux_lora_lab.nodes._comfy.host import flux_params

    model = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, device="meta", **flux_params(STOCK_FLUX1_CONFIG))
    return {_bfl_name(name): tuple(param.shape) for name, param in model.state_dict().items()}


def _bfl_name(name: str) -> str:
    return name.removesuffix(".weight") + ".scale" if name.endswith(("query_norm.weight", "key_norm.weight")) else name


def _metadata(seed: int) -> dict[str, str]:
    return {"fluxlab_format": FORMAT, "fluxlab_seed": str(seed)}


def _existing_metadata(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata()
    except (SafetensorError, OSError) as exc:  # a truncated or foreign file: regenerate it, but say why
        print(f"[stock-flux] {path} unreadable ({exc}); regenerating", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(ensure_stock_flux1_checkpoint(args.out, args.seed))


if __name__ == "__main__":
    main()
