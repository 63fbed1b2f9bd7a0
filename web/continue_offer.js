// The offer under a run that is over: a finished run can train on for N more steps, a stopped,
// failed or interrupted one can resume from its newest checkpoint. The entry file's `continueRun`
// hook does it (it sets the open workflow's TrainLoRA and queues it); this is only the view.
import { h } from "./dom.js";

const OVER = ["finished", "stopped", "failed", "interrupted"];

export class ContinueOffer {
    /**
     * @param {?(runId: string, totalSteps: number | null) => Promise<void>} continueRun
     * @param {(severity: string, summary: string, detail: string) => void} toast
     * @param {() => void} changed  asks the panel to draw again
     */
    constructor(continueRun, toast, changed) {
        this.continueRun = continueRun;
        this.toast = toast;
        this.changed = changed;
        this.pending = false;
        this.run = null;
        this.labelEl = h("span", {});
        this.stepsEl = h("input", { type: "number", min: "1", step: "1", className: "fluxlab-continue-steps",
            "data-testid": "fluxlab-continue-steps", "aria-label": "more steps" });
        this.button = h("button", { className: "fluxlab-button", type: "button", "data-action": "continue",
            onclick: () => this.#continue() }, h("i", { className: "pi pi-forward" }), h("span", {}));
        this.element = h("div", { className: "fluxlab-continue", "data-testid": "fluxlab-continue" },
            this.labelEl, this.stepsEl, this.button);
    }

    render(run) {
        this.run = run;
        this.element.hidden = !this.continueRun || run.live || !OVER.includes(run.status);
        if (this.element.hidden) return;
        const finished = run.status === "finished";
        const key = `${run.runId}:${run.status}:${run.step}`;
        if (this.element.dataset.key !== key) { // a new offer: keep what the user typed otherwise
            this.element.dataset.key = key;
            this.stepsEl.value = String(Math.max(1, Math.round((run.totalSteps ?? run.step ?? 4) / 4)));
        }
        this.labelEl.textContent = finished ? `Finished at step ${run.step ?? "?"}. Train on for ` : "";
        this.stepsEl.hidden = !finished;
        this.button.lastChild.textContent = finished ? " more steps" : " Resume from the newest checkpoint";
        this.button.disabled = this.pending;
    }

    async #continue() {
        const run = this.run;
        if (!run || !this.continueRun) return;
        const finished = run.status === "finished";
        const more = Math.floor(Number(this.stepsEl.value));
        if (finished && !(more >= 1)) {
            this.toast("error", `Cannot continue ${run.runId}`, "enter how many more steps to train (1 or more)");
            return;
        }
        this.pending = true;
        this.changed();
        try {
            await this.continueRun(run.runId, finished ? (run.step ?? 0) + more : null);
        } finally {
            this.pending = false;
            this.changed();
        }
    }
}
