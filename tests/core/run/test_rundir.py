"""Run folder: atomic checkpoints (a SIGKILL mid-write never yields a checkpoint that looks complete),
latest/list by the step recorded inside, pruning, atomic single files and path containment."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flux_lora_lab.core.run import atomic
from flux_lora_lab.core.run import rundir as rd

REPO_ROOT = Path(__file__).resolve().parents[3]


def _ckpt(run, step, payload=b"lora", state=None):
    return run.write_checkpoint(
        step,
        {"lora.safetensors": atomic.bytes_writer(payload), "optimizer_state.safetensors": atomic.bytes_writer(b"opt" * step)},
        state or {"step": step, "data_position": step * 2},
    )


def test_layout_and_checkpoint_contents(tmp_path):
    run = rd.RunDir(tmp_path / "cat-toy")
    assert not run.root.exists()  # constructing touches nothing
    run.prepare()
    info = _ckpt(run, 125)
    assert info.path == run.root / "checkpoint_000125" and info.step == 125
    assert (info.path / "lora.safetensors").read_bytes() == b"lora"
    meta = json.loads((info.path / "training_state.json").read_text())
    assert meta["complete"] is True and meta["format_version"] == rd.CHECKPOINT_FORMAT_VERSION
    assert meta["files"] == {"lora.safetensors": 4, "optimizer_state.safetensors": 375}
    assert run.latest_checkpoint().state == {"step": 125, "data_position": 250}
    assert run.latest_checkpoint().file("lora.safetensors") == info.path / "lora.safetensors"
    with pytest.raises(FileNotFoundError, match="ema"):
        info.file("ema.safetensors")
    assert run.baseline_dir.name == "baseline"
    assert run.curve_path.name == "learning_curve.svg" and run.final_lora_path.name == "lora_final.safetensors"
    assert sorted(p.name for p in run.root.iterdir()) == ["checkpoint_000125"]


def test_step_comes_from_state_not_folder_name(tmp_path):
    run = rd.RunDir(tmp_path)
    info = _ckpt(run, 7)
    os.rename(info.path, tmp_path / "checkpoint_999999")  # a renamed folder keeps its real step
    _ckpt(run, 20)
    assert [c.step for c in run.list_checkpoints()] == [7, 20]
    assert run.latest_checkpoint().step == 20


def test_state_is_strict_json_even_with_nan_losses(tmp_path):
    run = rd.RunDir(tmp_path)
    info = _ckpt(run, 3, state={"losses": [(1, 0.5), (2, float("nan"))], "dir": tmp_path})
    json.loads((info.path / "training_state.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert run.latest_checkpoint().state == {"losses": [[1, 0.5], [2, None]], "dir": str(tmp_path)}
    assert info.state == run.latest_checkpoint().state


def test_incomplete_or_damaged_checkpoints_are_ignored(tmp_path):
    run = rd.RunDir(tmp_path)
    _ckpt(run, 10)
    (tmp_path / "checkpoint_000050").mkdir()  # no marker
    (tmp_path / "checkpoint_000050" / "lora.safetensors").write_bytes(b"x")
    bad = _ckpt(run, 60)
    (bad.path / "training_state.json").write_text("{not json")
    truncated = _ckpt(run, 70)
    (truncated.path / "optimizer_state.safetensors").write_bytes(b"op")  # size no longer matches
    future = _ckpt(run, 80)
    meta = json.loads((future.path / "training_state.json").read_text())
    (future.path / "training_state.json").write_text(json.dumps({**meta, "format_version": 99}))
    assert [c.step for c in run.list_checkpoints()] == [10]


def test_same_step_is_replaced_and_writer_error_leaves_nothing(tmp_path):
    run = rd.RunDir(tmp_path)
    _ckpt(run, 5, payload=b"old")
    _ckpt(run, 5, payload=b"new!")
    assert run.latest_checkpoint().file("lora.safetensors").read_bytes() == b"new!"

    def broken(path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run.write_checkpoint(6, {"lora.safetensors": broken}, {})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_000005"]
    with pytest.raises(ValueError, match="training_state.json"):
        run.write_checkpoint(7, {"training_state.json": atomic.bytes_writer(b"")}, {})
    with pytest.raises(ValueError, match="plain file name"):
        run.write_checkpoint(7, {"../escape": atomic.bytes_writer(b"")}, {})


def test_prepare_recovers_a_complete_checkpoint_that_missed_its_rename(tmp_path):
    run = rd.RunDir(tmp_path)
    _ckpt(run, 10)
    done = _ckpt(run, 20, payload=b"complete")
    os.replace(done.path, tmp_path / ".tmp-checkpoint_000020.deadbeef")  # crash before the final rename
    half = tmp_path / ".tmp-checkpoint_000030.cafebabe"
    half.mkdir()
    (half / "lora.safetensors").write_bytes(b"ha")  # crash before the marker: debris
    (tmp_path / ".tmp-learning_curve.svg.0123abcd").write_text("<sv")
    assert run.latest_checkpoint().step == 10
    removed = run.prepare()
    assert sorted(p.name for p in removed) == [".tmp-checkpoint_000030.cafebabe", ".tmp-learning_curve.svg.0123abcd"]
    assert [c.step for c in run.list_checkpoints()] == [10, 20]
    assert run.latest_checkpoint().file("lora.safetensors").read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000010", "checkpoint_000020"]


def test_prune_keeps_newest(tmp_path):
    run = rd.RunDir(tmp_path)
    for step in (10, 20, 30, 40):
        _ckpt(run, step)
    assert run.prune(None) == [] and run.prune(0) == []
    removed = run.prune(2)
    assert [p.name for p in removed] == ["checkpoint_000010", "checkpoint_000020"]
    assert [c.step for c in run.list_checkpoints()] == [30, 40]
    run.prune(1)
    assert [c.step for c in run.list_checkpoints()] == [40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000040"]
    with pytest.raises(ValueError, match="max_step_saves_to_keep"):
        run.prune(-1)


def test_atomic_file_write_and_containment(tmp_path):
    run = rd.RunDir(tmp_path)
    run.write_file("learning_curve.svg", atomic.text_writer("<svg/>"))
    run.write_file("learning_curve.svg", atomic.text_writer("<svg></svg>"))
    assert run.curve_path.read_text() == "<svg></svg>"
    assert [p.name for p in tmp_path.iterdir()] == ["learning_curve.svg"]
    assert run.resolve_inside("checkpoint_000010/prompt_0.png") == (tmp_path / "checkpoint_000010/prompt_0.png").resolve()
    for bad in ("../x.png", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="outside"):
            run.resolve_inside(bad)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import conftest  # registers flux_lora_lab
    from pathlib import Path
    from flux_lora_lab.core.run import atomic
    from flux_lora_lab.core.run import rundir as rd
    run = rd.RunDir(Path(sys.argv[1]))
    run.prepare()
    run.write_checkpoint(100, {{"lora.safetensors": atomic.bytes_writer(b"A" * 1000)}}, {{"step": 100}})

    def hang(path):
        path.write_bytes(b"B" * 500)  # half of the file, then the process is killed here
        print("MIDWRITE", flush=True)
        time.sleep(60)

    run.write_checkpoint(200, {{"lora.safetensors": atomic.bytes_writer(b"B" * 1000), "optimizer_state.safetensors": hang}},
                         {{"step": 200}})
""")


def test_checkpoint_killed_mid_write_leaves_previous_latest(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT.format(tests=str(REPO_ROOT / "tests")))
    run_root = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run_root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "MIDWRITE"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    temps = [p for p in run_root.iterdir() if p.name.startswith(atomic.TEMP_PREFIX)]
    assert len(temps) == 1 and (temps[0] / "lora.safetensors").exists()  # the half-written checkpoint
    run = rd.RunDir(run_root)
    assert run.latest_checkpoint().step == 100
    assert run.latest_checkpoint().file("lora.safetensors").read_bytes() == b"A" * 1000
    assert run.prepare() == temps  # the next start cleans the partial temp dir
    assert sorted(p.name for p in run_root.iterdir()) == ["checkpoint_000100"]
    assert [c.step for c in run.list_checkpoints()] == [100]
