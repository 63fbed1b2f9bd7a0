"""`make demo`: train a LoRA with the bundled demo workflow in a real headless ComfyUI, on CPU.

Starts the ComfyUI host (HOST, default 0.33.0) with the pack (its own base folder under .cache/demo-base),
turns the demo workflow (workflows/, scripts/workflow_descriptions.py DEMO_WORKFLOW) into an API prompt with the server's own node schemas,
queues it, draws a progress bar from the pack's `fluxlab.step` websocket events, and prints the run
folder: LoRA, learning curve, checkpoints and the compare grid. Nothing is prepared beforehand: the
workflow's `Demo Images` node writes its pictures into input/fluxlab_demo/, as it does when the
template runs from a Manager install. The model is the tiny seeded Flux from FluxLabTinyModels
(random weights) with its colour VAE, so the grid shows samples moving toward the three pictures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.comfy_server import HOST, REPO_ROOT, ComfyServer  # noqa: E402
from scripts.workflow_descriptions import DEMO_STEPS, DEMO_WORKFLOW  # noqa: E402
from scripts.workflow_prompt import ui_to_prompt  # noqa: E402
from tests.harness.api import TERMINAL_EVENTS, ComfyClient  # noqa: E402

WORKFLOW = REPO_ROOT / "workflows" / f"{DEMO_WORKFLOW}.json"


def progress_line(step: dict) -> str:
    total, done = step["total"], step["step"]
    bar = "#" * int(30 * done / total)
    its = f"{step['its']:.1f} it/s" if step.get("its") else "-- it/s"
    return f"\r[demo] [{bar:<30}] {done}/{total}  loss {step['loss']:.4f}  {its}"


def follow(client: ComfyClient, prompt_id: str, start: int, timeout: float) -> str:
    """Print progress until the prompt ends; returns 'success', 'error' or 'interrupted'."""
    deadline, seen = time.monotonic() + timeout, start
    while time.monotonic() < deadline:
        event = client.stream.wait_for(lambda e: True, timeout=1.0, start=seen)
        if event is None:
            continue
        seen = client.stream.events.index(event, seen) + 1
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "fluxlab.step":
            print(progress_line(data), end="", flush=True)
        elif kind == "fluxlab.checkpoint":
            print(f"\n[demo] checkpoint at step {data['step']}: {data['path']}")
        elif kind in TERMINAL_EVENTS and data.get("prompt_id") == prompt_id:
            print()
            if kind == "execution_error":
                print(f"[demo] {data.get('node_type')} failed: {data.get('exception_message')}")
            return kind.removeprefix("execution_")
    raise TimeoutError(f"the demo did not finish within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dir", type=Path, default=REPO_ROOT / ".cache" / "demo-base")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    base = args.base_dir.resolve()
    run_dir = base / "output" / "fluxlab" / "demo"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo shows a fresh run (re-queuing would resume it)
    t0 = time.monotonic()
    with ComfyServer(base, log_path=base / "comfyui.log", threads=1) as server:
        print(f"[demo] ComfyUI {HOST.name} with Flux LoRA Lab at {server.url} (CPU), started in {server.startup_seconds:.1f} s")
        client = ComfyClient(server.url, log_tail=server.log_tail)
        try:
            prompt = ui_to_prompt(json.loads(WORKFLOW.read_text()), client.object_info())
            start = len(client.stream.events)
            prompt_id = client.queue(prompt)
            print(f"[demo] queued {WORKFLOW.relative_to(REPO_ROOT)}: tiny Flux.1-dev, 3 pictures, {DEMO_STEPS} steps")
            status = follow(client, prompt_id, start, args.timeout)
            grids = client.wait(prompt_id, timeout=60, start=start).images()  # history is stored after the end event
        finally:
            client.close()
    if status != "success":
        print(f"[demo] the workflow ended with {status}; server log: {base / 'comfyui.log'}")
        return 1
    print(f"[demo] done in {time.monotonic() - t0:.0f} s. Run folder: {run_dir}")
    for name in ("lora_final.safetensors", "learning_curve.svg"):
        print(f"[demo]   {run_dir / name}")
    for checkpoint in sorted(run_dir.glob("checkpoint_*")):
        print(f"[demo]   {checkpoint}/  ({', '.join(sorted(p.name for p in checkpoint.iterdir()))})")
    for image in grids:
        if image.get("type") == "output":  # (the A/B widget's copies are temp files)
            print(f"[demo]   compare grid: {base / 'output' / image['subfolder'] / image['filename']}")
    print(f"[demo] LoRA for stock loaders: {base / 'models' / 'loras' / 'fluxlab' / 'demo.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
