"""What a step event reports besides the loss: speed and time left (Throughput), and the process's
memory (memory_snapshot)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

log = logging.getLogger(__name__)


class Throughput:
    """Steps per second (smoothed) and ETA for step events; `clock` is injectable for tests."""

    def __init__(self, total_steps: int, start_step: int = 0, smoothing: float = 0.9, clock=time.monotonic):
        self.total_steps = total_steps
        self.smoothing = smoothing
        self._clock = clock
        self._last_time: Optional[float] = None
        self._last_step = start_step
        self._rate: Optional[float] = None

    def reset_clock(self) -> None:
        """Call after a pause so waiting time does not count as slow steps."""
        self._last_time = None

    def update(self, step: int) -> tuple[Optional[float], Optional[float]]:
        """Record that `step` is done; returns (it/s, eta seconds), None until two points exist."""
        now = self._clock()
        if self._last_time is not None and step > self._last_step and now > self._last_time:
            rate = (step - self._last_step) / (now - self._last_time)
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last_time, self._last_step = now, step
        if self._rate is None:
            return None, None
        return self._rate, max(0, self.total_steps - step) / self._rate


def memory_snapshot() -> dict:
    """Process RSS and, when torch has CUDA up, allocated / peak GPU memory, in MB (for step events)."""
    memory = {}
    try:
        import psutil  # a ComfyUI requirement; works on Windows and macOS too

        memory["ram_mb"] = psutil.Process().memory_info().rss / 2**20
    except ImportError:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                memory.update({"ram_mb": int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:")})
        except OSError:
            log.debug("no psutil and no /proc: RAM not reported")
    torch = sys.modules.get("torch")  # never import torch just to report memory
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        memory["gpu_mb"] = torch.cuda.memory_allocated() / 2**20
        memory["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return memory
