"""One configuration in one fresh process: build the model and data, train, print one JSON line.

run.py starts this once per configuration and round, so the memory high-water mark of one
configuration never includes another's. Memory is the process RSS high-water mark (VmHWM in
/proc/self/status; tracemalloc cannot see torch's allocations). It is reset after the model and
data are built (writing 5 to /proc/self/clear_refs), so `peak_train_mb` is the peak while training,
and `base_mb` the resident size (interpreter, torch, comfy, model, data) just before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

RESULT_MARK = "BENCH_RESULT "


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("native", "diffusers", "ours"), required=True)
    parser.add_argument("--checkpointing", choices=("0", "1", "auto", "compile"), required=True,
                        help="auto: ours only, the memory plan's choice; compile: ours only, none, "
                             "train.compile on (bench/ours.py)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--workload", required=True, help="Workload fields as JSON")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from ._pack import register_pack

    register_pack()
    from .diffusers_peer import run_diffusers
    from .native import run_native
    from .ours import run_ours
    from .workload import Workload, build_patcher, make_pool

    workload = Workload(**json.loads(args.workload))
    patcher = None if args.side == "diffusers" else build_patcher(workload)  # diffusers builds its own model
    pool = make_pool(workload)
    checkpointing = args.checkpointing if args.checkpointing in ("auto", "compile") else bool(int(args.checkpointing))
    result = {"side": args.side, "checkpointing": checkpointing, "threads": torch.get_num_threads()}
    result["base_mb"] = (_status_kb("VmRSS") or 0) / 1024
    result["peak_reset"] = _reset_peak()
    runner = {"native": run_native, "diffusers": run_diffusers, "ours": run_ours}[args.side]
    try:
        result.update(runner(workload, pool, patcher, args.steps, checkpointing))
        result["ok"] = True
    except Exception as err:  # the native node without checkpointing is expected to fail: record why
        result.update(ok=False, error=f"{type(err).__name__}: {err}".splitlines()[0][:300],
                      traceback=traceback.format_exc()[-1500:])
    result["peak_train_mb"] = (_status_kb("VmHWM") or 0) / 1024
    result["finished_at"] = time.time()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
