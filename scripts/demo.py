"""`make demo` (first version): start the real ComfyUI headless with the pack, run a stock
sampling graph on the tiny seeded Flux.1-dev models, and say where the image is.

Training is not wired yet: this proves the host, the pack and the tiny models work end to end.
The training issue replaces this with a TrainLoRA run.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.comfy_server import REPO_ROOT, ComfyServer  # noqa: E402
from tests.harness.api import ComfyClient  # noqa: E402
from tests.harness.graphs import tiny_sampling_graph  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="flux1-dev", choices=["flux1-dev", "flux1-schnell", "flux2-dev"])
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "demo-output")
    args = parser.parse_args()

    print("[demo] NOTE: LoRA training is not wired into the demo yet; this run only samples an image")
    print("[demo]       from the tiny random-weight Flux models through the real ComfyUI server.")
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fluxlab-demo-") as base:
        server = ComfyServer(Path(base), log_path=output_dir / "comfyui.log", extra_args=("--output-directory", str(output_dir)), threads=1)
        t0 = time.monotonic()
        with server:
            print(f"[demo] ComfyUI 0.3.75 started at {server.url} in {server.startup_seconds:.1f} s (CPU)")
            client = ComfyClient(server.url, log_tail=server.log_tail)
            try:
                result = client.run(tiny_sampling_graph(args.variant, width=64, height=64, steps=4, prefix="demo"), timeout=300)
            finally:
                client.close()
        for image in result.images():
            print(f"[demo] saved {output_dir / image['subfolder'] / image['filename']}")
    print(f"[demo] done in {time.monotonic() - t0:.1f} s; server log: {output_dir / 'comfyui.log'}")
    print("[demo] training demo: coming with TrainLoRA (see the training issue).")


if __name__ == "__main__":
    main()
