"""optimum-quanto's compiled kernel (int4 unpacking), built before a run needs it and never waited
on forever.

Why: quanto compiles its C++ kernel on first use (torch.utils.cpp_extension, about 35 s on two
cores) inside the environment, under a lock file that torch waits on with no timeout. A process
stopped mid-compile leaves the lock, and every later int4 run (and the test suite) then sleeps with
no message. Set-up builds the kernel (scripts/setup_env.sh); before an int4 run `ensure_built`
waits for a builder that is alive, takes over from one that is not (the lock is older than any
build), and otherwise fails with what to delete.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

KERNELS = {"cpu": "quanto_cpp", "cuda": "quanto_cuda"}
"""The extension quanto uses for packed int4 weights, by device type."""
STALE_AFTER_S = 900.0
"""A lock older than this is a dead builder's: a build takes well under a minute (35 s measured)."""


class KernelBuildStuck(RuntimeError):
    """Another process holds the build lock and has not finished within the wait."""


def ensure_built(device_type: str, wait_s: float = 600.0, poll_s: float = 1.0) -> None:
    """Build (or load) quanto's kernel for `device_type` now; a no-op where quanto has none."""
    from optimum.quanto.library.extensions import get_extension, is_extension_available

    name = KERNELS.get(device_type)
    if name is None or not is_extension_available(name):
        return
    extension = get_extension(name)
    lock = Path(extension.build_directory) / "lock"
    deadline = time.monotonic() + wait_s
    while lock.exists():
        age = time.time() - lock.stat().st_mtime
        if age > STALE_AFTER_S:
            log.warning("removing %s: a build of %s stopped %.0f min ago without finishing", lock, name, age / 60)
            lock.unlink(missing_ok=True)
            break
        if time.monotonic() > deadline:
            raise KernelBuildStuck(f"optimum-quanto's {name} kernel is being built by another process (lock {lock}, "
                                   f"{age:.0f} s old) and did not finish within {wait_s:.0f} s; if no other ComfyUI "
                                   "or test run is building it, delete that lock file and queue the run again")
        time.sleep(poll_s)
    extension.lib  # noqa: B018 - loading the library compiles it when needed
