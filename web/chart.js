// Loss chart: raw loss (faint) and its smoothed curve (strong) as an SVG, no libraries. Pure
// functions of the points, so the panel can redraw on every step event without keeping state here.

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 160;
const PAD = { left: 42, right: 8, top: 8, bottom: 20 };

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

/** A smoothing weight that suits the number of points: none for a handful, 0.9+ for thousands. */
export function smoothingFor(count) {
    if (count < 10) return 0.3;
    return Math.min(0.98, 1 - 4 / count ** 0.75);
}

function el(name, attrs = {}) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
}

function niceNumber(value) {
    if (!Number.isFinite(value)) return "";
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 0.001 || abs >= 10000)) return value.toExponential(1);
    return value.toPrecision(3).replace(/\.?0+$/, "");
}

/** A new, empty chart element (the panel keeps it and calls `drawLossChart` on it). */
export function createLossChart() {
    const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "fluxlab-chart", role: "img" });
    svg.setAttribute("preserveAspectRatio", "none");
    return svg;
}

/** Draw `points` ([{step, loss}], step order) into `svg`; sets data-points for tests and tools. */
export function drawLossChart(svg, points) {
    svg.replaceChildren();
    const finite = points.filter((p) => p.loss !== null && Number.isFinite(p.loss));
    svg.dataset.points = String(finite.length);
    svg.setAttribute("aria-label", finite.length ? `loss over ${finite.length} steps` : "no loss yet");
    if (!finite.length) {
        const text = el("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "fluxlab-chart-empty" });
        text.textContent = "waiting for the first step";
        svg.append(text);
        return;
    }
    const smoothed = smooth(finite.map((p) => p.loss), smoothingFor(finite.length));
    const steps = finite.map((p) => p.step);
    const losses = finite.map((p) => p.loss);
    const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
    let [y0, y1] = [Math.min(...losses), Math.max(...losses)];
    if (y1 - y0 < 1e-12) [y0, y1] = [y0 - 0.5 * Math.abs(y0 || 1), y1 + 0.5 * Math.abs(y1 || 1)];
    const plotW = WIDTH - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const sx = (step) => PAD.left + (x1 === x0 ? plotW / 2 : ((step - x0) / (x1 - x0)) * plotW);
    const sy = (loss) => PAD.top + (1 - (loss - y0) / (y1 - y0)) * plotH;
    const line = (ys) => finite.map((p, i) => `${sx(p.step).toFixed(1)},${sy(ys[i]).toFixed(1)}`).join(" ");

    svg.append(el("rect", { x: PAD.left, y: PAD.top, width: plotW, height: plotH, class: "fluxlab-chart-frame" }));
    for (const [value, y] of [[y1, PAD.top + 8], [y0, PAD.top + plotH]]) {
        const label = el("text", { x: PAD.left - 4, y, "text-anchor": "end", class: "fluxlab-chart-label" });
        label.textContent = niceNumber(value);
        svg.append(label);
    }
    for (const [value, anchor, x] of [[x0, "start", PAD.left], [x1, "end", WIDTH - PAD.right]]) {
        const label = el("text", { x, y: HEIGHT - 5, "text-anchor": anchor, class: "fluxlab-chart-label" });
        label.textContent = `step ${value}`;
        svg.append(label);
    }
    svg.append(el("polyline", { points: line(losses), class: "fluxlab-chart-raw" }));
    svg.append(el("polyline", { points: line(smoothed), class: "fluxlab-chart-smooth" }));
    if (finite.length === 1) {
        svg.append(el("circle", { cx: sx(x0), cy: sy(losses[0]), r: 2.5, class: "fluxlab-chart-dot" }));
    }
}
