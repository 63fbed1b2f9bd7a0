"""Full-size Flux.1-dev-shaped GPU benchmark of our engine beside its peers; exits 0 with a message without CUDA.

ComfyUI's own `Flux` class at Flux.1-dev shape (hidden 3072, 24 heads, 19 double + 38 single
blocks, T5 4096 / CLIP-L 768 conditioning, guidance embedding), random bf16 weights drawn on the GPU
(no weights are downloaded), trained by `core.train.trainer.train` with a rank-16 LoRA on the `all`
preset, batch 1, bf16 autocast. Configurations, each in a fresh subprocess (clean CUDA context and
peak counters): base bf16 shared / fp8-stored (trained as stored) / qint8 / qint4, x 512 / 1024 px,
x checkpointing on / off, plus block swap (blocks_to_swap 20, checkpointing on); and at each
resolution and checkpointing, the peers on the same card (`--peers`): ComfyUI's native TrainLoraNode
(bench/native.py, on a ModelPatcher of the same shape; it fails without checkpointing, recorded) and
the diffusers + peft recipe's step (bench/diffusers_peer.py), base bf16, rank 16. For each: seconds
per step (median of the timed steps), peak GPU memory while training (`max_memory_allocated` and
`max_memory_reserved`, counters reset after the model is built), the memory plan's estimate beside
it (core/train/memory_plan.py), and the fraction of the card's dense bf16 matrix rate reached by the model
FLOPs of bench/flops.py. Writes bench/gpu_results.json and re-renders docs/benchmarks.md when
bench/results.json exists. `--dry-run` runs every configuration on a tiny model on the CPU for two
steps: it checks the script, measures nothing.

    FLUXLAB_HOST=0.33.0 .venv-0.33.0/bin/python -m bench.gpu [--steps 6] [--warmup 2] [--px 512,1024]
        [--quantize none,fp8,qint8,qint4] [--checkpointing 1,0] [--swap 0,20] [--peers native,diffusers]
        [--peak-tflops N] [--dry-run]

qint8 / qint4: the base is built in bf16 on the GPU, its block linears are quantized into the training
tree (core/model/quant.py), then the owner's bf16 block linears are dropped, so training holds quantized
blocks only, as it does after LoadFluxForTraining offloads ComfyUI's float copy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_MARK = "GPU_RESULT "
OUT = Path(__file__).resolve().parent / "gpu_results.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
FLUX1_DEV = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                 hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38,
                 axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[])
# Dense (no sparsity) bf16 tensor-core rates, TFLOPS, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.0))
TEXT_TOKENS = 512


def _import_comfy_gpu(cpu: bool = False):
    """ComfyUI on sys.path; CPU only for the dry run (the benchmark itself wants CUDA)."""
    from scripts.hosts import selected

    comfy_dir = selected().comfy_dir
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu


# A tiny stand-in (same code paths, seconds on a CPU) for `--dry-run`, which checks the script itself.
DRY_RUN = dict(FLUX1_DEV, hidden_size=256, num_heads=4, depth=2, depth_single_blocks=4, axes_dim=[16, 24, 24])


def build_owner(device: str, shape: dict):
    """ComfyUI's Flux at `shape` with seeded random bf16 weights, built on `device`."""
    import torch

    _import_comfy_gpu(cpu=device == "cpu")
    import comfy.ldm.flux.model
    import comfy.ops

    from flux_lora_lab.nodes._comfy.host import flux_params

    model = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, dtype=torch.bfloat16, device=device,
                                      **flux_params(shape))
    return fill(model, device)


def fill(model, device: str):
    """Seeded random weights, in place: matrices ~ N(0, 1/fan_in), norm gains 1, the rest N(0, 0.02)."""
    import torch

    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, param.shape[1] ** -0.5, generator=generator)
            elif name.endswith(("scale", "norm.weight")):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return model.eval().requires_grad_(False)


def _store_blocks_in_fp8(owner) -> None:
    """What ComfyUI's `weight_dtype fp8_e4m3fn` gives the block linears (the run then trains on them as stored)."""
    import torch

    for blocks in (owner.double_blocks, owner.single_blocks):
        for module in blocks.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight = torch.nn.Parameter(module.weight.detach().to(torch.float8_e4m3fn), requires_grad=False)


def one(config: dict) -> dict:
    """Train one configuration in this process; the measurements beside the memory plan's estimate."""
    import torch

    if config.get("side", "ours") != "ours":
        from .gpu_peers import peer_one

        return peer_one(config)

    from ._pack import register_pack
    from .flops import flux1_dev, step_flops
    from .ours import PoolData
    from .workload import Pool

    register_pack()
    from flux_lora_lab.core.model import lora, quant
    from flux_lora_lab.core.lora_settings import LoraSettings
    from flux_lora_lab.core.train import memory_plan
    from flux_lora_lab.core.model.adapter import FluxTrainingAdapter
    from flux_lora_lab.core.config import TrainConfig
    from flux_lora_lab.core.run.control import RunControl
    from flux_lora_lab.core.model.ownership import own_leaves
    from flux_lora_lab.core.run.rundir import RunDir
    from flux_lora_lab.core.train.trainer import TrainingJob, train

    device = config["device"]
    shape_config = DRY_RUN if config.get("dry_run") else FLUX1_DEV
    owner = build_owner(device, shape_config)
    mode = config["quantize"]
    if mode == "fp8":
        _store_blocks_in_fp8(owner)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=config["checkpointing"])
    shape = memory_plan.shape_of(adapter.module, "flux1", 4.0)
    names = lora.target_names(adapter.module, LoraSettings(rank=16, targets="all"))
    run = memory_plan.RunShape(quantization="none" if mode == "fp8" else mode, compute="bf16",
                               lora_params=memory_plan.lora_parameter_count(adapter.module, names, 16), optimizer="adamw",
                               ema=False, batch=1, tokens=(config["px"] // 16) ** 2 + TEXT_TOKENS,
                               checkpoint_every=1 if config["checkpointing"] else 0, blocks_to_swap=config["swap"])
    planned = memory_plan.plan(shape, run)
    if mode in ("qint8", "qint4"):
        quant.quantize_base(adapter.module, mode)
        for blocks in (owner.double_blocks, owner.single_blocks):
            for module in blocks.modules():
                if isinstance(module, torch.nn.Linear) and not quant.is_quantized(module):
                    module.to("meta")  # the training tree now holds the quantized copies
    own_leaves(adapter.module, owner, torch.device(device), copy=False)
    if device == "cuda":
        torch.cuda.empty_cache()
    g = torch.Generator().manual_seed(0)
    side = config["px"] // 8
    pool = Pool(torch.randn(4, 16, side, side, generator=g), torch.randn(4, TEXT_TOKENS, 4096, generator=g),
                torch.randn(4, 768, generator=g))
    steps = config["warmup"] + config["steps"] + 1
    cfg = TrainConfig.from_dict({
        "lora": {"rank": 16, "targets": "all"},
        "flow": {"timestep_sampling": "uniform", "loss_weighting": "uniform"},
        "train": {"steps": steps, "batch_size": 1, "mixed_precision": "bf16",
                  "gradient_checkpointing": config["checkpointing"], "blocks_to_swap": config["swap"],
                  "compile": "on" if config.get("compile") else "off"},
        "run": {"name": "gpu-bench", "save_every": 0, "sample_every": 0},
    })
    stamps: list[float] = []
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_gib = torch.cuda.memory_allocated() / 2**30 if cuda else 0.0
    with tempfile.TemporaryDirectory(prefix="fluxlab-gpu-") as folder:
        job = TrainingJob(cfg, adapter, PoolData(pool), RunDir(Path(folder) / "run"))
        start = time.perf_counter()
        train(job, RunControl(None), lambda e: stamps.append(time.perf_counter()) if e.kind == "step" else None)
    if cuda:
        torch.cuda.synchronize()
    times = [b - a for a, b in zip(stamps, stamps[1:])][config["warmup"]:]
    s_per_step = statistics.median(times)
    flops = step_flops(flux1_dev(config["px"], TEXT_TOKENS), rank=16)["model_flops_per_step"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return dict(config, ok=True, s_per_step=s_per_step, min_s=min(times), max_s=max(times),
                first_step_s=stamps[0] - start,  # with train.compile on: includes the compile
                peak_gib=peak, reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
                weights_gib=base_gib, planned_gib=planned.peak / 2**30,
                planned_parts_gib={k: v / 2**30 for k, v in planned.parts.items()},
                plan_error=None if peak is None else planned.peak / 2**30 / peak - 1,
                model_tflop=flops / 1e12, mfu=flops / s_per_step / (config["peak_tflops"] * 1e12))


def peak_tflops(name: str, override: float | None) -> float:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops with its dense bf16 rate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--px", default="512,1024")
    parser.add_argument("--quantize", default="none,fp8,qint8,qint4", help="none = bf16 shared; fp8 = fp8-stored, trained as stored")
    parser.add_argument("--checkpointing", default="1,0")
    parser.add_argument("--swap", default="0,20", help="blocks_to_swap values (run with checkpointing on)")
    parser.add_argument("--peers", default="native,diffusers",
                        help="peers run beside ours (base bf16), at every --px and --checkpointing; empty = none")
    parser.add_argument("--compile", default="on", choices=("on", "off"),
                        help="on: also ours with train.compile on (bf16 shared, every --checkpointing; in a dry run "
                             "only the last, since each compiles afresh)")
    parser.add_argument("--dry-run", action="store_true", help="a tiny model on the CPU, 2 steps: checks the script")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration as JSON
    args = parser.parse_args(argv)

    import torch

    if args.one:
        try:
            result = one(json.loads(args.one))
        except torch.OutOfMemoryError as err:
            result = dict(json.loads(args.one), ok=False, error=f"out of memory: {str(err).splitlines()[0][:200]}")
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    if not torch.cuda.is_available() and not args.dry_run:
        print("bench.gpu: no CUDA device here; the full-size GPU benchmark was skipped (docs/benchmarks.md says so).")
        return 0
    name = torch.cuda.get_device_name() if not args.dry_run else "cpu (dry run)"
    peak = peak_tflops(name, args.peak_tflops) if not args.dry_run else 1.0
    runs = []
    swaps = [int(x) for x in args.swap.split(",")]
    common = dict(steps=2 if args.dry_run else args.steps, warmup=0 if args.dry_run else args.warmup,
                  peak_tflops=peak, device="cpu" if args.dry_run else "cuda", dry_run=args.dry_run)
    configs = []
    for px in (int(p) for p in args.px.split(",")):  # the peers and ours side by side, resolution by resolution
        for ckpt in (bool(int(c)) for c in args.checkpointing.split(",")):
            configs += [dict(common, side=peer, quantize="none", px=px, checkpointing=ckpt, swap=0)
                        for peer in filter(None, args.peers.split(","))]
        for quantize in args.quantize.split(","):
            for ckpt, swap in [(bool(int(c)), 0) for c in args.checkpointing.split(",")] + [(True, n) for n in swaps if n]:
                configs.append(dict(common, side="ours", quantize=quantize, px=px, checkpointing=ckpt,
                                    swap=swap if not args.dry_run else min(swap, 2)))
        if args.compile == "on":
            ckpts = [bool(int(c)) for c in args.checkpointing.split(",")]
            configs += [dict(common, side="ours", quantize="none", px=px, checkpointing=ckpt, swap=0, compile=True)
                        for ckpt in (ckpts[-1:] if args.dry_run else ckpts)]
    for config in configs:
        proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--one", json.dumps(config)], cwd=REPO_ROOT,
                              capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
        result = (json.loads(lines[-1][len(RESULT_MARK):]) if lines
                  else dict(config, ok=False, error=f"exit {proc.returncode}: {proc.stderr[-300:]}"))
        runs.append(result)
        print(json.dumps(result), flush=True)
    if args.dry_run:
        return 0 if all(r.get("ok") or r.get("expected_failure") for r in runs) else 1
    OUT.write_text(json.dumps({"device": name, "torch": torch.__version__, "peak_tflops": peak,
                               "command": ".venv-0.33.0/bin/python -m bench.gpu " + " ".join(argv or sys.argv[1:]),
                               "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs}, indent=1) + "\n")
    from .run import DOC, RESULTS
    from .report import write_report

    if RESULTS.is_file():
        write_report(json.loads(RESULTS.read_text()), DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
