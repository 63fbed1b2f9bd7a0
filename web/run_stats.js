// The selected run's numbers under its title: step, loss, learning rate, speed, ETA, RAM and, only
// where the run has a GPU, GPU memory (a CPU run reports none: the row is gone, not "0 MB").
import { h } from "./dom.js";
import { formatDuration, formatGpuMemory, formatNumber, formatRam } from "./runs.js";

const STATS = [["step", "Step"], ["loss", "Loss"], ["lr", "Learning rate"], ["its", "Speed"], ["eta", "ETA"],
    ["memory", "RAM"], ["gpu", "GPU memory"]];

export class RunStats {
    constructor() {
        this.values = {};
        this.labels = {};
        this.element = h("dl", { className: "fluxlab-stats" }, ...STATS.flatMap(([name, label]) => {
            this.labels[name] = h("dt", {}, label);
            this.values[name] = h("dd", { "data-testid": `fluxlab-${name}` }, "–");
            return [this.labels[name], this.values[name]];
        }));
    }

    render(run) {
        const latest = run.latestStep;
        const { values } = this;
        values.step.textContent = run.totalSteps ? `${run.step ?? 0} / ${run.totalSteps}` : String(run.step ?? "–");
        values.step.dataset.step = String(run.step ?? 0);
        values.loss.textContent = formatNumber(run.summary.loss);
        values.lr.textContent = formatNumber(latest?.lr, 3);
        values.its.textContent = latest?.its ? `${latest.its.toFixed(2)} it/s` : "–";
        values.eta.textContent = run.live ? formatDuration(latest?.eta_s) : "–";
        values.memory.textContent = formatRam(latest?.memory);
        const gpu = formatGpuMemory(latest?.memory);
        values.gpu.textContent = gpu ?? "";
        values.gpu.hidden = this.labels.gpu.hidden = gpu === null;
    }
}
