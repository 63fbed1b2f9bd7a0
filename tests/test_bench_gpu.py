"""The GPU benchmark script runs: every configuration's code path (bf16 shared, fp8-stored, int8,
block swap, train.compile on, and the peers: ComfyUI's native node and diffusers + peft, checkpointing on and off) on a
tiny model on the CPU (`--dry-run`), so the script is ready the day a GPU is lent. It measures nothing here."""

import json
import subprocess
import sys

import pytest

from scripts.hosts import REPO_ROOT


@pytest.mark.slow
def test_the_gpu_script_dry_run_passes_every_configuration():
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--dry-run", "--px", "256", "--quantize", "none,fp8,qint8",
                           "--checkpointing", "1,0", "--swap", "0,2"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in results if not r.get("ok")]
    ours = [r for r in results if r["side"] == "ours"]
    compiled = [r for r in ours if r.get("compile")]
    peers = {(r["side"], r["checkpointing"]): r for r in results if r["side"] != "ours"}
    assert proc.returncode == 0 and len(ours) == 10 and len(compiled) == 1 and len(peers) == 4, (failed or results, proc.stderr[-2000:])
    assert all(r["ok"] and r["planned_gib"] > 0 for r in ours)
    assert peers["native", True]["ok"] and peers["diffusers", True]["ok"] and peers["diffusers", False]["ok"]
    assert peers["native", False].get("expected_failure") and "inplace" in peers["native", False]["error"]
