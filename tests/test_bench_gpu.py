"""The GPU benchmark script runs: every configuration's code path (bf16 shared, fp8-stored, int8,
block swap) on a tiny model on the CPU (`--dry-run`), so the script is ready the day a GPU is lent.
It measures nothing here."""

import json
import subprocess
import sys

import pytest

from scripts.hosts import REPO_ROOT


@pytest.mark.slow
def test_the_gpu_script_dry_run_passes_every_configuration():
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--dry-run", "--px", "256", "--quantize", "none,fp8,qint8",
                           "--checkpointing", "1", "--swap", "0,2"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in results if not r.get("ok")]
    assert proc.returncode == 0 and len(results) == 6, (failed or results, proc.stderr[-2000:])
    assert all("planned_gib" in r for r in results)
