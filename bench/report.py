"""docs/benchmarks.md from bench/results.json (and bench/gpu_results.json when a GPU run made one).

The whole page is generated, so the numbers, the method and the command can never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

from .flops import FluxShape, flux1_dev, step_flops

GPU_RESULTS = Path(__file__).resolve().parent / "gpu_results.json"
ROWS = (("native+ckpt", "ComfyUI TrainLoraNode, gradient checkpointing"),
        ("native", "ComfyUI TrainLoraNode, no checkpointing"),
        ("diffusers+ckpt", "diffusers + peft recipe, gradient checkpointing"),
        ("diffusers", "diffusers + peft recipe, no checkpointing"),
        ("ours+ckpt", "Flux LoRA Lab, checkpointing every block"),
        ("ours", "Flux LoRA Lab, no checkpointing"),
        ("ours+auto", "Flux LoRA Lab, checkpoint interval auto (the default)"),
        ("ours+compile", "Flux LoRA Lab, no checkpointing, train.compile on (not equal settings)"))
TARGETS = {("checkpointed", "native"): {"fp32": 1.5, "bf16": 1.5}, ("no_checkpointing", "native"): {"fp32": 1.5, "bf16": 1.5},
           ("checkpointed", "diffusers"): {"fp32": 1.0, "bf16": 1.2}, ("no_checkpointing", "diffusers"): {"fp32": 1.0, "bf16": 1.2}}
"""Issue 14's targets at equal settings (speed-up of ours over the peer), by precision."""
FLOOR_TARGET = 0.85


def _t(x: float) -> str:
    return f"{x / 1e12:,.1f}"


def workload_shape(w: dict) -> FluxShape:
    return FluxShape(hidden=w["hidden"], double_blocks=w["double_blocks"], single_blocks=w["single_blocks"],
                     context_dim=w["context_dim"], pooled_dim=w["pooled_dim"],
                     image_tokens=(w["latent_size"] // 2) ** 2, text_tokens=w["text_tokens"], batch=w["batch_size"])


def _ratio(r: dict | None) -> str:
    return f"**{r['pooled']:.2f}x** (p10 {r['p10']:.2f}x, rounds {r['min']:.2f}-{r['max']:.2f})" if r else "n/a"


def summary(results: dict) -> list[str]:
    """The equal-settings ratios against the issue's targets, the auto configuration, the floor."""
    out = ["| precision | checkpointing (equal) | vs native | vs diffusers + peft | ours: fraction of kernel floor |",
           "|---|---|---|---|---|"]
    words = {"checkpointed": "every block, all peers", "no_checkpointing": "none (native cannot)"}
    for precision, block in results["precisions"].items():
        fractions = block.get("fraction_of_floor", {})
        for mode, pair in block["ratios"]["equal_settings"].items():
            cells = []
            for peer in ("native", "diffusers"):
                r = pair.get(f"ratio_vs_{peer}")
                target = TARGETS[mode, peer][precision]
                cells.append(f"{_ratio(r)} {'meets' if r['pooled'] >= target - 1e-9 else 'misses'} {target}x" if r else "n/a")
            ours = "ours+ckpt" if mode == "checkpointed" else "ours"
            fraction = fractions.get(ours)
            floor = (f"{fraction:.0%} ({'meets' if fraction >= FLOOR_TARGET else 'misses'} {FLOOR_TARGET:.0%})"
                     if fraction is not None else "n/a")
            out.append(f"| {precision} | {words[mode]} | {cells[0]} | {cells[1]} | {floor} |")
    out.append("")
    for precision, block in results["precisions"].items():
        auto, config = block["ratios"]["auto"], block["configs"].get("ours+auto", {})
        if not config.get("ok"):
            continue
        against = "; ".join(f"{_ratio(r)} {r['peer']}" for r in auto.values() if r)
        out.append(f"- {precision}, auto (not equal settings: what the default gets here): {config.get('plan_reason')}. "
                   f"Against the peers: {against}.")
    for precision, block in results["precisions"].items():
        compiled, config = block["ratios"].get("compiled", {}), block["configs"].get("ours+compile", {})
        if not config.get("ok"):
            continue
        against = "; ".join(f"{_ratio(r)} {r['peer']}" for r in compiled.values() if r)
        out.append(f"- {precision}, train.compile on, no checkpointing (not equal settings: no peer compiles): "
                   f"first step incl. the compile {', '.join(f'{s:.0f}' for s in config.get('first_step_s', []))} s. "
                   f"Against: {against}.")
    return out


def floor_lines(results: dict) -> list[str]:
    out = ["### Kernel floor of this machine (bench/floor.py)", "",
           "| precision | floor s/step, no checkpointing | with checkpointing | GEMM GFLOP/s | GEMM share of the floor |",
           "|---|---|---|---|---|"]
    for precision, block in results["precisions"].items():
        f = block.get("floor")
        if not f:
            continue
        plain, ck = f["plain"], f["checkpointed"]
        out.append(f"| {precision} | {plain['floor_s']:.4f} | {ck['floor_s']:.4f} | {plain['gemm_gflops_per_s']:.0f} | "
                   f"{plain['gemm_s'] / plain['floor_s']:.0%} |")
    out += ["", "Fraction of floor = floor s/step (same checkpointing) / measured s/step: "
            + "; ".join(f"{p}: " + ", ".join(f"{k} {v:.0%}" for k, v in b.get("fraction_of_floor", {}).items())
                        for p, b in results["precisions"].items()), ""]
    return out


def cpu_section(results: dict) -> list[str]:
    m = results["machine"]
    lines = ["## CPU: ours against ComfyUI's native `TrainLoraNode` and the diffusers + peft recipe (same shapes, data and settings)", "",
             f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (shared with other jobs), torch {m['torch']}, "
             f"Python {m['python']}, `torch.set_num_threads({m['threads']})` in every run. "
             f"Measured {results['date_utc']}; the whole run took {results['duration_s']:.0f} s.", "",
             f"Command: `{results['command']}`", ""]
    lines += summary(results) + [""] + floor_lines(results)
    for precision, block in results["precisions"].items():
        w, configs = block["workload"], block["configs"]
        flops = step_flops(workload_shape(w), rank=w["rank"], train_modulation=True)
        lines += [f"### {precision}" + (" (bf16 autocast; native `training_dtype=bf16`)" if precision == "bf16"
                                        else " (native `training_dtype=fp32`, ours `mixed_precision=no`)"), "",
                  "| configuration | steps/s (median) | CPU s/step median [p25-p75] | per-round medians (s) | "
                  "fraction of floor | peak RSS while training (MB) | peak - RSS before (MB) | trained params (LoRA + other) |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, label in ROWS:
            c = configs.get(key)
            if c is None:
                continue
            if not c["ok"]:
                lines.append(f"| {label} | fails | `{c['error'][:140]}` | | | | | |")
                continue
            fraction = block.get("fraction_of_floor", {}).get(key)
            vs = f"{fraction:.0%}" if fraction is not None else ""
            rounds = ", ".join(f"{x:.3f}" for x in c["round_median_step_s"])
            lines.append(f"| {label} | {c['steps_per_s']:.2f} | {c['median_step_s']:.3f} [{c['p25_step_s']:.3f}-"
                         f"{c['p75_step_s']:.3f}] | {rounds} | {vs} | {c['peak_train_rss_mb']:.0f} | "
                         f"{c['peak_over_base_mb']:.0f} | {c['lora_params']:,} + {c['bias_and_other_params']:,} |")
        ours = configs.get("ours", {})
        if ours.get("ok"):
            gflops = flops["model_flops_per_step"] / ours["median_step_s"] / 1e9
            lines += ["", f"Model: Flux.1-dev layout from ComfyUI's `Flux` class, hidden {w['hidden']}, {w['heads']} heads, "
                      f"{w['double_blocks']} double + {w['single_blocks']} single blocks, {w['latent_size']}x{w['latent_size']} "
                      f"latents ({w['latent_size'] * 8} px, {(w['latent_size'] // 2) ** 2} image tokens) + {w['text_tokens']} "
                      f"text tokens, batch {w['batch_size']}, rank {w['rank']}, AdamW lr {w['learning_rate']}, "
                      f"{w['items']} images. One step is {flops['model_flops_per_step'] / 1e9:.2f} GFLOP (bench/flops.py), "
                      f"so ours without checkpointing runs at {gflops:.1f} GFLOP/s."]
        lines.append("")
    return lines


METHOD = """## Method (CPU)

- Native and ours get the same MODEL: ComfyUI's Flux model built with `nodes/_comfy/tiny_models.py`'s
  builders from a bench config (bench/workload.py), seeded. diffusers gets `FluxTransformer2DModel`
  with the same shape (bench/diffusers_peer.py). All three see the same pool of latents, prompts
  (context + pooled) and guidance 1.0; batch 1; rank 16; AdamW with torch defaults except lr;
  MSE on uniformly drawn noise levels; no clipping, EMA, DOP, checkpoints or previews.
- Base storage: fp32 in the fp32 rows; bf16 in the bf16 rows for every peer (Flux checkpoints are
  bf16, and diffusers' recipe casts the frozen base to its weight dtype). LoRA weights fp32 everywhere.
- Native: `TrainLoraNode.execute(...)` called in-process as a graph calls it, `algorithm=LoRA`,
  `lora_dtype=fp32`. diffusers: the inner step of `train_dreambooth_lora_flux.py` (bench/diffusers_peer.py
  says what is the recipe's and what is set equal). Ours: `core.train.trainer.train` over
  `FluxTrainingAdapter.adopt(patcher.model.diffusion_model)`; "auto" runs the interval that
  `core/train/memory_plan.choose` picks for the memory available on this machine.
- Clock: process CPU time (`time.process_time`), so other jobs on the shared machine do not add to a
  step; still, they share caches and memory bandwidth, so the spread is reported. Stamps: the native
  node's loss callback (wrapped, once per step after backward), our trainer's Step event (once per
  step after the update), the end of diffusers' loop body; the interval between two is one whole
  step. The first intervals of each run are dropped (warm-up); the rest of all rounds are pooled.
  A ratio is the peer's median s/step over ours; "p10" the same ratio of the 10th-percentile step
  times; "rounds" the range of the per-round ratios (runs next to each other in time). The load
  average before each run is in bench/results.json, with every timed step.
- Each configuration and round is a fresh subprocess; the order of the configurations rotates from
  round to round. Memory is the process's RSS high-water mark (`VmHWM`), reset
  (`/proc/self/clear_refs`) after the model and data are built: "peak RSS" includes torch, ComfyUI
  and the model; "peak - RSS before" is what training added.
- Layers trained. Native: a LoRA (alpha 1) on every linear of the diffusion model (all block
  linears including modulations, and img_in, txt_in, the time / vector / guidance embedders and the
  final layer: the 10 linears outside the blocks) plus a full trainable delta on every bias. Ours:
  preset `all` with `train_modulation` = a LoRA on every linear inside the double and single blocks,
  no bias deltas (alpha 1 too; the scale does not change the cost). diffusers: a LoRA on every linear
  inside the blocks too (its split q / k / v and proj_mlp give it a few more LoRA parameters). The
  parameter counts are in the tables; the extra native layers are outside the blocks and see each token once.
- Kernel floor (bench/floor.py): every matrix product and attention call a step must make (LoRA on a
  frozen base; checkpointing adds the blocks' forward once more), each shape timed alone in the
  compute dtype on this machine, summed. "Fraction of floor" is that sum over the measured step.
- ComfyUI 0.3.75's node fails on a single batched LATENT (`multi_res` is only assigned on its
  list-input path, UnboundLocalError), so the latents are given as a list of one-image LATENTs.
  Without checkpointing it fails in backward (ComfyUI's blocks add residuals in place), which is
  why the no-checkpointing pair has no native side.
- Not compared: batch > 1. The native node hands ComfyUI's sampler one conditioning entry per
  selected image, and `calc_cond_batch` runs every entry against the whole latent batch and
  averages the outputs: with `batch_size=2` its diffusion model runs on 4 samples per step
  (checked by recording the input shapes: (4, 16, 32, 32) per forward), and each latent is trained
  against the mean of its prediction under both prompts. Its cost grows with batch squared, so a
  ratio there would measure that, not the step.
- Threads: 1. Several jobs share this 2-core machine; with 2 threads each, the runs oversubscribed
  the cores and steps took 3-10x longer with a spread larger than the differences measured.
"""


def gpu_section() -> list[str]:
    lines = ["## GPU: full-size Flux.1-dev shape", ""]
    if GPU_RESULTS.is_file():
        data = json.loads(GPU_RESULTS.read_text())
        lines += [f"Device: {data['device']}, torch {data['torch']}, bf16 peak taken as {data['peak_tflops']:.0f} TFLOPS. "
                  f"Command: `{data['command']}`", "",
                  "| trainer | base | resolution | checkpointing | blocks swapped | s/step | peak GPU memory (GiB) | planned (GiB) | "
                  "model TFLOP/step | fraction of bf16 peak |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in data["runs"]:
            trainer = r.get("side", "ours") + (", train.compile on" if r.get("compile") else "")
            head = (f"| {trainer} | {r['quantize']} | {r['px']}² | {'on' if r['checkpointing'] else 'off'} | "
                    f"{r.get('swap', 0)} |")
            if r.get("ok"):
                planned = f"{r['planned_gib']:.1f}" if r.get("planned_gib") is not None else ""
                lines.append(f"{head} {r['s_per_step']:.3f} | {r['peak_gib']:.1f} | {planned} | {r['model_tflop']:.1f} | {r['mfu']:.1%} |")
            else:
                lines.append(f"{head} {r['error'][:80]} | | | | |")
    else:
        lines += ["**Not measured in this session**: no GPU machine was lent to this task. `bench/gpu.py` is the "
                  "benchmark that would run there (`.venv-0.33.0/bin/python -m bench.gpu` on a CUDA machine): ComfyUI's `Flux` "
                  "class at Flux.1-dev shape (hidden 3072, 24 heads, 19 double + 38 single blocks, T5 4096 / CLIP 768 "
                  "conditioning, guidance embedding) with random bf16 weights on the GPU, our engine, base bf16 shared, "
                  "fp8-stored, qint8 and qint4, 512² and 1024², rank 16 (`all` preset), batch 1, with and without "
                  "checkpointing, and block swap (20 blocks); it records s/step, peak GPU memory "
                  "(`torch.cuda.max_memory_allocated` / reserved) beside the memory plan's estimate, and the fraction "
                  "of the card's bf16 dense matrix rate, writes bench/gpu_results.json, and this page then shows its "
                  "table. Without CUDA it says so and exits 0; `--dry-run` checks every configuration on a tiny CPU "
                  "model (a test runs it)."]
    lines += ["", "### FLOPs per training step (bench/flops.py)", "",
              "Matmul FLOPs, 1 multiply-add = 2 FLOPs, h = 3072, mlp 4h, 57 blocks (19 double + 38 single), "
              "L = image + text tokens, LoRA rank r = 16 on the `all` preset (every block linear but the modulations):", "",
              "- one block's forward: `2 * (12 h² L + 2 h L²)` (linears: double-block streams and single blocks both "
              "cost 12 h² per token; joint attention QKᵀ and PV: h L² each); embedders, modulations (one vector per "
              "sample) and the final layer are counted too but are < 0.1 %;",
              "- a LoRA of rank r on a linear in -> out: `2 r (in + out)` per token forward;",
              "- forward `F = F_lin + F_attn + F_emb + F_lora`;",
              "- backward with a frozen base: input gradients of the block linears (`dX = dY W`, = `F_lin`), no "
              "weight gradients for the base, attention backward `2 F_attn` (dQ, dK, dP, dV), LoRA input + weight "
              "gradients `2 F_lora`: `B = F_lin + 2 F_attn + 2 F_lora`;",
              "- model FLOPs per step `F + B ≈ 2 F_lin + 3 F_attn + 3 F_lora` (used for the fraction of peak);",
              "- with gradient checkpointing the blocks' forward runs once more in backward: hardware FLOPs "
              "`F + B + (F_lin + F_attn + F_lora)`.", "",
              "| resolution | image + text tokens | F_lin | F_attn | F_lora | forward | backward | model FLOPs/step | + recompute (checkpointed) | time at 100 % of 989 TFLOPS (H100 SXM bf16 dense) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for px in (512, 1024):
        s = flux1_dev(px)
        f = step_flops(s, rank=16)
        lines.append(f"| {px}² | {s.image_tokens} + {s.text_tokens} | {_t(f['block_linear_fwd'])} T | {_t(f['attention_fwd'])} T | "
                     f"{_t(f['lora_fwd'])} T | {_t(f['forward'])} T | {_t(f['backward'])} T | **{_t(f['model_flops_per_step'])} T** | "
                     f"{_t(f['hardware_flops_per_step_checkpointed'])} T | {f['model_flops_per_step'] / 989e12 * 1000:.0f} ms |")
    lines.append("")
    for px in (512, 1024):
        s = flux1_dev(px)
        h, L = s.hidden, s.tokens
        lin, att = 12 * h * h * L, 2 * h * L * L
        lines.append(f"- {px}²: L = {L}: per block 2 x (12 x {h}² x {L} + 2 x {h} x {L}²) = 2 x ({lin:.4g} + {att:.4g}) "
                     f"= {2 * (lin + att):.4g} FLOPs; x 57 blocks = {57 * 2 * (lin + att):.4g} forward in the blocks.")
    lines += ["", "(T = 10¹² FLOPs. Flash-attention kernels recompute QKᵀ in their backward; that work, like "
              "checkpointing's recompute, is not counted in model FLOPs.)", ""]
    return lines


def write_report(results: dict, path: Path) -> None:
    lines = ["# Benchmarks", "",
             "Speed and memory are measured here, side by side and as ratios in one run, never by timed tests. "
             "Regenerate everything on this page with `make bench` (bench/run.py); the raw numbers are in "
             "bench/results.json. Targets (issue 14), at equal settings on this CPU: >= 1.5x the native node (fp32 and bf16), "
             ">= 1.2x diffusers + peft in bf16 and >= 1.0x in fp32, >= 85 % of the machine's kernel floor.", ""]
    lines += cpu_section(results)
    lines += METHOD.splitlines() + [""]
    lines += gpu_section()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
