// The panel's loss chart with its controls: a log-scale toggle, a smoothing slider (TensorBoard's
// debiased EMA, 0 = raw, "auto" until the user moves it) and a box the user can resize by its
// corner; it redraws at its new size. The choices are display-only and live in memory.

import { createLossChart, drawLossChart, smoothingFor } from "./chart.js";
import { h } from "./dom.js";

export class LossChart {
    constructor() {
        this.points = [];
        this.evals = [];
        this.log = false;
        this.smoothing = null; // null: smoothingFor(the number of points)
        this.svg = createLossChart();
        this.logBox = h("input", { type: "checkbox", "data-testid": "fluxlab-chart-log", onchange: () => {
            this.log = this.logBox.checked;
            this.#draw();
        } });
        this.slider = h("input", { type: "range", min: "0", max: "0.99", step: "0.01", value: "0.6",
            "data-testid": "fluxlab-chart-smoothing", "aria-label": "smoothing", oninput: () => {
                this.smoothing = Number(this.slider.value);
                this.#draw();
            } });
        this.sliderValue = h("span", { className: "fluxlab-chart-smoothing-value", "data-testid": "fluxlab-chart-smoothing-value" });
        this.box = h("div", { className: "fluxlab-chart-box", "data-testid": "fluxlab-chart-box",
            title: "Drag the bottom-right corner to resize" }, this.svg);
        this.element = h("div", { className: "fluxlab-chart-view" },
            h("div", { className: "fluxlab-chart-controls" },
                h("label", {}, this.logBox, " log scale"),
                h("label", {}, "smoothing ", this.slider), this.sliderValue),
            this.box);
        this.size = [0, 0];
        // Redraw when the box changes size (the user's drag, the sidebar's width, the panel opening).
        new ResizeObserver(() => this.#draw()).observe(this.box);
    }

    /** Show `points` and `evals` ([{step, loss}]: training and eval loss); redraws only when they
     * or the box changed. */
    render(points, evals = []) {
        if (points === this.points && points.length === this.drawnCount && evals === this.evals) return;
        this.points = points;
        this.evals = evals;
        this.#draw();
    }

    #draw() {
        const width = Math.floor(this.box.clientWidth);
        const height = Math.floor(this.box.clientHeight);
        if (width < 40 || height < 40) return; // hidden (the panel is not mounted yet)
        const weight = this.smoothing ?? smoothingFor(this.points.length);
        if (this.smoothing === null) this.slider.value = String(weight);
        this.sliderValue.textContent = this.smoothing === null ? `auto (${weight.toFixed(2)})` : weight.toFixed(2);
        this.drawnCount = this.points.length;
        drawLossChart(this.svg, this.points, { width, height, log: this.log, smoothing: weight, evals: this.evals });
    }
}
