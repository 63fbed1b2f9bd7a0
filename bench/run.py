"""`make bench`: our engine's training step against ComfyUI's native TrainLoraNode and the diffusers
+ peft recipe (bench/diffusers_peer.py), in one run, beside this machine's kernel floor (bench/floor.py).

For each precision, seven configurations: native with checkpointing (the only way it runs),
native without (recorded: it fails), diffusers with and without its gradient checkpointing, ours
with checkpointing on every block, without, and with the interval on auto (what the memory plan
picks here). Each configuration runs in its own fresh subprocess, in `rounds` rounds whose order
rotates, so slow drift of a shared machine falls on every configuration alike. Steps are timed in
process CPU time (other jobs on a shared machine take wall time, not this process's CPU time). Each
run trains `warmup + steps` steps; the first `warmup` step intervals are dropped, the rest are
pooled over rounds. Results go to bench/results.json and docs/benchmarks.md.

    .venv-0.33.0/bin/python -m bench.run [--rounds 3] [--steps 12] [--warmup 3] [--threads 1] [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.hosts import selected

from .report import write_report
from .worker import RESULT_MARK
from .workload import Workload

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results.json"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
CONFIGS = (("native", "1"), ("native", "0"), ("diffusers", "1"), ("diffusers", "0"), ("ours", "1"), ("ours", "0"),
           ("ours", "auto"), ("ours", "compile"))
"""(side, checkpointing): "1" every block, "0" none, "auto" the memory plan's interval, "compile" none
with `train.compile` on (regional torch.compile; not equal settings: no peer compiles)."""
EQUAL_SETTINGS = {"checkpointed": ("ours+ckpt", {"native": "native+ckpt", "diffusers": "diffusers+ckpt"}),
                  "no_checkpointing": ("ours", {"diffusers": "diffusers"})}
"""Pairs at equal settings (same checkpointing, dtype, rank, targets, tokens). The native node cannot
train without checkpointing, so that pair has no native side."""
AUTO_AGAINST = {"native_checkpointed": "native+ckpt", "diffusers_checkpointed": "diffusers+ckpt",
                "diffusers_no_checkpointing": "diffusers"}
COMPILED_AGAINST = {"diffusers_no_checkpointing": "diffusers", "ours_eager": "ours"}


def config_key(side: str, checkpointing: str) -> str:
    return side + {"1": "+ckpt", "0": "", "auto": "+auto", "compile": "+compile"}[checkpointing]


def run_worker(workload: Workload, side: str, checkpointing: str, steps: int, threads: int) -> dict:
    """One configuration in a fresh interpreter; its JSON result (or the reason it gave none)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "bench.worker", "--side", side, "--checkpointing", checkpointing,
           "--steps", str(steps), "--threads", str(threads), "--workload", json.dumps(workload.to_dict())]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
            result["load_before"] = load
            return result
    tail = (proc.stderr or proc.stdout)[-1500:]
    return {"side": side, "checkpointing": checkpointing, "ok": False, "error": f"worker exit {proc.returncode}", "traceback": tail}


def step_times(result: dict, warmup: int) -> list[float]:
    stamps = result.get("stamps") or []
    return [b - a for a, b in zip(stamps, stamps[1:])][warmup:]


def summarise(runs: list[dict], warmup: int) -> dict:
    """Pooled per-step times of all rounds of one configuration -> steps/s with spread and memory."""
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"ok": False, "error": runs[0].get("error", "no result")}
    times = sorted(t for r in ok for t in step_times(r, warmup))
    q = statistics.quantiles(times, n=4)
    p10 = statistics.quantiles(times, n=10)[0]
    per_round = [statistics.median(step_times(r, warmup)) for r in ok]
    first = ok[0]
    return {
        "ok": True, "steps_timed": len(times), "rounds": len(ok),
        "median_step_s": statistics.median(times), "mean_step_s": statistics.fmean(times),
        "p10_step_s": p10, "p25_step_s": q[0], "p75_step_s": q[2], "min_step_s": times[0], "max_step_s": times[-1],
        "steps_per_s": 1.0 / statistics.median(times),
        "round_median_step_s": per_round,
        "peak_train_rss_mb": max(r["peak_train_mb"] for r in ok),
        "peak_over_base_mb": max(r["peak_train_mb"] - r["base_mb"] for r in ok),
        "base_rss_mb": statistics.median(r["base_mb"] for r in ok),
        "trainable_params": first["trainable_params"], "lora_params": first["lora_params"],
        "bias_and_other_params": first["bias_and_other_params"], "lora_layers": first["lora_layers"],
        "first_loss": first["losses"][0] if first["losses"] else None,
        "load_average_before": [round(r["load_before"], 2) for r in ok],
        "step_times_by_round": [[round(t, 5) for t in step_times(r, warmup)] for r in ok],
        "checkpoint_every": first.get("checkpoint_every"), "plan_reason": first.get("plan_reason"),
        "first_step_s": [round(r["stamps"][0] - r["start"], 2) for r in ok if r.get("stamps") and "start" in r],
    }


def speedup(summary: dict, runs: dict, warmup: int, ours: str, peer: str) -> dict | None:
    """`ours` steps/s over `peer` steps/s: pooled medians, pooled 10th percentiles (the least
    load-disturbed steps: a shared machine only ever adds time), and per round (paired in time)."""
    a, b = summary.get(ours, {}), summary.get(peer, {})
    if not (a.get("ok") and b.get("ok")):
        return None
    paired = [statistics.median(step_times(p, warmup)) / statistics.median(step_times(o, warmup))
              for p, o in zip(runs[peer], runs[ours]) if p.get("ok") and o.get("ok")]
    return {"ours": ours, "peer": peer, "pooled": b["median_step_s"] / a["median_step_s"],
            "p10": b["p10_step_s"] / a["p10_step_s"], "per_round": paired, "min": min(paired), "max": max(paired)}


def ratios(summary: dict, runs: dict, warmup: int) -> dict:
    """`equal_settings/<checkpointing>/ratio_vs_<peer>`, and `auto/ratio_vs_<peer config>`: what the
    default (interval auto) gets against each peer's configurations (not equal settings: auto may
    recompute less than the peer)."""
    equal = {mode: {f"ratio_vs_{peer}": speedup(summary, runs, warmup, ours, key) for peer, key in peers.items()}
             for mode, (ours, peers) in EQUAL_SETTINGS.items()}
    auto = {f"ratio_vs_{name}": speedup(summary, runs, warmup, "ours+auto", key) for name, key in AUTO_AGAINST.items()}
    compiled = {f"ratio_vs_{name}": speedup(summary, runs, warmup, "ours+compile", key)
                for name, key in COMPILED_AGAINST.items()}
    return {"equal_settings": equal, "auto": auto, "compiled": compiled}


def floor_of(workload: Workload, threads: int) -> dict:
    """bench/floor.py in a fresh interpreter (same threads as the runs)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "bench.floor", "--precision", workload.precision, "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("FLOOR "):
            return json.loads(line[len("FLOOR "):])
    raise RuntimeError(f"bench.floor failed: {(proc.stderr or proc.stdout)[-1500:]}")


def floor_fractions(summary: dict, floor: dict) -> dict:
    """{config: floor s/step over its s/step} against the floor of the same checkpointing."""
    out = {}
    for key, c in summary.items():
        every = 1 if key.endswith("+ckpt") else 0 if "+" not in key else c.get("checkpoint_every")
        if c.get("ok") and every in (0, 1):
            out[key] = floor["checkpointed" if every else "plain"]["floor_s"] / c["median_step_s"]
    return out


def machine(threads: int) -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.cuda.is_available()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run (after warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="step intervals dropped at the start of each run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every run")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.json and the doc alone")
    parser.add_argument("--report-only", action="store_true", help="re-render docs/benchmarks.md from results.json")
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(json.loads(RESULTS.read_text()), DOC)
        return 0

    started = time.time()
    flags = " ".join(argv if argv is not None else sys.argv[1:])
    host = selected().name
    results = {"command": f"make bench HOST={host}" if not flags else f"FLUXLAB_HOST={host} .venv-{host}/bin/python -m bench.run {flags}",
               "comfyui": host,
               "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(args.threads),
               "rounds": args.rounds, "timed_steps_per_run": args.steps, "warmup_intervals": args.warmup,
               "precisions": {}}
    all_runs: dict[str, dict[str, list[dict]]] = {}
    for precision in args.precisions.split(","):
        workload = Workload(precision=precision)
        runs = all_runs.setdefault(precision, {})
        for r in range(args.rounds):
            order = CONFIGS[r % len(CONFIGS):] + CONFIGS[:r % len(CONFIGS)]
            for side, ckpt in order:
                key = config_key(side, ckpt)
                if side == "native" and ckpt == "0" and r > 0 and not any(x.get("ok") for x in runs[key]):
                    continue  # it failed once for a structural reason; the error is recorded
                result = run_worker(workload, side, ckpt, args.warmup + args.steps + 1, args.threads)
                runs.setdefault(key, []).append(result)
                status = f"{statistics.median(step_times(result, args.warmup)):.4f} s/step" if result.get("ok") else result.get("error")
                print(f"[{precision} round {r + 1}] {key:12s} {status}", flush=True)
        summary = {key: summarise(rs, args.warmup) for key, rs in runs.items()}
        floor = floor_of(workload, args.threads)
        results["precisions"][precision] = {"workload": workload.to_dict(), "configs": summary,
                                            "ratios": ratios(summary, runs, args.warmup), "floor": floor,
                                            "fraction_of_floor": floor_fractions(summary, floor)}
    results["duration_s"] = round(time.time() - started, 1)
    print(json.dumps({p: v["ratios"] for p, v in results["precisions"].items()}, indent=1))
    broken = [(p, key, r) for p, rs in all_runs.items() for key, runs_ in rs.items() if key.startswith("ours")
              for r in runs_ if not r.get("ok")]
    for precision, key, result in broken:
        print(f"[{precision}] {key}: {result.get('error')}\n{result.get('traceback', '')}", file=sys.stderr)
    if broken:
        return 1  # our side must run; a results file without it would compare nothing
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        write_report(results, DOC)
        print(f"wrote {RESULTS.relative_to(REPO_ROOT)} and {DOC.relative_to(REPO_ROOT)} in {results['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
