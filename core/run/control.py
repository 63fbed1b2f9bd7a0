"""Pause / resume / save-now / stop for one run, from API calls, run-folder files and ComfyUI's Cancel.

The trainer asks once per step boundary (`poll()`) and blocks cheaply while paused
(`wait_while_paused()`). Requests arrive from three places that must agree:
- API calls (the `/fluxlab/runs/{id}/...` routes): `pause()`, `resume()`, `request_checkpoint()`, `stop()`;
- files in the run folder (seed 002): `.pause` present = paused, removing it resumes; `.checkpoint` =
  save now and `.stop` = stop gracefully, both deleted once taken;
- a cancel hook supplied by the nodes layer (True once ComfyUI's Cancel was pressed for a blocking run).

API pause/resume also create/remove `.pause`, so the folder always shows the state and `rm .pause`
resumes a run paused from the panel. Files are stat'ed at most every `file_poll_s` seconds. Control
files left over from an earlier session are removed when a RunControl is created for a new session:
they were requests to a run that no longer exists.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)

PAUSE_FILE = ".pause"
CHECKPOINT_FILE = ".checkpoint"
STOP_FILE = ".stop"
CONTROL_FILES = (PAUSE_FILE, CHECKPOINT_FILE, STOP_FILE)


@dataclass(frozen=True)
class ControlRequest:
    """What the trainer should do at this step boundary (save first, then stop or pause)."""

    save_now: bool = False
    stop: bool = False
    pause: bool = False
    cancelled: bool = False  # the stop came from ComfyUI's Cancel (the node ends the prompt as interrupted)


class RunControl:
    """Thread-safe control state of one run; `run_dir=None` gives API-only control (tests, no folder)."""

    def __init__(
        self,
        run_dir: Optional[Path] = None,
        cancel_hook: Optional[Callable[[], bool]] = None,
        *,
        file_poll_s: float = 0.5,
        clear_stale_files: bool = True,
    ):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.cancel_hook = cancel_hook
        self.file_poll_s = file_poll_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._paused = False
        self._save_now = False
        self._stop = False
        self._cancelled = False
        self._pause_file_seen = False
        self._last_file_check = float("-inf")
        if self.run_dir is not None and clear_stale_files:
            for name in CONTROL_FILES:
                self._remove(name)

    # -- requests (API side) ---------------------------------------------------------------------
    def pause(self) -> None:
        with self._lock:
            if self._stop:
                return  # a stopping run finishes; pausing it would only leave a stale .pause behind
            self._paused = True
            self._pause_file_seen = self._touch(PAUSE_FILE) or self._pause_file_seen
        self._wake.set()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._remove(PAUSE_FILE)
            self._pause_file_seen = False
        self._wake.set()

    def request_checkpoint(self) -> None:
        with self._lock:
            self._save_now = True
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._mark_stopped()
        self._wake.set()

    # -- state -----------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        self._refresh()
        with self._lock:
            return self._stop

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return self._cancelled

    # -- trainer side ----------------------------------------------------------------------------
    def poll(self) -> ControlRequest:
        """Requests for this step boundary. Consumes save-now (the caller must act on it); stop sticks."""
        self._refresh()
        with self._lock:
            request = ControlRequest(
                save_now=self._save_now,
                stop=self._stop,
                pause=self._paused and not self._stop,
                cancelled=self._cancelled,
            )
            self._save_now = False
        return request

    def wait_while_paused(self, on_tick: Optional[Callable[[], None]] = None, tick_s: float = 0.5) -> ControlRequest:
        """Block until resumed or stopped (returns at once if not paused); returns `poll()`'s answer then.

        Wakes immediately on API calls and every `tick_s` to re-check files and the cancel hook;
        `on_tick` (e.g. a heartbeat) runs on each wake-up.
        """
        while True:
            self._refresh(force=True)
            with self._lock:
                if self._stop or not self._paused:
                    break
                self._wake.clear()
            self._wake.wait(tick_s)
            if on_tick is not None:
                on_tick()
        return self.poll()

    # -- files and cancel ------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        self._check_cancel()
        if self.run_dir is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_file_check < self.file_poll_s:
                return
            self._last_file_check = now
            pause_present = (self.run_dir / PAUSE_FILE).exists()
            # Edge-triggered: a file appearing pauses, disappearing resumes; API state holds otherwise.
            if pause_present != self._pause_file_seen:
                self._paused = pause_present
                self._pause_file_seen = pause_present
            if self._consume(CHECKPOINT_FILE):
                self._save_now = True
            if self._consume(STOP_FILE):
                self._mark_stopped()

    def _mark_stopped(self) -> None:
        """Stop wins over pause; the `.pause` file goes too so the folder does not show a paused run."""
        self._stop = True
        if self._paused:
            self._paused = False
            self._remove(PAUSE_FILE)
            self._pause_file_seen = False

    def _check_cancel(self) -> None:
        if self.cancel_hook is None or self._cancelled:
            return
        if self.cancel_hook():
            with self._lock:
                self._cancelled = True
                self._mark_stopped()
            self._wake.set()

    def _consume(self, name: str) -> bool:
        path = self.run_dir / name
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _touch(self, name: str) -> bool:
        if self.run_dir is None:
            return False
        try:
            (self.run_dir / name).touch()
        except OSError as exc:
            log.warning("could not create %s in %s (%s); pause is held in memory only", name, self.run_dir, exc)
            return False
        return True

    def _remove(self, name: str) -> None:
        if self.run_dir is None:
            return
        (self.run_dir / name).unlink(missing_ok=True)
