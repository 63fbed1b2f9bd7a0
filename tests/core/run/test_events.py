"""Event types, the JSON form, the thread-safe log, replay for late subscribers and the on-disk copy."""

import json
import math
import threading
from pathlib import Path

import pytest

from flux_lora_lab.core.run import events as ev
from flux_lora_lab.core.run.event_log import EventLog


def test_payload_is_json_safe_and_round_trips():
    step = ev.Step(step=3, total=10, loss=float("nan"), lr=1e-4, its=2.5, eta_s=2.8, memory={"ram_mb": 12.5})
    log = EventLog()
    record = log.append(step)
    data = record.to_dict()
    assert data["kind"] == "step" and data["seq"] == 0 and data["loss"] is None  # NaN would break JSON.parse
    json.dumps(data, allow_nan=False)
    back = ev.Record.from_dict(json.loads(json.dumps(data)))
    assert back.event.step == 3 and back.event.memory == {"ram_mb": 12.5}
    preview = ev.Preview(step=5, images=(Path("checkpoint_000005") / "prompt_0.png",))
    again = ev.Record.from_dict(log.append(preview).to_dict())
    assert again.event == ev.Preview(step=5, images=("checkpoint_000005/prompt_0.png",))


def test_every_kind_round_trips():
    samples = [
        ev.Started("r", 10, 0, {"rank": 4}), ev.Step(1, 10, 0.5, 1e-4), ev.Checkpoint(1, "checkpoint_000001"),
        ev.Preview(1, ("a.png",)), ev.EvalLoss(5, 0.25), ev.Paused(1), ev.Resumed(1), ev.Finished(10, "lora_final.safetensors"),
        ev.Failed(2, "boom"), ev.DatasetReport({"images": 3}), ev.Info("caching latents", None),
    ]
    assert {s.kind for s in samples} == set(ev.EVENT_TYPES)
    log = EventLog()
    for sample in samples:
        assert ev.Record.from_dict(json.loads(json.dumps(log.append(sample).to_dict()))).event == sample


def test_append_rejects_non_events_and_closed_log():
    log = EventLog()
    with pytest.raises(TypeError):
        log.append({"kind": "step"})
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.append(ev.Paused(1))


def test_listener_replay_order_and_failures_do_not_break_appends():
    log = EventLog()
    log.append(ev.Info("a"))
    got = []
    remove = log.add_listener(lambda r: got.append(r.seq))
    log.add_listener(lambda r: 1 / 0)  # logged, never raised into training
    log.append(ev.Info("b"))
    remove()
    log.append(ev.Info("c"))
    assert got == [0, 1]


def test_concurrent_appends_get_unique_ordered_sequence_numbers(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    listener_seqs = []
    log.add_listener(lambda r: listener_seqs.append(r.seq))

    def worker(k):
        for i in range(200):
            log.append(ev.Step(i, 200, float(k), 1e-4))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    seqs = [r.seq for r in log.history()]
    assert seqs == list(range(800)) and listener_seqs == seqs
    on_disk = [json.loads(line)["seq"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert on_disk == seqs


def test_history_survives_restart_and_continues_sequence(tmp_path):
    path = tmp_path / "events.jsonl"
    first = EventLog(path)
    first.append(ev.Started("r", 10, 0))
    first.append(ev.Step(1, 10, 0.5, 1e-4))
    first.close()
    with open(path, "a") as fh:
        fh.write('{"seq": 2, "time": 1.0, "kind": "st')  # torn line from a crash mid-append
    second = EventLog(path)
    assert [r.kind for r in second.history()] == ["started", "step"]
    assert second.append(ev.Started("r", 10, 1)).seq == 2
    assert math.isclose(second.history()[1].event.loss, 0.5)
    read_only = EventLog(path, read_only=True)
    assert len(read_only) == 3 and read_only.closed
    assert read_only.history()[-1].event.start_step == 1


def test_json_safe_handles_numpy_and_torch_values():
    import numpy as np
    import torch

    data = {"a": np.float32(0.5), "b": torch.tensor([1.0, float("inf")]), "c": np.arange(2), 3: (Path("x"),)}
    assert ev.json_safe(data) == {"a": 0.5, "b": [1.0, None], "c": [0, 1], "3": ["x"]}
