"""The kernel floor of this machine for the workload: the seconds one training step would take if it
did nothing but its matrix products and attention, each at the rate this CPU runs it alone.

Why: a ratio against peers says nothing about how much is left. The floor lists the products a
LoRA step on a frozen base must compute (bench/flops.py's accounting, one entry per product with its
shape), times each distinct shape here in the compute dtype (`torch.mm`, and SDPA forward and
backward on (1, heads, L, head dim)), and sums. Everything else a step does (norms, modulation,
GELU, RoPE, residuals, casts, the optimizer, Python) counts as overhead above the floor.

Per block linear (in -> out, over `tokens`): forward `X W^T`, backward `dY W` (no weight gradient:
the base is frozen); its LoRA of rank r: forward `X A^T`, `H B^T`, backward dB, dH, dA, dX. Per block
one attention forward and backward over all L tokens. img_in / txt_in forward, the final layer
forward and input gradient. Checkpointing adds every block's forward once more (linears, LoRA,
attention). The tiny time / guidance / vector embedders (one token each) are left out.

    .venv-0.33.0/bin/python -m bench.floor --precision bf16 [--threads 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from .flops import lora_linears
from .workload import Workload


def products(w: Workload, checkpointed: bool) -> collections.Counter:
    """{("mm", m, k, n) or ("sdpa_fwd" | "sdpa_bwd", L): count} for one step of `w`."""
    from .report import workload_shape

    shape, r = workload_shape(w.to_dict()), w.rank
    out: collections.Counter = collections.Counter()
    forwards = 2 if checkpointed else 1
    for i, o, t in lora_linears(shape, train_modulation=True):
        out["mm", t, i, o] += forwards
        out["mm", t, i, r] += forwards
        out["mm", t, r, o] += forwards
        out["mm", t, o, i] += 1  # dX through the base
        out["mm", o, t, r] += 1  # dB = dY^T H
        out["mm", t, o, r] += 1  # dH = dY B
        out["mm", r, t, i] += 1  # dA = dH^T X
        out["mm", t, r, i] += 1  # dX through the LoRA
    blocks = w.double_blocks + w.single_blocks
    out["sdpa_fwd", shape.tokens] += blocks * forwards
    out["sdpa_bwd", shape.tokens] += blocks
    patch = 16 * 4
    out["mm", shape.image_tokens, patch, w.hidden] += 1  # img_in
    out["mm", shape.text_tokens, w.context_dim, w.hidden] += 1  # txt_in
    out["mm", shape.image_tokens, w.hidden, patch] += 1  # final layer
    out["mm", shape.image_tokens, patch, w.hidden] += 1  # its input gradient
    return out


def _seconds(fn, repeat: int) -> float:
    """Process CPU seconds of one call: the median of `repeat` calls after two warm-up calls."""
    fn(), fn()
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def time_product(key: tuple, w: Workload, dtype: torch.dtype, repeat: int) -> float:
    g = torch.Generator().manual_seed(0)
    if key[0] == "mm":
        _, m, k, n = key
        a, b = torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)
        return _seconds(lambda: torch.mm(a, b), repeat)
    head = w.hidden // w.heads
    q, k, v = (torch.randn(1, w.heads, key[1], head, generator=g).to(dtype).requires_grad_() for _ in range(3))
    if key[0] == "sdpa_fwd":
        return _seconds(lambda: F.scaled_dot_product_attention(q, k, v), repeat)
    out = F.scaled_dot_product_attention(q, k, v)
    grad = torch.randn_like(out)
    return _seconds(lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), repeat)


def floor(w: Workload, repeat: int = 15) -> dict:
    """Floor seconds per step, plain and checkpointed, with the share of GEMM and attention."""
    dtype = torch.bfloat16 if w.precision == "bf16" else torch.float32
    plain, ckpt = products(w, False), products(w, True)
    seconds = {key: time_product(key, w, dtype, repeat) for key in ckpt}
    result = {}
    for name, counts in (("plain", plain), ("checkpointed", ckpt)):
        gemm = sum(n * seconds[k] for k, n in counts.items() if k[0] == "mm")
        attention = sum(n * seconds[k] for k, n in counts.items() if k[0] != "mm")
        flops = sum(n * 2 * k[1] * k[2] * k[3] for k, n in counts.items() if k[0] == "mm")
        result[name] = {"floor_s": gemm + attention, "gemm_s": gemm, "attention_s": attention,
                        "gemm_gflops_per_s": flops / gemm / 1e9, "products": sum(counts.values())}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("FLOOR " + json.dumps(floor(Workload(precision=args.precision), args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
