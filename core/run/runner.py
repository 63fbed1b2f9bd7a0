"""Background training runs: one thread per run, a registry by run id, status from the event stream.

`RunRegistry.start(run_id, run_dir, train_fn)` prepares the run folder, opens its event log (continuing
an earlier `events.jsonl`, so a resumed run keeps its history) and runs `train_fn(control, emit)` on a
daemon thread. The trainer reports everything through `emit(event)`; the handle's status is derived
from those events, so what the panel shows and what the registry says cannot disagree. If `train_fn`
raises, the runner logs the traceback and emits `failed` with the message. `discover(root)` lists past
runs from their folders after a server restart.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..config import RUN_NAME_RULE, is_run_name
from ..errors import FluxLabError
from .control import RunControl
from .event_log import EventLog
from .events import TERMINAL_KINDS, Event, Failed, Finished, Record, Started
from .rundir import RunDir

log = logging.getLogger(__name__)

# Statuses: starting (thread up, no `started` yet), running, paused, stopping (stop requested),
# finished, stopped (finished early on request), failed, interrupted (history ends without an end event:
# the process died).
LIVE_STATUSES = frozenset({"starting", "running", "paused", "stopping"})
TrainFn = Callable[[RunControl, Callable[[Event], Record]], Optional[object]]


class RunError(FluxLabError, RuntimeError):
    """A run request that cannot be honoured (duplicate id, control of a run that is not live, ...)."""


def check_run_id(run_id: str) -> str:
    """A run id is a run folder name and a URL segment (config.is_run_name, the one rule)."""
    if not is_run_name(run_id):
        raise ValueError(f"run name {run_id!r} is not usable as a folder name: use {RUN_NAME_RULE}")
    return run_id


def status_from_history(records: Iterable[Record], live: bool) -> str:
    status = "starting" if live else "interrupted"
    for record in records:
        kind = record.kind
        if kind in ("started", "resumed"):
            status = "running"
        elif kind == "paused":
            status = "paused"
        elif kind == "finished":
            status = "stopped" if record.event.stopped_early else "finished"
        elif kind == "failed":
            status = "failed"
    if not live and status in LIVE_STATUSES:
        return "interrupted"
    return status


class RunHandle:
    """One run, live (thread) or discovered on disk (history only)."""

    def __init__(self, run_id: str, run_dir: RunDir, events: EventLog, control: Optional[RunControl]):
        self.run_id = run_id
        self.run_dir = run_dir
        self.events = events
        self.control = control
        self.thread: Optional[threading.Thread] = None
        last = events.last()
        self._session_start_seq = last.seq + 1 if last is not None else 0  # first record of this session
        self.result: Optional[object] = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def status(self) -> str:
        live = self.thread is not None and not self.events.closed
        session = self.events.history(since_seq=self._session_start_seq - 1) if live else self.events.history()
        status = status_from_history(session, live=live)
        if live and status in ("running", "paused", "starting") and self.control.stop_requested:
            return "stopping"
        return status

    def summary(self) -> dict:
        """JSON-safe overview for `GET /fluxlab/runs` (the full history is `events.history()`)."""
        last_step = self.events.last("step")
        started = self.events.last("started")
        end = next((r for r in reversed(self.events.history()) if r.kind in TERMINAL_KINDS), None)
        summary = {
            "run_id": self.run_id,
            "status": self.status,
            "run_dir": str(self.run_dir.root),
            "live": self.live,
            "step": last_step.event.step if last_step else None,
            "total_steps": started.event.total_steps if started else None,
            "loss": last_step.to_dict()["loss"] if last_step else None,
            "started_at": started.time if started else None,
            "updated_at": self.events.last().time if len(self.events) else None,
            "lora_path": None,
            "error": None,
        }
        if end is not None and end.kind == "finished":
            summary["lora_path"] = end.event.lora_path
        if end is not None and end.kind == "failed":
            summary["error"] = end.event.message
        return summary

    def detail(self, since_seq: int = -1) -> dict:
        """`GET /fluxlab/runs/{id}`: the summary plus the event history (only seq > since_seq, for polling)."""
        return {**self.summary(), "events": [r.to_dict() for r in self.events.history(since_seq)]}

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the training thread; True when it has ended (always True for a discovered run)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.live

    # -- control (routes) ------------------------------------------------------------------------
    def pause(self) -> None:
        self._live_control("pause").pause()

    def resume(self) -> None:
        self._live_control("resume").resume()

    def request_checkpoint(self) -> None:
        self._live_control("save a checkpoint of").request_checkpoint()

    def stop(self) -> None:
        self._live_control("stop").stop()

    def _live_control(self, action: str) -> RunControl:
        if not self.live or self.control is None:
            raise RunError(f"cannot {action} run {self.run_id!r}: it is {self.status}, not running")
        return self.control


class RunRegistry:
    """Runs by id. Creating one does no work; `default_registry()` gives the process-wide instance."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, RunHandle] = {}

    def start(
        self,
        run_id: str,
        run_dir: Path,
        train_fn: TrainFn,
        *,
        cancel_hook: Optional[Callable[[], bool]] = None,
        file_poll_s: float = 0.5,
    ) -> RunHandle:
        """Start `train_fn(control, emit)` on a background thread; refuses a second live run of the id/folder.

        `train_fn` may return the final LoRA path; if it returns without emitting `finished`/`failed`,
        the runner emits `finished` with that path (stopped_early = a stop was requested).
        """
        check_run_id(run_id)
        rundir = RunDir(run_dir)
        with self._lock:
            for other in self._runs.values():
                if other.live and (other.run_id == run_id or _same_dir(other.run_dir.root, rundir.root)):
                    raise RunError(
                        f"run {other.run_id!r} is already {other.status} in {other.run_dir.root}; "
                        "stop it first or choose another run name"
                    )
            removed = rundir.prepare()
            if removed:
                log.info("run %s: removed unfinished writes from a crash: %s", run_id, [p.name for p in removed])
            events = EventLog(rundir.events_path)
            control = RunControl(rundir.root, cancel_hook, file_poll_s=file_poll_s)
            handle = RunHandle(run_id, rundir, events, control)
            handle.thread = threading.Thread(
                target=_run_thread, args=(handle, train_fn), name=f"fluxlab-run-{run_id}", daemon=True
            )
            self._runs[run_id] = handle
            handle.thread.start()
        return handle

    def get(self, run_id: str) -> Optional[RunHandle]:
        with self._lock:
            return self._runs.get(run_id)

    def list(self) -> list[RunHandle]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda h: h.run_id)

    def discover(self, root: Path) -> list[RunHandle]:
        """Register past runs found in subfolders of `root` that hold an events.jsonl (live runs are kept).
        Only folders named by the run-name rule are runs (not internal ones such as `.dataset_cache`)."""
        root = Path(root)
        found = []
        if not root.is_dir():
            return found
        for folder in sorted(p for p in root.iterdir()
                             if p.is_dir() and is_run_name(p.name) and (p / "events.jsonl").is_file()):
            events = EventLog(folder / "events.jsonl", read_only=True)
            started = events.last("started")
            run_id = started.event.run_id if started else folder.name
            with self._lock:
                current = self._runs.get(run_id)
                if current is not None and (current.live or current.thread is not None):
                    continue
                handle = RunHandle(run_id, RunDir(folder), events, control=None)
                self._runs[run_id] = handle
            found.append(handle)
        return found


def _run_thread(handle: RunHandle, train_fn: TrainFn) -> None:
    events, control = handle.events, handle.control
    session_start = handle._session_start_seq

    def emit(event: Event) -> Record:
        if isinstance(event, Started) and event.run_id != handle.run_id:
            raise ValueError(f"started event names run {event.run_id!r} but this run is {handle.run_id!r}")
        return events.append(event)

    def ended() -> bool:
        return any(r.kind in ("finished", "failed") for r in events.history(session_start - 1))

    try:
        handle.result = train_fn(control, emit)
        if not ended():
            emit(Finished(step=_last_step(events, session_start), lora_path=_path_or_none(handle.result),
                          stopped_early=control.stop_requested))
    except BaseException as exc:  # the thread's last word: log it and tell the panel, never swallow
        log.exception("run %s failed", handle.run_id)
        if not ended():
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            emit(Failed(step=_last_step(events, session_start), message=message))
    finally:
        events.close()


def _last_step(events: EventLog, session_start: int) -> Optional[int]:
    for record in reversed(events.history(session_start - 1)):
        step = getattr(record.event, "step", None)
        if isinstance(step, int):
            return step
    started = events.last("started")
    return started.event.start_step if started and started.seq >= session_start else None


def _path_or_none(result: object) -> Optional[str]:
    return str(result) if isinstance(result, (str, Path)) else None


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


_default: Optional[RunRegistry] = None
_default_lock = threading.Lock()


def default_registry() -> RunRegistry:
    """The process-wide registry, created on first use (nothing happens at import)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RunRegistry()
        return _default
