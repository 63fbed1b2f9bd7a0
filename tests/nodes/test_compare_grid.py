"""CompareCheckpoints' pure parts: the labelled grid (core/run/grid.py) and which rows a run folder gives
(nodes/_checkpoints.py). No ComfyUI here; the sampling itself is proven in tests/e2e/test_sample_compare.py."""

import numpy as np
import pytest
import torch

from flux_lora_lab.core.train.checkpoint import LORA_FILE
from flux_lora_lab.core.run.grid import GridLayout, compose_grid, fit_text, font_size, label_font, label_height, note_strip
from flux_lora_lab.core.model.lora import LoraWeights
from flux_lora_lab.core.model.lora_format import save_lora
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.nodes._checkpoints import RunCheckpoints, TrainingProgress


def _cells(rows, cols, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    # Values between uint8 levels: a uint8 round trip would change them, the grid must not.
    return [[rng.random((h, w, 3), dtype=np.float32) for _ in range(cols)] for _ in range(rows)]


def test_layout_geometry_tiles_the_canvas_without_overlap():
    layout = GridLayout(rows=3, cols=2, cell_width=32, cell_height=24, label_height=13)
    assert (layout.width, layout.height) == (2 * 32, 3 * 24 + 4 * 13)
    owner = np.zeros((layout.height, layout.width), dtype=int)
    boxes = [layout.column_label_box(c) for c in range(2)] + [layout.row_label_box(r) for r in range(3)]
    boxes += [layout.cell_box(r, c) for r in range(3) for c in range(2)]
    for left, top, right, bottom in boxes:
        owner[top:bottom, left:right] += 1
    assert (owner == 1).all(), "every pixel belongs to exactly one label strip or cell"
    assert layout.cell_box(2, 1) == (32, 13 + 2 * (13 + 24) + 13, 64, layout.height)


def test_grid_has_the_documented_size_and_cells_are_copied_exactly():
    cells = _cells(rows=3, cols=2)
    grid = compose_grid(cells, ["base", "step 125", "final"], ["a red fox", "a blue car"])
    label = label_height(32)
    assert label >= 8
    assert grid.dtype == np.float32 and grid.shape == (3 * 24 + 4 * label, 2 * 32, 3)
    layout = GridLayout(3, 2, 32, 24, label)
    for r in range(3):
        for c in range(2):
            left, top, right, bottom = layout.cell_box(r, c)
            assert np.array_equal(grid[top:bottom, left:right], cells[r][c]), (r, c)


def test_labels_are_drawn_dark_on_white_and_differ_per_row():
    cells = _cells(rows=2, cols=1, w=64)
    grid = compose_grid(cells, ["base", "step 125"], ["a red fox"])
    layout = GridLayout(2, 1, 64, 24, label_height(64))
    strips = []
    for box in (layout.column_label_box(0), layout.row_label_box(0), layout.row_label_box(1)):
        left, top, right, bottom = box
        strip = grid[top:bottom, left:right]
        assert strip.max() == 1.0 and strip.min() < 0.3, f"no text drawn in {box}"
        assert (strip == 1.0).mean() > 0.5, "label strips are mostly white background"
        strips.append(strip)
    assert not np.array_equal(strips[1], strips[2]), "'base' and 'step 125' must look different"


def test_long_prompts_are_cut_to_the_column_width():
    text = "a very long prompt about a red fox sitting in the snow at dawn"
    font = label_font(10)
    fitted = fit_text(text, 60, font)
    assert fitted.endswith("...") and len(fitted) < len(text)
    assert font.getlength(fitted) <= 60
    assert fit_text("fox", 60, font) == "fox"


def test_labels_grow_with_the_cells():
    assert font_size(64) == 10 and font_size(1024) == 25
    assert label_height(1024) > 2 * label_height(64) - 6, "1024 px cells need legible (larger) labels"


def test_grid_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="row labels"):
        compose_grid(_cells(2, 2), ["base"], ["a", "b"])
    cells = _cells(1, 2)
    cells[0][1] = np.zeros((10, 10, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"cell \(0, 1\)"):
        compose_grid(cells, ["base"], ["a", "b"])


# --- rows of a run folder ------------------------------------------------------------------------

def _lora_writer(step):
    weights = {"double_blocks.0.img_attn.qkv": LoraWeights(down=torch.ones(2, 8), up=torch.ones(24, 2), alpha=2.0)}
    return lambda path: save_lora(path, weights, "flux1", step=step)


@pytest.fixture
def run_folder(tmp_path):
    root = tmp_path / "my run"
    run = RunDir(root)
    run.prepare()
    for step in (10, 5, 20):
        run.write_checkpoint(step, {LORA_FILE: _lora_writer(step)}, state={"step": step})
    _lora_writer(20)(run.final_lora_path)
    return root


def test_rows_for_all_latest_and_listed_steps(run_folder):
    run = RunCheckpoints("my run", run_folder)
    rows = run.rows("all", include_base=True, include_final=True)
    assert [r.label for r in rows] == ["base", "step 5", "step 10", "step 20", "final"]
    assert [r.checkpoint for r in rows] == ["base", "checkpoint_000005", "checkpoint_000010", "checkpoint_000020", "final"]
    assert rows[0].lora_path is None and rows[-1].step == 20  # final's step comes from the file's metadata
    assert rows[1].lora_path == run_folder / "checkpoint_000005" / LORA_FILE
    assert [r.step for r in run.rows("latest 2", False, False)] == [10, 20]
    assert [r.step for r in run.rows(" 20,5 ", False, True)] == [5, 20, 20]
    assert [r.label for r in run.rows("none", True, False)] == ["base"]
    assert rows[1].describe() == {"label": "step 5", "checkpoint": "checkpoint_000005", "step": 5,
                                  "lora_path": str(run_folder / "checkpoint_000005" / LORA_FILE)}


def test_single_choice_latest_final_step(run_folder):
    run = RunCheckpoints("my run", run_folder)
    assert run.select("latest", 0).step == 20
    assert run.select("final", 0).lora_path == run_folder / "lora_final.safetensors"
    assert run.select("step", 10).checkpoint == "checkpoint_000010"


def test_a_missing_step_names_the_run_and_what_exists(run_folder):
    run = RunCheckpoints("my run", run_folder)
    with pytest.raises(ValueError, match=r"run 'my run' .*no checkpoint at step 7; it has steps 5, 10, 20 and final"):
        run.select("step", 7)
    with pytest.raises(ValueError, match=r"no checkpoint at step 15, 30"):
        run.rows("15, 30, 5", True, True)
    with pytest.raises(ValueError, match="not understood"):
        run.rows("latest", True, True)


def test_a_run_without_checkpoints_says_so(tmp_path):
    RunDir(tmp_path / "empty").prepare()
    run = RunCheckpoints("empty", tmp_path / "empty")
    with pytest.raises(ValueError, match=r"run 'empty' .*no checkpoint saved yet.*no complete checkpoints and no final LoRA"):
        run.select("latest", 0)
    with pytest.raises(ValueError, match="no lora_final.safetensors yet"):
        run.rows("none", True, True)
    with pytest.raises(ValueError, match="'all' asked for checkpoints but none is saved yet"):
        run.rows("all", True, False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunCheckpoints("gone", tmp_path / "gone")


# --- a run that is still training ------------------------------------------------------------------

@pytest.fixture
def training_folder(tmp_path):
    """A run at step 12 of 40, saving every 10: checkpoint 10 is on disk, 20, 30, 40 and final are to come."""
    root = tmp_path / "live run"
    run = RunDir(root)
    run.prepare()
    run.write_checkpoint(10, {LORA_FILE: _lora_writer(10)}, state={"step": 10})
    return root


def test_a_run_still_training_is_compared_as_it_is_and_says_what_is_coming(training_folder):
    live = RunCheckpoints("live run", training_folder, TrainingProgress(step=12, total_steps=40, save_every=10))
    assert [r.label for r in live.rows("all", True, True)] == ["base", "step 10"]
    assert live.coming("all", True).startswith("training - 1 of 4 checkpoints so far (step 12 of 40); "
                                               "the final LoRA comes at the end.")
    assert "run_name 'live run'" in live.coming("all", True)
    assert [r.label for r in live.rows("latest 2", True, False)] == ["base", "step 10"]
    assert live.coming("latest 2", False).startswith("training - 1 of 2 checkpoints so far (step 12 of 40).")
    assert [r.label for r in live.rows("10, 30", False, False)] == ["step 10"]  # 30 is to come
    assert live.coming("10, 30", False).startswith("training - 1 of 2 checkpoints so far")
    with pytest.raises(ValueError, match="no checkpoint at step 5"):  # step 5 is past and was never saved
        live.rows("5", True, True)
    assert RunCheckpoints("live run", training_folder).coming("all", True) is None  # not training: no note


def test_a_run_still_starting_has_no_rows_to_show_but_no_error(tmp_path):
    RunDir(tmp_path / "new").prepare()
    starting = RunCheckpoints("new", tmp_path / "new", TrainingProgress(step=None, total_steps=None))
    assert starting.rows("latest 4", False, True) == []
    assert starting.coming("latest 4", True).startswith("training - 0 checkpoints so far (starting)")
    with pytest.raises(ValueError, match="'all' asked for checkpoints but none is saved yet"):
        RunCheckpoints("new", tmp_path / "new").rows("all", True, True)  # the same folder, not training


def test_steps_to_come_include_the_last_step():
    assert TrainingProgress(step=12, total_steps=45, save_every=10).steps_to_come() == [20, 30, 40, 45]
    assert TrainingProgress(step=0, total_steps=45, save_every=0).steps_to_come() == [45]
    assert TrainingProgress(step=45, total_steps=45, save_every=10).steps_to_come() == []


def test_the_note_strip_wraps_to_the_grid_width():
    text = "training - 1 of 4 checkpoints so far (step 12 of 40); the final LoRA comes at the end."
    one_line = note_strip("short", 400, 200)
    wrapped = note_strip(text, 128, 64)
    assert one_line.shape[1] == 400 and wrapped.shape[1] == 128 and wrapped.dtype == np.float32
    assert wrapped.shape[0] > 3 * label_height(64), "a long note takes several lines in a narrow grid"
    assert (wrapped < 0.5).any(), "the text is drawn"
