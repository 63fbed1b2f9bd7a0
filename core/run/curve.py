"""learning_curve.svg (and the same plot as a PIL image for the node's IMAGE output), no matplotlib.

Raw loss is drawn thin and light, a debiased EMA of it bold on top (per-step flow-matching loss is very
noisy: the trend is only visible smoothed). Non-finite losses are left out. Both renderers share one
layout so the SVG in the run folder and the IMAGE on the canvas show the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

RAW_COLOR = "#9ecae1"
SMOOTH_COLOR = "#d62728"
AXIS_COLOR = "#444444"
GRID_COLOR = "#e5e5e5"
MARKER_COLOR = "#2ca02c"
EVAL_COLOR = "#ff7f0e"


def ema_smooth(values: Sequence[float], smoothing: float = 0.9) -> list[float]:
    """Debiased exponential moving average (TensorBoard-style): early points are not pulled toward 0."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out, avg, weight = [], 0.0, 0.0
    for value in values:
        avg = smoothing * avg + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)
        out.append(avg / weight)
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def loss_points(records: Iterable) -> tuple[list[int], list[float]]:
    """(steps, losses) from event-log records; a resumed run's repeated steps keep the latest value."""
    by_step: dict[int, float] = {}
    for record in records:
        if record.kind == "step" and record.event.loss is not None:
            by_step[record.event.step] = record.event.loss
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


@dataclass(frozen=True)
class CurveLayout:
    width: int
    height: int
    raw: list[tuple[float, float]]
    smooth: list[tuple[float, float]]
    x_ticks: list[tuple[float, str]]  # (pixel x, label)
    y_ticks: list[tuple[float, str]]  # (pixel y, label)
    markers: list[float]  # pixel x of checkpoint steps
    evals: list[tuple[float, float]]  # eval loss points (core/train/evaluation.py)
    plot_box: tuple[float, float, float, float]  # left, top, right, bottom
    title: str


def layout_curve(
    steps: Sequence[int],
    losses: Sequence[float],
    *,
    smoothing: float = 0.9,
    width: int = 720,
    height: int = 360,
    title: str = "Training loss",
    markers: Sequence[int] = (),
    evals: Sequence[tuple[int, float]] = (),
    max_points: int = 2000,
) -> CurveLayout:
    """Pixel geometry for the plot; more than `max_points` raw points are thinned by stride (smoothing uses all).
    `evals`: (step, eval loss) points drawn on the same axes (the y range covers them too)."""
    if len(steps) != len(losses):
        raise ValueError(f"steps ({len(steps)}) and losses ({len(losses)}) must have the same length")
    pairs = [(int(s), float(v)) for s, v in zip(steps, losses) if v is not None and math.isfinite(v)]
    xs = [s for s, _ in pairs]
    ys = [v for _, v in pairs]
    eval_pairs = [(int(s), float(v)) for s, v in evals if v is not None and math.isfinite(v)]
    smooth = ema_smooth(ys, smoothing)
    if len(xs) > max_points:
        keep = sorted(set(range(0, len(xs), math.ceil(len(xs) / max_points))) | {len(xs) - 1})
        xs, ys, smooth = [xs[i] for i in keep], [ys[i] for i in keep], [smooth[i] for i in keep]
    left, top, right, bottom = 64.0, 32.0, width - 16.0, height - 40.0
    all_x, all_y = xs + [s for s, _ in eval_pairs], ys + [v for _, v in eval_pairs]
    x_lo, x_hi = (min(all_x), max(all_x)) if all_x else (0, 1)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = (min(all_y), max(all_y)) if all_y else (0.0, 1.0)
    pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.05, 1e-3)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def px(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * (right - left), 2)

    def py(y: float) -> float:
        return round(bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top), 2)

    x_ticks = [(px(t), f"{int(t)}") for t in nice_ticks(x_lo, x_hi, 6) if t == int(t)]
    y_ticks = [(py(t), f"{t:.4g}") for t in nice_ticks(y_lo, y_hi, 5)]
    return CurveLayout(
        width=width,
        height=height,
        raw=[(px(x), py(y)) for x, y in zip(xs, ys)],
        smooth=[(px(x), py(y)) for x, y in zip(xs, smooth)],
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        markers=[px(m) for m in markers if x_lo <= m <= x_hi],
        evals=[(px(x), py(y)) for x, y in eval_pairs],
        plot_box=(left, top, right, bottom),
        title=title,
    )


def render_svg(steps: Sequence[int], losses: Sequence[float], **options) -> str:
    """A self-contained SVG document (options as `layout_curve`)."""
    lay = layout_curve(steps, losses, **options)
    left, top, right, bottom = lay.plot_box
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width}" height="{lay.height}" '
        f'viewBox="0 0 {lay.width} {lay.height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{lay.width}" height="{lay.height}" fill="white"/>',
        f'<text x="{lay.width / 2}" y="18" text-anchor="middle" font-size="13">{escape(lay.title)}</text>',
    ]
    for y, label in lay.y_ticks:
        parts.append(f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="{GRID_COLOR}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{escape(label)}</text>')
    for x, label in lay.x_ticks:
        parts.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="{AXIS_COLOR}"/>')
        parts.append(f'<text x="{x}" y="{bottom + 16}" text-anchor="middle">{escape(label)}</text>')
    for x in lay.markers:
        parts.append(f'<line class="checkpoint" x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" '
                     f'stroke="{MARKER_COLOR}" stroke-dasharray="4 3"/>')
    parts.append(f'<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="{AXIS_COLOR}"/>')
    parts.append(f'<text x="{(left + right) / 2}" y="{lay.height - 6}" text-anchor="middle">step</text>')
    if lay.raw:
        parts.append(_polyline("raw", lay.raw, RAW_COLOR, 1))
        parts.append(_polyline("smoothed", lay.smooth, SMOOTH_COLOR, 2))
    else:
        parts.append(f'<text x="{(left + right) / 2}" y="{(top + bottom) / 2}" text-anchor="middle">no steps yet</text>')
    if lay.evals:
        parts.append(_polyline("eval", lay.evals, EVAL_COLOR, 2))
        parts.extend(f'<circle class="eval-point" cx="{x}" cy="{y}" r="3" fill="{EVAL_COLOR}"/>' for x, y in lay.evals)
        parts.append(f'<text x="{right}" y="{top - 6}" text-anchor="end" fill="{EVAL_COLOR}">eval loss</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render_image(steps: Sequence[int], losses: Sequence[float], **options):
    """The same plot as an RGB PIL image (for TrainLoRA's loss-curve IMAGE output)."""
    from PIL import Image, ImageDraw

    lay = layout_curve(steps, losses, **options)
    left, top, right, bottom = lay.plot_box
    image = Image.new("RGB", (lay.width, lay.height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((lay.width / 2, 10), lay.title, fill=AXIS_COLOR, anchor="mt")
    for y, label in lay.y_ticks:
        draw.line([(left, y), (right, y)], fill=GRID_COLOR)
        draw.text((left - 6, y), label, fill=AXIS_COLOR, anchor="rm")
    for x, label in lay.x_ticks:
        draw.line([(x, bottom), (x, bottom + 4)], fill=AXIS_COLOR)
        draw.text((x, bottom + 8), label, fill=AXIS_COLOR, anchor="mt")
    for x in lay.markers:
        draw.line([(x, top), (x, bottom)], fill=MARKER_COLOR)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=AXIS_COLOR)
    if len(lay.raw) > 1:
        draw.line(lay.raw, fill=RAW_COLOR, width=1)
        draw.line(lay.smooth, fill=SMOOTH_COLOR, width=2)
    if lay.evals:
        draw.line(lay.evals, fill=EVAL_COLOR, width=2)
        for x, y in lay.evals:
            draw.ellipse([(x - 3, y - 3), (x + 3, y + 3)], fill=EVAL_COLOR)
    return image


def _polyline(css_class: str, points: list[tuple[float, float]], color: str, width: int) -> str:
    coords = " ".join(f"{x},{y}" for x, y in points)
    return (f'<polyline class="{css_class}" points="{coords}" fill="none" stroke="{color}" '
            f'stroke-width="{width}" stroke-linejoin="round"/>')


def write_svg(path, steps: Sequence[int], losses: Sequence[float], **options) -> None:
    """Render and write atomically (a half-written SVG would be served to the panel otherwise)."""
    from .atomic import atomic_write, text_writer

    atomic_write(path, text_writer(render_svg(steps, losses, **options)))


__all__ = ["ema_smooth", "nice_ticks", "loss_points", "layout_curve", "render_svg", "render_image", "write_svg"]
