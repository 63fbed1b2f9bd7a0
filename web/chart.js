// Loss chart drawing: raw loss (faint), its smoothed curve (strong) and the eval loss of the
// held-out set (dots joined, unsmoothed: one score per checkpoint) as an SVG with ticked axes
// and a grid, no libraries. Drawn at the element's real pixel size (the viewBox is its box), so the
// labels are never stretched when the panel or the chart is resized. Pure functions of the points
// and options: the panel's LossChart (loss_chart.js) keeps the state and calls `drawLossChart`.

import { logTicks, makeScale, niceTicks, tickLabel } from "./chart_scale.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const PAD = { left: 46, right: 10, top: 8, bottom: 30 };

/** Debiased exponential moving average (TensorBoard's smoothing): early points are not pulled
 * toward zero, so the smoothed curve starts where the raw one does. Non-finite values are skipped. */
export function smooth(values, weight = 0.9) {
    let last = 0;
    let count = 0;
    return values.map((value) => {
        if (value === null || !Number.isFinite(value)) return null;
        count += 1;
        last = last * weight + (1 - weight) * value;
        return last / (1 - weight ** count);
    });
}

/** A smoothing weight that suits the number of points: little for a handful, 0.9+ for thousands
 * (the slider's "auto"). */
export function smoothingFor(count) {
    if (count < 10) return 0.3;
    return Math.min(0.98, 1 - 4 / count ** 0.75);
}

function el(name, attrs = {}, text = null) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== null) node.textContent = text;
    return node;
}

/** A new, empty chart element (LossChart keeps it and calls `drawLossChart` on it). */
export function createLossChart() {
    return el("svg", { class: "fluxlab-chart", role: "img", "data-testid": "fluxlab-chart" });
}

/**
 * Draw `points` ([{step, loss}], step order) and the eval loss `evals` (same shape) into `svg`,
 * `width` × `height` pixels; both share the axes, so the eval scores read against the training loss.
 * @param {{width: number, height: number, log?: boolean, smoothing: number, evals?: Array}} options
 * Sets data-points, data-eval-points, data-log, data-smoothing and data-y-ticks / data-x-ticks
 * (the labels) for tests.
 */
export function drawLossChart(svg, points, { width, height, log = false, smoothing, evals = [] }) {
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    const drawable = (p) => p.loss !== null && Number.isFinite(p.loss) && (!log || p.loss > 0);
    const finite = points.filter(drawable);
    const scored = evals.filter(drawable);
    Object.assign(svg.dataset, { points: String(finite.length), evalPoints: String(scored.length), log: String(log),
        smoothing: smoothing.toFixed(3) });
    svg.setAttribute("aria-label", finite.length ? `loss over ${finite.length} steps` : "no loss yet");
    if (!finite.length) {
        svg.dataset.yTicks = svg.dataset.xTicks = "";
        svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "fluxlab-chart-empty" },
            points.length && log ? "no loss above 0 to draw on a log scale" : "waiting for the first step"));
        return;
    }
    const steps = finite.map((p) => p.step);
    const losses = finite.map((p) => p.loss);
    const smoothed = smooth(losses, smoothing);
    const [left, right, top, bottom] = [PAD.left, width - PAD.right, PAD.top, height - PAD.bottom];
    // The base model's score sits at step 0, before the first training step: the x axis takes it in.
    const allSteps = steps.concat(scored.map((p) => p.step));
    const allLosses = losses.concat(scored.map((p) => p.loss));
    const x = makeScale(Math.min(...allSteps), Math.max(...allSteps), left, right);
    const y = makeScale(Math.min(...allLosses), Math.max(...allLosses), bottom, top, log);
    const yTicks = (log ? logTicks : niceTicks)(...y.domain, Math.max(2, Math.round((bottom - top) / 32)));
    const xTicks = niceTicks(...x.domain, Math.max(2, Math.round((right - left) / 70)))
        .filter((t) => Number.isInteger(t) && t >= 0);

    svg.append(el("rect", { x: left, y: top, width: right - left, height: bottom - top, class: "fluxlab-chart-frame" }));
    for (const tick of yTicks) {
        const py = y.map(tick);
        svg.append(el("line", { x1: left, x2: right, y1: py, y2: py, class: "fluxlab-chart-grid" }));
        svg.append(el("text", { x: left - 4, y: py + 3, "text-anchor": "end", class: "fluxlab-chart-label" }, tickLabel(tick)));
    }
    for (const tick of xTicks) {
        const px = x.map(tick);
        svg.append(el("line", { x1: px, x2: px, y1: top, y2: bottom, class: "fluxlab-chart-grid" }));
        svg.append(el("text", { x: px, y: bottom + 12, "text-anchor": "middle", class: "fluxlab-chart-label" }, String(tick)));
    }
    svg.append(el("text", { x: (left + right) / 2, y: height - 3, "text-anchor": "middle", class: "fluxlab-chart-axis" }, "step"));
    svg.dataset.yTicks = yTicks.map(tickLabel).join(",");
    svg.dataset.xTicks = xTicks.join(",");
    const line = (at, ys) => at.map((p, i) => `${x.map(p.step).toFixed(1)},${y.map(ys[i]).toFixed(1)}`).join(" ");
    svg.append(el("polyline", { points: line(finite, losses), class: "fluxlab-chart-raw" }));
    svg.append(el("polyline", { points: line(finite, smoothed), class: "fluxlab-chart-smooth" }));
    if (finite.length === 1) svg.append(el("circle", { cx: x.map(steps[0]), cy: y.map(losses[0]), r: 2.5, class: "fluxlab-chart-dot" }));
    if (!scored.length) return;
    svg.append(el("polyline", { class: "fluxlab-chart-eval",
        points: line(scored, scored.map((p) => p.loss)) }));
    for (const p of scored) {
        const dot = el("circle", { cx: x.map(p.step), cy: y.map(p.loss), r: 3, class: "fluxlab-chart-eval-dot" });
        dot.append(el("title", {}, `eval loss ${tickLabel(p.loss)} at step ${p.step}`));
        svg.append(dot);
    }
}
