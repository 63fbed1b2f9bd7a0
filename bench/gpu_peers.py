"""The peers of bench/gpu.py on the same card: ComfyUI's native TrainLoraNode (bench/native.py) on a
ModelPatcher of the benchmark's shape, and the diffusers + peft recipe's step (bench/diffusers_peer.py),
at the same resolution and checkpointing as ours: base bf16, rank 16, bf16 autocast, batch 1, timed
in wall-clock seconds (each step ends on a `loss.item()`, which waits for the GPU)."""

from __future__ import annotations

import statistics
import time

from .gpu import DRY_RUN, FLUX1_DEV, TEXT_TOKENS, _import_comfy_gpu, fill


def native_patcher(device: str, dry_run: bool, disable_dynamic: bool = False):
    """ComfyUI's MODEL (its own Flux.1 model config, ModelPatcher) at the benchmark's shape, seeded
    random bf16 weights on `device`: what the native TrainLoraNode trains. Registered as its own
    `cached_patcher_init`, which ComfyUI 0.33.0's node calls for a private copy (`disable_dynamic`:
    this MODEL is never dynamic)."""
    import torch

    _import_comfy_gpu(cpu=device == "cpu")
    import comfy.model_detection
    import comfy.model_patcher

    from flux_lora_lab.nodes._comfy.host import flux_params

    model_config = comfy.model_detection.model_config_from_unet_config(flux_params(DRY_RUN if dry_run else FLUX1_DEV))
    model_config.set_inference_dtype(torch.bfloat16, None)
    model = model_config.get_model({}, "", device=device)
    fill(model.diffusion_model, device)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device(device), offload_device=torch.device("cpu"))
    patcher.cached_patcher_init = (native_patcher, (device, dry_run))
    return patcher


def peer_one(config: dict) -> dict:
    """One configuration of a peer (the native node or diffusers + peft, bench/native.py and
    bench/diffusers_peer.py) at the same shape, resolution and checkpointing: base bf16, rank 16,
    bf16 autocast, batch 1, wall-clock steps."""
    import torch

    from ._pack import register_pack
    from .flops import flux1_dev, step_flops
    from .workload import Pool, Workload

    register_pack()
    device, shape = config["device"], DRY_RUN if config.get("dry_run") else FLUX1_DEV
    workload = Workload(hidden=shape["hidden_size"], heads=shape["num_heads"], double_blocks=shape["depth"],
                        single_blocks=shape["depth_single_blocks"], context_dim=shape["context_in_dim"],
                        pooled_dim=shape["vec_in_dim"], latent_size=config["px"] // 8, text_tokens=TEXT_TOKENS,
                        items=4, precision="bf16", axes_dim=tuple(shape["axes_dim"]))
    g = torch.Generator().manual_seed(0)
    side = config["px"] // 8
    pool = Pool(torch.randn(4, 16, side, side, generator=g), torch.randn(4, TEXT_TOKENS, shape["context_in_dim"], generator=g),
                torch.randn(4, shape["vec_in_dim"], generator=g))
    steps = config["warmup"] + config["steps"] + 1
    cuda = device == "cuda"
    if config["side"] == "native":
        from .native import run_native

        patcher = native_patcher(device, bool(config.get("dry_run")))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            result = run_native(workload, pool, patcher, steps, config["checkpointing"], clock=time.perf_counter)
        except RuntimeError as err:  # without checkpointing ComfyUI's in-place residuals fail in backward
            if config["checkpointing"]:
                raise
            return dict(config, ok=False, expected_failure=True, error=str(err).splitlines()[0][:200])
    else:
        from .diffusers_peer import run_diffusers

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = run_diffusers(workload, pool, None, steps, config["checkpointing"], device=device, clock=time.perf_counter)
    stamps = result["stamps"]
    times = [b - a for a, b in zip(stamps, stamps[1:])][config["warmup"]:]
    s_per_step = statistics.median(times)
    flops = step_flops(flux1_dev(config["px"], TEXT_TOKENS), rank=16)["model_flops_per_step"]
    return dict(config, ok=True, s_per_step=s_per_step, min_s=min(times), max_s=max(times),
                peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
                reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if cuda else None, planned_gib=None,
                lora_params=result["lora_params"], bias_and_other_params=result["bias_and_other_params"],
                model_tflop=flops / 1e12, mfu=flops / s_per_step / (config["peak_tflops"] * 1e12))
