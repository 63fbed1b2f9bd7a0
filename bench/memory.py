"""The memory plan (core/train/memory_plan.py) against measured memory, at Flux's full width on CPU.

A Flux.1-dev-shaped transformer of ComfyUI's own class (hidden 3072, 24 heads, T5/CLIP widths) with
one double and one single block, random bf16 weights; LoRA rank 16 on every linear; one image of
256, 512, 640 or 768 px (256 / 1024 / 1600 / 2304 image tokens) and 512 text tokens; bf16 autocast; two
optimizer steps, with and without gradient checkpointing. Each configuration runs in a fresh process that resets the RSS
high-water mark after the model is built, so the measured growth is what training adds (LoRA,
optimizer, activations, transients) and is compared with the plan's parts for the same (the base
weights are resident before the reset in both). Results: bench/memory_results.json, docs/benchmarks.md.

    FLUXLAB_HOST=0.33.0 .venv-0.33.0/bin/python -m bench.memory
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .worker import _reset_peak, _status_kb

OUT = Path(__file__).resolve().parent / "memory_results.json"
DOC = Path(__file__).resolve().parent.parent / "docs" / "memory.md"
MARK = "MEMORY_RESULT "
CONFIG = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
              hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=1,
              axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[])
SIDES, TEXT = (32, 64, 80, 96), 512  # latent sides (256 / 512 / 640 / 768 px), text tokens
FITTED = (32, 64, 96)
"""The rows BACKWARD_TRANSIENT and RUNTIME_BYTES were fitted on; 640 px is held out, a check."""
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "1"}
"""glibc hands every block over 64 KiB straight back to the system when freed: without it RSS keeps
what the allocator caches (the same run measured 877 to 1058 MiB), with it RSS follows the live
tensors, as a GPU's max_memory_allocated does."""


def one(checkpointing: bool, side: int) -> dict:
    import torch

    from ._pack import register_pack

    torch.set_num_threads(2)
    register_pack()
    from tests.comfy_host import import_comfy

    import_comfy()
    import comfy.ldm.flux.model
    import comfy.ops

    from flux_lora_lab.core.model import lora

    from flux_lora_lab.core.lora_settings import LoraSettings
    from flux_lora_lab.core.train import memory_plan
    from flux_lora_lab.core.model.adapter import FluxTrainingAdapter
    from flux_lora_lab.nodes._comfy.host import flux_params

    owner = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, dtype=torch.bfloat16, device="cpu",
                                      **flux_params(CONFIG)).requires_grad_(False)
    with torch.no_grad():
        for p in owner.parameters():
            p.normal_(0.0, 0.02)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=checkpointing)
    shape = memory_plan.shape_of(adapter.module, "flux1", 4.0)
    names = lora.target_names(adapter.module, LoraSettings(rank=16, targets="all"))
    run = memory_plan.RunShape(quantization="none", compute="bf16",
                               lora_params=memory_plan.lora_parameter_count(adapter.module, names, 16),
                               optimizer="adamw", ema=False, batch=1, tokens=(side // 2) ** 2 + TEXT,
                               checkpoint_every=1 if checkpointing else 0)
    planned = memory_plan.plan(shape, run).parts
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, side, side, generator=g)
    context = torch.randn(1, TEXT, 4096, generator=g, dtype=torch.bfloat16)
    pooled = torch.randn(1, 768, generator=g, dtype=torch.bfloat16)
    base_mb = (_status_kb("VmRSS") or 0) / 1024
    _reset_peak()
    lora.attach_lora(adapter.module, LoraSettings(rank=16, targets="all"))
    params = [p for _, p in lora.trainable_parameters(adapter.module)]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = adapter.predict(latents, torch.tensor([0.5]), context, pooled, torch.tensor([3.5]))
        out.float().square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    growth = (_status_kb("VmHWM") or 0) / 1024 - base_mb
    predicted = (planned["LoRA + optimizer"] + planned["activations"]) / 2**20
    return {"pixels": side * 8, "checkpointing": checkpointing, "base_rss_mb": round(base_mb), "measured_growth_mb": round(growth),
            "planned_mb": round(predicted), "planned_parts_mb": {k: round(v / 2**20) for k, v in planned.items()},
            "error": round(predicted / growth - 1, 3)}


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(MARK + json.dumps(one(sys.argv[2] == "1", int(sys.argv[3]))), flush=True)
        return 0
    results = []
    for side, checkpointing in ((s, c) for s in SIDES for c in (True, False)):
        proc = subprocess.run([sys.executable, "-m", "bench.memory", "--one", str(int(checkpointing)), str(side)],
                              capture_output=True, text=True, timeout=1200, cwd=Path(__file__).resolve().parent.parent,
                              env={**os.environ, **MALLOC_ENV})
        line = next((x for x in proc.stdout.splitlines() if x.startswith(MARK)), None)
        if line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[len(MARK):]))
        print(json.dumps(results[-1]), flush=True)
    from scripts.hosts import selected

    command = f"FLUXLAB_HOST={selected().name} .venv-{selected().name}/bin/python -m bench.memory"
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    OUT.write_text(json.dumps({"command": command, "date_utc": date, "results": results}, indent=1) + "\n")
    DOC.write_text(_report(results, command, date))
    return 0


def _report(results: list, command: str, date: str) -> str:
    rows = "\n".join(f"| {r['pixels']} px{'' if r['pixels'] // 8 in FITTED else ' (held out)'} | "
                     f"{'on' if r['checkpointing'] else 'off'} | {r['measured_growth_mb']} | "
                     f"{r['planned_mb']} | {r['error']:+.1%} |" for r in results)
    return f"""# The memory plan against measured memory

`core/train/memory_plan.py` predicts a run's memory before step 1 (LoadFluxForTraining shows it for a
rank-16 LoRA at 1024 px; TrainLoRA checks its real settings against the free memory of the training
device and refuses a run that will not fit, with the parts and what to change).

Measured on CPU (2 cores, no GPU lent): a full-width Flux.1-dev-shaped transformer (hidden 3072,
1 double + 1 single block, bf16 weights), LoRA rank 16 on every linear, bf16 autocast, AdamW, 512
text tokens, two optimizer steps, each configuration in a fresh process. "Measured" is the growth of
the RSS high-water mark over the resident model; "planned" is the plan's LoRA + optimizer +
activations. Each process runs with glibc told to return every block over 64 KiB to the system at
once (`MALLOC_MMAP_THRESHOLD_=65536`, no trimming threshold, one arena), so RSS follows the live
tensors, as a GPU's `max_memory_allocated` does; without that, RSS also held what glibc caches and
identical runs measured 877 to 1058 MiB. `BACKWARD_TRANSIENT` and `RUNTIME_BYTES` are the slope and
intercept of a straight-line fit of the 256, 512 and 768 px rows (the same slope fits both
checkpointing modes); the 640 px rows were not used for it.

| image | checkpointing | measured MiB | planned MiB | plan error |
|---|---|---|---|---|
{rows}

`{command}` ({date}). Nothing here ran on a GPU; the GPU caching allocator's high-water mark is for
the GPU script to measure.
"""


if __name__ == "__main__":
    sys.exit(main())
