"""core/model/quanto_kernel.py: int4's compiled kernel is built before a run, a dead builder's lock is
taken over, and a live one is waited for with a limit and a message (never forever).

Measured before: a process stopped mid-compile left quanto's lock, and every later int4 run (and the
whole tests/core run) slept on it with no message. The lock logic runs against a stand-in extension
in a temp folder (the real build folder is the environment's); the last test loads the real one."""

import os
import threading
import time
from pathlib import Path

import pytest

import optimum.quanto.library.extensions as extensions
from flux_lora_lab.core.model import quanto_kernel


class StandIn:
    def __init__(self, folder):
        self.build_directory = str(folder)
        self.loads = 0

    @property
    def lib(self):
        assert not self.lock.exists(), "loaded while the lock was still there: torch would wait forever"
        self.loads += 1
        return object()

    @property
    def lock(self):
        return Path(self.build_directory) / "lock"


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    ext = StandIn(tmp_path)
    monkeypatch.setattr(extensions, "get_extension", lambda name: ext)
    monkeypatch.setattr(extensions, "is_extension_available", lambda name: True)
    return ext


def test_a_dead_builders_lock_is_removed_and_the_kernel_built(stand_in):
    stand_in.lock.write_text("")
    old = time.time() - 2 * quanto_kernel.STALE_AFTER_S
    os.utime(stand_in.lock, (old, old))
    quanto_kernel.ensure_built("cpu", wait_s=5)
    assert stand_in.loads == 1 and not stand_in.lock.exists()


def test_a_live_builder_is_waited_for(stand_in):
    stand_in.lock.write_text("")
    threading.Timer(0.3, stand_in.lock.unlink).start()  # the other process finishes
    quanto_kernel.ensure_built("cpu", wait_s=10, poll_s=0.05)
    assert stand_in.loads == 1


def test_a_builder_that_does_not_finish_is_named_with_what_to_delete(stand_in):
    stand_in.lock.write_text("")
    with pytest.raises(quanto_kernel.KernelBuildStuck, match=r"delete that lock file") as stuck:
        quanto_kernel.ensure_built("cpu", wait_s=0.2, poll_s=0.05)
    assert str(stand_in.lock) in str(stuck.value) and stand_in.loads == 0


def test_the_real_cpu_kernel_loads_and_devices_without_one_are_a_no_op():
    quanto_kernel.ensure_built("cpu")  # built by set-up: loads at once
    quanto_kernel.ensure_built("meta")
