"""Caching 1,000 images streams: peak memory grows by less than 20 decoded images.

Run in a fresh subprocess so the peak resident set (VmHWM) belongs to this build alone. A warm-up
build on 20 images first loads torch/PIL code paths and fills allocator pools; then the peak is
reset (`/proc/self/clear_refs` 5) and the 1,000-image build runs. A second fresh build (another
cache folder) runs under tracemalloc for the Python-level peak (numpy arrays are traced, torch
storages are not, hence RSS too; tracemalloc's own bookkeeping would distort RSS, hence two builds).
Images are 512 x 512 PNGs (full decode, then reduced to the 256 px bucket), so one decoded image
is 768 KiB and the allowance is 15 MiB, while holding all images would need 750 MiB.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .fakes import make_image

REPO_ROOT = Path(__file__).resolve().parents[3]
SIDE = 512
DECODED_IMAGE_BYTES = SIDE * SIDE * 3

CHILD = r"""
import json, sys, tracemalloc
from pathlib import Path
import torch
torch.set_num_threads(1)
import tests.conftest
from flux_lora_lab.core.data import DatasetSpec, FolderSource, build_dataset
from tests.core.data.fakes import FakeTextEncoder, FakeVAE

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def build(folder, cache):
    spec = DatasetSpec((FolderSource(Path(folder), resolutions=(256,)),), cache_dir=Path(cache))
    vae = FakeVAE()
    ds = build_dataset(spec, vae, FakeTextEncoder())
    return ds, vae

warm, folder, cache = sys.argv[1:4]
build(warm, cache + "_warm")
try:
    Path("/proc/self/clear_refs").write_text("5")
    reset = True
except OSError:
    reset = False
baseline = status("VmRSS")
hwm_before = status("VmHWM")
ds, vae = build(folder, cache)
peak = status("VmHWM")
tracemalloc.start()  # a second, fresh build: tracemalloc's own bookkeeping would inflate the RSS above
build(folder, cache + "_traced")
traced_current, traced_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"reset": reset, "baseline": baseline, "hwm_before": hwm_before, "peak": peak,
                  "traced_peak": traced_peak, "traced_kept": traced_current,
                  "images": ds.image_count, "encoded": vae.calls}))
"""


@pytest.mark.slow
def test_caching_1000_images_streams(tmp_path):
    for folder, count in (("warm", 20), ("images", 1000)):
        for i in range(count):
            make_image(tmp_path / folder / f"{i:04d}.png", SIDE, SIDE, seed=i, caption=f"photo {i % 50}",
                       compress_level=1)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "warm"), str(tmp_path / "images"), str(tmp_path / "cache")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=True,
    )
    m = json.loads(result.stdout.strip().splitlines()[-1])
    assert m["images"] == 1000 and m["encoded"] == 1000
    start = m["baseline"] if m["reset"] else max(m["baseline"], m["hwm_before"])
    rss_growth = m["peak"] - start
    allowance = 20 * DECODED_IMAGE_BYTES
    print(f"\npeak RSS growth {rss_growth / 2**20:.1f} MiB, traced Python peak {m['traced_peak'] / 2**20:.1f} MiB, "
          f"kept after build {m['traced_kept'] / 2**20:.1f} MiB, allowance {allowance / 2**20:.1f} MiB "
          f"(peak reset: {m['reset']})")
    assert m["traced_peak"] < allowance
    assert rss_growth < allowance
