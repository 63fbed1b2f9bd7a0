"""`make bench`: our training step against ComfyUI's native TrainLoraNode, side by side, as ratios.

run.py orchestrates (one fresh subprocess per configuration and round, so peaks never mix),
worker.py is what each subprocess runs, native.py / ours.py drive the two trainers on the workload of
workload.py, flops.py counts matmul FLOPs per step, report.py writes docs/benchmarks.md, and gpu.py
is the full-size Flux.1-dev GPU benchmark (skips without CUDA).
"""
