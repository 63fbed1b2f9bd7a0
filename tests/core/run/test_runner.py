"""RunRegistry: background runs, status from events, failure reporting, control through the handle and
files, duplicate-id refusal, and discovery of past runs from their folders after a restart."""

import json
import threading
import time

import pytest

from flux_lora_lab.core.run import events as ev
from flux_lora_lab.core.run.event_log import EventLog
from flux_lora_lab.core.run.progress import Throughput, memory_snapshot
from flux_lora_lab.core.run.runner import RunError, RunRegistry, check_run_id, default_registry


def make_train(run_id, total=20, step_s=0.005, gate=None, start_step=0):
    """A tiny stand-in trainer that honours control the way core/train/trainer.py must."""

    def train(control, emit):
        emit(ev.Started(run_id, total, start_step, {"rank": 4}))
        step = start_step
        while step < total:
            if gate is not None:
                gate.wait(5)
            step += 1
            time.sleep(step_s)
            emit(ev.Step(step, total, 1.0 / step, 1e-4, its=100.0, eta_s=0.1, memory=memory_snapshot()))
            request = control.poll()
            if request.save_now or request.stop:
                emit(ev.Checkpoint(step, f"checkpoint_{step:06d}"))
            if request.stop:
                return emit(ev.Finished(step, None, stopped_early=True))
            if request.pause:
                emit(ev.Paused(step))
                if control.wait_while_paused(tick_s=0.01).stop:
                    return emit(ev.Finished(step, None, stopped_early=True))
                emit(ev.Resumed(step))
        return "lora_final.safetensors"  # the runner emits finished with this path

    return train


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_run_to_completion_and_its_history(tmp_path):
    registry = RunRegistry()
    handle = registry.start("a", tmp_path / "a", make_train("a", total=10))
    assert handle.join(10) and handle.status == "finished"
    kinds = [r.kind for r in handle.events.history()]  # late: the whole history is there
    assert kinds == ["started"] + ["step"] * 10 + ["finished"]
    summary = handle.summary()
    assert summary["step"] == 10 and summary["total_steps"] == 10 and summary["lora_path"] == "lora_final.safetensors"
    assert summary["status"] == "finished" and summary["loss"] == pytest.approx(0.1)
    assert (tmp_path / "a" / "events.jsonl").exists()
    detail = json.loads(json.dumps(handle.detail(), allow_nan=False))
    assert detail["status"] == "finished" and [e["seq"] for e in detail["events"]] == list(range(12))
    assert [e["seq"] for e in handle.detail(since_seq=9)["events"]] == [10, 11]
    assert registry.get("a") is handle and registry.list() == [handle]
    with pytest.raises(RunError, match="not running"):
        handle.pause()


def test_failure_is_reported_with_message(tmp_path, caplog):
    def train(control, emit):
        emit(ev.Started("b", 5, 0))
        emit(ev.Step(1, 5, 0.5, 1e-4))
        raise ValueError("rank must be > 0 (got 0)")

    handle = RunRegistry().start("b", tmp_path / "b", train)
    handle.join(5)
    last = handle.events.last()
    assert last.kind == "failed" and last.event.message == "ValueError: rank must be > 0 (got 0)"
    assert last.event.step == 1 and handle.status == "failed"
    assert handle.summary()["error"] == "ValueError: rank must be > 0 (got 0)"
    assert "Traceback" in caplog.text


def test_started_event_must_name_this_run(tmp_path):
    handle = RunRegistry().start("mine", tmp_path / "mine", make_train("someone-else"))
    handle.join(5)
    assert handle.status == "failed" and "'someone-else'" in handle.events.last().event.message


def test_pause_checkpoint_resume_stop_through_handle_and_files(tmp_path):
    gate = threading.Event()
    handle = RunRegistry().start("c", tmp_path / "c", make_train("c", total=10_000, step_s=0.001, gate=gate),
                                 file_poll_s=0.01)
    gate.set()
    assert wait_for(lambda: handle.status == "running")
    handle.pause()
    assert wait_for(lambda: handle.status == "paused")
    paused_len = len(handle.events)
    time.sleep(0.1)
    assert len(handle.events) == paused_len  # no steps while paused
    (tmp_path / "c" / ".pause").unlink()  # resume by file
    assert wait_for(lambda: handle.status == "running")
    (tmp_path / "c" / ".checkpoint").touch()
    assert wait_for(lambda: handle.events.last("checkpoint") is not None)
    assert not (tmp_path / "c" / ".checkpoint").exists()
    handle.stop()
    assert handle.join(5)
    assert handle.status == "stopped" and handle.events.last().event.stopped_early
    kinds = [r.kind for r in handle.events.history()]
    assert kinds.index("paused") < kinds.index("resumed") < kinds.index("checkpoint")


def test_duplicate_live_run_is_refused_and_restart_after_end_is_allowed(tmp_path):
    registry = RunRegistry()
    gate = threading.Event()
    first = registry.start("same", tmp_path / "same", make_train("same", total=3, gate=gate))
    with pytest.raises(RunError, match="already"):
        registry.start("same", tmp_path / "other", make_train("same"))
    with pytest.raises(RunError, match="already"):
        registry.start("other-name", tmp_path / "same", make_train("other-name"))  # same folder, different id
    gate.set()
    first.join(5)
    second = registry.start("same", tmp_path / "same", make_train("same", total=5, start_step=3))
    second.join(5)
    assert second.status == "finished"
    starts = [r.event.start_step for r in second.events.history() if r.kind == "started"]
    assert starts == [0, 3]  # history continues in the same events.jsonl

    def fail(control, emit):
        emit(ev.Started("same", 5, 5))
        raise RuntimeError("out of memory")

    third = registry.start("same", tmp_path / "same", fail)
    third.join(5)
    summary = third.summary()  # the newest end event wins over the earlier session's finish
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: out of memory"
    assert summary["lora_path"] is None


def test_discover_lists_past_runs_after_restart(tmp_path):
    registry = RunRegistry()
    registry.start("done", tmp_path / "done", make_train("done", total=3)).join(5)
    (tmp_path / "crashed").mkdir()
    crashed = EventLog(tmp_path / "crashed" / "events.jsonl")
    crashed.append(ev.Started("crashed", 100, 0))
    crashed.append(ev.Step(1, 100, 0.3, 1e-4))  # then the server died: no finished/failed
    (tmp_path / "not-a-run").mkdir()

    fresh = RunRegistry()  # a new server process
    found = fresh.discover(tmp_path)
    by_id = {h.run_id: h for h in found}
    assert set(by_id) == {"done", "crashed"}
    assert by_id["done"].status == "finished" and by_id["crashed"].status == "interrupted"
    assert not by_id["done"].live and by_id["done"].join(0)
    assert len(by_id["done"].events.history()) == 5
    with pytest.raises(RunError, match="interrupted"):
        by_id["crashed"].stop()
    resumed = fresh.start("crashed", tmp_path / "crashed", make_train("crashed", total=3))
    assert fresh.get("crashed") is resumed and resumed.join(5) and resumed.status == "finished"


def test_concurrent_control_calls_during_a_run(tmp_path):
    handle = RunRegistry().start("d", tmp_path / "d", make_train("d", total=10_000, step_s=0.0005), file_poll_s=0.005)
    assert wait_for(lambda: handle.status == "running")
    errors = []

    def hammer():
        try:
            for _ in range(100):
                handle.pause(); handle.request_checkpoint(); handle.resume()
                handle.summary()
        except Exception as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    handle.resume()
    handle.stop()
    assert handle.join(5) and not errors and handle.status == "stopped"
    seqs = [r.seq for r in handle.events.history()]
    assert seqs == list(range(len(seqs)))


def test_throughput_and_registry_singleton():
    now = [0.0]
    t = Throughput(total_steps=100, clock=lambda: now[0], smoothing=0.0)
    assert t.update(0) == (None, None)
    now[0] = 2.0
    its, eta = t.update(10)
    assert its == pytest.approx(5.0) and eta == pytest.approx(18.0)
    assert default_registry() is default_registry()
    assert "ram_mb" in memory_snapshot()


def test_run_ids_are_safe_folder_names_and_url_segments(tmp_path):
    for good in ("cat-toy", "style_v2.1", "my run", "Katze", "猫"):
        assert check_run_id(good) == good
    for bad in ("", "../x", "a/b", "a\\b", ".hidden", "-x", "x.", "x ", "a" * 101, None):
        with pytest.raises(ValueError, match="run name"):
            check_run_id(bad)
    with pytest.raises(ValueError, match="run name"):
        RunRegistry().start("../escape", tmp_path / "x", make_train("../escape"))
    assert not (tmp_path / "x").exists()
