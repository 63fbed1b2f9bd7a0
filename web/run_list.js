// The run list's items: one per run, updated in place (a rebuilt item would swallow a click that
// lands while a fast run redraws the list).
import { h } from "./dom.js";

export class RunList {
    /** @param {(runId: string) => void} onSelect */
    constructor(onSelect) {
        this.onSelect = onSelect;
        this.items = new Map(); // run id -> its list item
    }

    item(run, isSelected) {
        let item = this.items.get(run.runId);
        if (!item) {
            const select = () => this.onSelect(run.runId);
            item = h("li", {
                className: "fluxlab-run", dataset: { runId: run.runId }, tabindex: "0", onclick: select,
                onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(); } },
            }, h("span", { className: "fluxlab-run-name" }, run.runId), h("span", {}), h("span", { className: "fluxlab-run-progress" }));
            this.items.set(run.runId, item);
        }
        const [, status, progress] = item.children;
        const pct = run.percent;
        const steps = run.totalSteps ? `${run.step ?? 0}/${run.totalSteps}` : "";
        item.classList.toggle("selected", isSelected);
        item.dataset.status = run.status;
        status.className = `fluxlab-status status-${run.status}`;
        status.textContent = run.status;
        progress.textContent = pct === null ? steps : `${steps} · ${pct}%`;
        return item;
    }
}
