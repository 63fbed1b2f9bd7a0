"""Where runs live in a ComfyUI install, how they start, and how their events reach the browser.

- Run folders are `<output>/fluxlab/<run name>/` (docs/api.md); the process-wide
  `core.run.runner.default_registry()` holds live runs and, through `discover`, runs from earlier server
  sessions, so the routes list them after a restart.
- `start_run` starts a training thread and attaches one listener to its event log that forwards every
  record of this session to the websocket (`fluxlab.<kind>`), feeds ComfyUI's own progress bar for a
  blocking run, and publishes the final LoRA to `loras/fluxlab/<run>.safetensors` when the run
  finishes, for background runs too.
- Cancel: a blocking run's cancel hook *reads* ComfyUI's interrupt flag and never clears it. The
  flag is process-wide and `throw_exception_if_processing_interrupted` clears it and raises. ComfyUI
  calls that not only from ProgressBar's hook but from *every* forward of its ops (`comfy.ops.
  run_every_op`: Linear, norms, convs), i.e. from inside our training step, where it would swallow
  the user's Cancel of some other prompt and kill the run without a checkpoint. So training threads
  are marked, and `throw_exception_if_processing_interrupted` is wrapped once to do nothing on a
  marked thread (every other thread keeps ComfyUI's behaviour). Background runs get no cancel hook
  at all (Cancel is for the queue; they stop from the panel or the routes).
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ...core.config import is_run_name
from ...core.run.atomic import atomic_write, remove_stale_temps
from ...core.run.event_log import read_events_file
from ...core.run.events import Record
from ...core.run.rundir import RunDir
from ...core.run.runner import RunHandle, RunRegistry, TrainFn, check_run_id, default_registry
from .host import training_mode

log = logging.getLogger(__name__)

RUNS_SUBFOLDER = "fluxlab"  # <output>/fluxlab/<run>/ and <loras>/fluxlab/<run>.safetensors
Send = Callable[[str, dict], None]


@dataclass(frozen=True)
class RunRef:
    """The value on a FLUXLAB_RUN socket: which run, and its folder (checkpoints are read from there)."""

    run_id: str
    run_dir: Path


# -- places -------------------------------------------------------------------------------------
def runs_root() -> Path:
    import folder_paths

    return Path(folder_paths.get_output_directory()) / RUNS_SUBFOLDER


def loras_folder() -> Path:
    """`<first loras folder>/fluxlab/`: stock LoRA loaders list its files as `fluxlab/<name>`."""
    import folder_paths

    return Path(folder_paths.get_folder_paths("loras")[0]) / RUNS_SUBFOLDER


def publish_lora(source: Path, name: str, folder: Optional[Path] = None) -> str:
    """Copy `source` to `<loras>/fluxlab/<name>.safetensors` atomically; returns the loader's name for it."""
    folder = loras_folder() if folder is None else Path(folder)
    for stale in remove_stale_temps(folder):  # a copy killed midway (server stopped) left it
        log.info("removed %s, left by an interrupted copy", stale)
    target = folder / f"{name}.safetensors"
    atomic_write(target, lambda temp: shutil.copyfile(source, temp))
    return f"{RUNS_SUBFOLDER}/{target.name}"


# -- the registry -------------------------------------------------------------------------------
def registry() -> RunRegistry:
    return default_registry()


def run_folder_names(root: Optional[Path] = None) -> list[str]:
    """Names of the run folders under `root` (default `<output>/fluxlab`), sorted. Internal folders
    such as `.dataset_cache` are not runs: a name outside the run-name rule never is one."""
    root = runs_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_run_name(p.name))


def list_runs(root: Optional[Path] = None) -> list[RunHandle]:
    """Live runs and every run folder under `root` (default `<output>/fluxlab`), by id."""
    reg = registry()
    reg.discover(runs_root() if root is None else root)
    return reg.list()


def find_run(run_id: str, root: Optional[Path] = None) -> Optional[RunHandle]:
    """The run with this id, looking on disk too (a run from before a restart); None if unknown."""
    reg = registry()
    handle = reg.get(run_id)
    if handle is None:
        reg.discover(runs_root() if root is None else root)
        handle = reg.get(run_id)
    return handle


# -- starting a run -----------------------------------------------------------------------------
def start_run(run_id: str, train_fn: TrainFn, *, blocking: bool, node_id: Optional[str] = None,
              root: Optional[Path] = None, send: Optional[Send] = None,
              publish_to: Optional[Path] = None) -> RunHandle:
    """Start `train_fn` for run `run_id` in `<root>/<run_id>/`; a live run of that id is refused (RunError).

    `blocking` runs (TrainLoRA's `wait` mode) stop on ComfyUI's Cancel and report progress on the
    node `node_id`. `send`, `root` and `publish_to` default to the server's websocket, the output
    folder and the loras folder (tests pass their own).
    """
    run_dir = (runs_root() if root is None else Path(root)) / check_run_id(run_id)
    first_seq = _next_seq(run_dir)
    install_interrupt_guard()

    def marked_train_fn(control, emit):
        _thread.training = True  # see the module docstring: ComfyUI's interrupt checks skip this thread
        with training_mode():  # the host's autograd-safe kernels while the run trains
            return train_fn(control, emit)

    handle = registry().start(run_id, run_dir, marked_train_fn,
                              cancel_hook=comfy_cancel_requested if blocking else None)
    send = send or _server_send
    progress = _progress_target(node_id) if blocking and node_id is not None else None

    def on_record(record: Record) -> None:
        if record.seq < first_seq:
            return  # an earlier session's history: already sent back then
        send(f"fluxlab.{record.kind}", {"run_id": run_id, **record.to_dict()})
        if progress is not None and record.kind == "step":
            send("progress", {"value": record.event.step, "max": record.event.total, **progress})
        if record.kind == "finished" and not record.event.stopped_early:
            final = RunDir(run_dir).final_lora_path
            if final.is_file():
                name = publish_lora(final, run_id, publish_to)
                log.info("run %s: final LoRA published as %s", run_id, name)

    # Replays this session's records emitted before the listener existed, then follows live ones;
    # the log's dispatch lock makes that gap-free and duplicate-free.
    handle.events.add_listener(on_record, replay=True)
    return handle


def _next_seq(run_dir: Path) -> int:
    records = read_events_file(run_dir / "events.jsonl")
    return records[-1].seq + 1 if records else 0


def _server_send(event: str, data: dict) -> None:
    from server import PromptServer  # send_sync is thread-safe: loop.call_soon_threadsafe

    PromptServer.instance.send_sync(event, data)


def _progress_target(node_id: str) -> dict:
    from server import PromptServer

    return {"prompt_id": PromptServer.instance.last_prompt_id, "node": node_id}


# -- ComfyUI's inference mode -----------------------------------------------------------------------
def leave_inference_mode(module) -> int:
    """Give `module` normal tensors in place of "inference tensors"; returns how many were replaced.

    ComfyUI executes every prompt under `torch.inference_mode()`, so a model a node loads or builds
    holds inference tensors, and autograd refuses to save those for backward: every frozen weight a
    LoRA gradient flows through (a linear's weight, a norm's scale) fails with "Inference tensors
    cannot be saved for backward". Each is swapped for a normal copy with the same values, one at a
    time (peak: one extra tensor), the way ComfyUI's ModelPatcher swaps weights (same names, new
    Parameter objects), so samplers on the shared MODEL give identical results. Done once: later
    runs find nothing to replace.
    """
    import torch

    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for owner in module.modules():
            for name, param in list(owner._parameters.items()):
                if param is not None and param.is_inference():
                    owner._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=param.requires_grad)
                    replaced += 1
            for name, buffer in list(owner._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    owner._buffers[name] = buffer.clone()
                    replaced += 1
    return replaced


# -- ComfyUI's Cancel ---------------------------------------------------------------------------
_thread = threading.local()
_guard_lock = threading.Lock()


def install_interrupt_guard() -> None:
    """Wrap comfy.model_management.throw_exception_if_processing_interrupted (once) so it neither
    clears the flag nor raises on a training thread (module docstring). Callers look it up on the
    module at each call (comfy.ops, ProgressBar's hook), so the wrapper covers them all."""
    import comfy.model_management as mm

    with _guard_lock:
        original = mm.throw_exception_if_processing_interrupted
        if getattr(original, "fluxlab_guard", False):
            return

        def throw_exception_if_processing_interrupted():
            if getattr(_thread, "training", False):
                return
            original()

        throw_exception_if_processing_interrupted.fluxlab_guard = True
        mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted


def comfy_cancel_requested() -> bool:
    """True once Cancel was pressed; reads the flag without clearing it (see the module docstring)."""
    import comfy.model_management

    return comfy.model_management.processing_interrupted()


def raise_interrupted() -> None:
    """End the blocking node as interrupted, clearing the flag as ComfyUI's own nodes do."""
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()
    raise comfy.model_management.InterruptProcessingException()
