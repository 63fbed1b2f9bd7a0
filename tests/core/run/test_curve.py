"""learning_curve.svg: valid XML, one polyline point per finite loss (raw and smoothed), axis labels."""

import math
import xml.etree.ElementTree as ET

import pytest

from flux_lora_lab.core.run import curve
from flux_lora_lab.core.run.event_log import EventLog
from flux_lora_lab.core.run.events import Step

SVG = "{http://www.w3.org/2000/svg}"


def _polylines(svg):
    root = ET.fromstring(svg)
    return {p.get("class"): p.get("points").split() for p in root.iter(f"{SVG}polyline")}, root


def test_svg_is_valid_with_expected_point_counts_and_labels():
    steps = list(range(1, 51))
    losses = [1.0 / s for s in steps]
    losses[10] = float("nan")  # a non-finite loss is skipped, not drawn at infinity
    svg = curve.render_svg(steps, losses, markers=[25, 50], title="loss <run & 1>")
    lines, root = _polylines(svg)
    assert len(lines["raw"]) == 49 and len(lines["smoothed"]) == 49
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "step" in texts and "loss <run & 1>" in texts
    assert {"10", "20", "30", "40", "50"} <= set(texts)
    assert len([l for l in root.iter(f"{SVG}line") if l.get("class") == "checkpoint"]) == 2
    for x, y in (p.split(",") for p in lines["raw"]):
        assert 0 <= float(x) <= 720 and 0 <= float(y) <= 360


def test_smoothing_is_debiased_ema():
    assert curve.ema_smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    values = curve.ema_smooth([1.0, 0.0], 0.5)
    assert values[0] == 1.0 and values[1] == pytest.approx(0.5 * 0.5 / 0.75)
    lines, _ = _polylines(curve.render_svg([1, 2, 3, 4], [4.0, 0.0, 4.0, 0.0], smoothing=0.9))
    ys_raw = [float(p.split(",")[1]) for p in lines["raw"]]
    ys_smooth = [float(p.split(",")[1]) for p in lines["smoothed"]]
    assert max(ys_smooth) - min(ys_smooth) < max(ys_raw) - min(ys_raw)


def test_edge_cases_empty_single_constant_and_thinning():
    ET.fromstring(curve.render_svg([], []))
    lines, _ = _polylines(curve.render_svg([7], [0.3]))
    assert len(lines["raw"]) == 1
    lines, _ = _polylines(curve.render_svg([1, 2, 3], [0.5, 0.5, 0.5]))
    assert all(not math.isnan(float(p.split(",")[1])) for p in lines["raw"])
    lines, _ = _polylines(curve.render_svg(list(range(10000)), [1.0] * 10000, max_points=500))
    assert 450 <= len(lines["raw"]) <= 501 and lines["raw"][-1].startswith("704.0,")
    with pytest.raises(ValueError):
        curve.render_svg([1, 2], [1.0])


def test_loss_points_from_events_keep_latest_value_per_step():
    log = EventLog()
    for step, loss in [(1, 0.9), (2, 0.8), (2, 0.7), (3, None)]:
        log.append(Step(step, 3, loss if loss is not None else float("nan"), 1e-4))
    steps, losses = curve.loss_points(log.history())
    assert steps == [1, 2, 3] and losses[:2] == [0.9, 0.7] and math.isnan(losses[2])


def test_write_svg_and_image(tmp_path):
    path = tmp_path / "learning_curve.svg"
    curve.write_svg(path, [1, 2, 3], [1.0, 0.5, 0.25])
    ET.fromstring(path.read_text())
    image = curve.render_image([1, 2, 3], [1.0, 0.5, 0.25], width=300, height=200)
    assert image.size == (300, 200) and image.mode == "RGB"
    assert len(image.getcolors(maxcolors=4096)) > 2  # something was drawn
    assert [p.name for p in tmp_path.iterdir()] == ["learning_curve.svg"]  # no temp left behind
