// The "Flux LoRA Lab" sidebar panel: the run list, and for the selected run its loss chart,
// numbers, previews, dataset report and control buttons. It talks to the server only through
// FluxLabClient and reports toasts and progress through callbacks, so it never touches ComfyUI's
// app. Its state is display-only and lives in memory; nothing of it goes into a workflow.

import { FluxLabError } from "./client.js";
import { ConfigView } from "./config_view.js";
import { ContinueOffer } from "./continue_offer.js";
import { h } from "./dom.js";
import { emptyState } from "./empty_state.js";
import { Gallery } from "./gallery.js";
import { LossChart } from "./loss_chart.js";
import { renderDatasetReport } from "./report.js";
import { RunList } from "./run_list.js";
import { RunStats } from "./run_stats.js";
import { RunState, allowedActions } from "./runs.js";

const CATCH_UP_MS = 2000;
const ACTIONS = [
    ["pause", "Pause", "pi pi-pause"], ["resume", "Resume", "pi pi-play"],
    ["checkpoint", "Save now", "pi pi-save"], ["stop", "Stop", "pi pi-stop"],
];

export class FluxLabPanel {
    /**
     * @param {import("./client.js").FluxLabClient} client
     * @param {{toast?: (severity: string, summary: string, detail: string) => void,
     *          onProgress?: (runs: RunState[]) => void,
     *          continueRun?: (runId: string, totalSteps: number | null) => Promise<void>}} hooks
     *   continueRun queues the run's TrainLoRA again, to `totalSteps` (null: the steps it has). */
    constructor(client, hooks = {}) {
        this.client = client;
        this.toast = hooks.toast ?? (() => {});
        this.onProgress = hooks.onProgress ?? (() => {});
        this.offer = new ContinueOffer(hooks.continueRun ?? null, this.toast, () => this.#changed());
        /** @type {Map<string, RunState>} */
        this.runs = new Map();
        this.selectedId = null;
        this.loadError = null;
        this.loaded = false;
        this.renderQueued = false;
        this.listRequest = null;
        this.historyRequests = new Map();
        this.runList = new RunList((runId) => this.select(runId));
        this.actionPending = null; // the control request in flight: buttons wait for its answer
        this.looseReport = null; // a dataset_report sent outside any run (DatasetFromFolder)
        this.looseRendered = null;
        this.lastRecordAt = 0;
        this.savesAsked = new Set(); // runs whose "Save now" awaits its checkpoint record
        this.#build();
        // Websocket messages can be lost (measured on ComfyUI 0.3.75: a second browser tab took the
        // first tab's run events). While the selected run is live and quiet, fetch what it missed.
        setInterval(() => this.#catchUp(), CATCH_UP_MS);
    }

    /** Put the panel into the sidebar's element (called on every opening of the tab). */
    mount(container) {
        container.replaceChildren(this.element);
        this.refreshRuns();
    }

    // -- data ------------------------------------------------------------------------------------
    /** Reload the run list (coalesces concurrent calls), then the selected run's history. */
    refreshRuns() {
        this.listRequest ??= this.client.listRuns()
            .then((summaries) => {
                this.loadError = null;
                for (const summary of summaries) {
                    const run = this.runs.get(summary.run_id);
                    if (run) run.setServerSummary(summary);
                    else this.runs.set(summary.run_id, new RunState(summary));
                }
                this.loaded = true;
                if (!this.runs.has(this.selectedId)) this.selectedId = this.#defaultRunId();
                this.#loadHistory(this.selectedId);
            })
            .catch((error) => {
                this.loadError = `Could not list runs: ${error.message}`;
            })
            .finally(() => {
                this.listRequest = null;
                this.#changed();
            });
        return this.listRequest;
    }

    /** A fluxlab.* websocket record for `runId`. */
    handleRecord(runId, record) {
        this.lastRecordAt = Date.now();
        if (runId === null || runId === undefined) {
            // DatasetFromFolder reports before any run exists (run_id null): show it on its own.
            if (record.kind === "dataset_report") this.looseReport = record;
            this.#changed();
            return;
        }
        let run = this.runs.get(runId);
        if (!run) {
            run = new RunState({ run_id: runId, status: "starting", live: true, step: null, total_steps: null });
            this.runs.set(runId, run);
            this.refreshRuns(); // the server's summary (run_dir, started_at)
            if (!this.selectedId || !this.runs.get(this.selectedId)?.live) this.selectedId = runId;
        }
        const result = run.apply([record]);
        if (result === "gap" || (result === "history" && runId === this.selectedId)) this.#loadHistory(runId);
        if (record.kind === "finished") {
            const what = record.stopped_early ? "stopped" : "finished";
            const lora = record.lora_path ? `: ${record.lora_path}` : "";
            this.toast("success", `Training ${what}`, `${runId} ${what} at step ${record.step ?? "?"}${lora}`);
        } else if (record.kind === "failed") {
            this.toast("error", "Training failed", `${runId}: ${record.message}`);
        } else if (record.kind === "checkpoint" && this.savesAsked.delete(runId)) {
            // The checkpoint record comes once the folder is complete on disk (core/run/rundir.py).
            this.toast("success", "Checkpoint saved", `${runId}: step ${record.step} is on disk at ${record.path}`);
        }
        if (record.kind === "finished" || record.kind === "failed") this.savesAsked.delete(runId);
        this.#changed();
    }

    #catchUp() {
        const run = this.runs.get(this.selectedId);
        if (run?.live && run.historyLoaded && Date.now() - this.lastRecordAt > CATCH_UP_MS) this.#loadHistory(run.runId);
    }

    /** The websocket came back: events may have been missed. */
    handleReconnect() {
        for (const run of this.runs.values()) if (run.live && run.historyLoaded) this.#loadHistory(run.runId);
        this.refreshRuns();
    }

    select(runId) {
        this.selectedId = runId;
        this.#loadHistory(runId);
        this.#changed();
    }

    #defaultRunId() {
        const runs = [...this.runs.values()];
        const live = runs.filter((r) => r.live);
        const pool = live.length ? live : runs;
        pool.sort((a, b) => (b.summary.updated_at ?? 0) - (a.summary.updated_at ?? 0));
        return pool[0]?.runId ?? null;
    }

    #loadHistory(runId) {
        const run = this.runs.get(runId);
        if (!run || this.historyRequests.has(runId)) return;
        const since = run.historyLoaded ? run.lastSeq : undefined;
        run.loading = true;
        let again = false;
        const request = this.client.getRun(runId, since)
            .then((detail) => {
                again = run.applyDetail(detail) === "gap"; // records came in meanwhile with a hole
            })
            .catch((error) => {
                run.loadError = `Could not load ${runId}: ${error.message}`;
            })
            .finally(() => {
                run.loading = false;
                this.historyRequests.delete(runId);
                if (again) this.#loadHistory(runId);
                this.#changed();
            });
        this.historyRequests.set(runId, request);
    }

    async #act(action) {
        const run = this.runs.get(this.selectedId);
        if (!run) return;
        this.actionPending = action;
        this.#changed();
        // Before the request: the checkpoint record may come over the socket before the answer does.
        if (action === "checkpoint") this.savesAsked.add(run.runId);
        try {
            const answer = await this.client.control(run.runId, action);
            // The run's own records may have ended it before this answer arrived (a stop takes effect
            // within a step; measured: the page stayed "stopping" on a loaded 2-core machine).
            if (answer.status) run.setServerSummary({ status: answer.status });
            if (action === "checkpoint" && this.savesAsked.has(run.runId)) {
                this.toast("info", "Saving a checkpoint", `${run.runId}: at the end of this step`);
            }
        } catch (error) {
            this.savesAsked.delete(run.runId);
            const detail = error instanceof FluxLabError ? error.message : String(error);
            this.toast("error", `Could not ${action} ${run.runId}`, detail);
            this.refreshRuns();
        } finally {
            this.actionPending = null;
            this.#changed();
        }
    }

    // -- view ------------------------------------------------------------------------------------
    #changed() {
        this.onProgress([...this.runs.values()]);
        if (this.renderQueued) return;
        this.renderQueued = true;
        requestAnimationFrame(() => {
            this.renderQueued = false;
            this.#render();
        });
    }

    #build() {
        this.chart = new LossChart();
        this.evalLegendEl = h("span", { hidden: true }, " · ", h("span", { className: "legend-eval" }, "eval (held-out set)"));
        this.gallery = new Gallery(this.client);
        this.config = new ConfigView(this.client);
        this.listEl = h("ul", { className: "fluxlab-runs", "data-testid": "fluxlab-runs" });
        this.emptyEl = emptyState();
        this.errorEl = h("div", { className: "fluxlab-error", "data-testid": "fluxlab-error" });
        this.looseReportEl = h("div", { className: "fluxlab-report" });
        this.looseBoxEl = h("details", { className: "fluxlab-report-box", "data-testid": "fluxlab-loose-report" },
            h("summary", {}, "Latest dataset report (DatasetFromFolder)"), this.looseReportEl);
        this.buttons = Object.fromEntries(ACTIONS.map(([action, label, icon]) => [action,
            h("button", { className: "fluxlab-button", "data-action": action, type: "button", onclick: () => this.#act(action) },
                h("i", { className: icon }), ` ${label}`)]));
        this.stats = new RunStats();
        this.titleEl = h("span", { className: "fluxlab-run-title", "data-testid": "fluxlab-run-title" });
        this.statusEl = h("span", { className: "fluxlab-status", "data-testid": "fluxlab-status" });
        this.barEl = h("div", { className: "fluxlab-progress-fill" });
        this.messageEl = h("div", { className: "fluxlab-message", "data-testid": "fluxlab-message" });
        this.reportEl = h("div", { className: "fluxlab-report", "data-testid": "fluxlab-dataset" });
        this.detailEl = h("section", { className: "fluxlab-detail", "data-testid": "fluxlab-detail" },
            h("div", { className: "fluxlab-detail-head" }, this.titleEl, this.statusEl),
            h("div", { className: "fluxlab-progress" }, this.barEl),
            this.stats.element,
            h("div", { className: "fluxlab-controls" }, ...Object.values(this.buttons)),
            this.messageEl, this.offer.element,
            h("h4", {}, "Loss ", h("span", { className: "fluxlab-legend" },
                h("span", { className: "legend-raw" }, "raw"), " · ", h("span", { className: "legend-smooth" }, "smoothed"), this.evalLegendEl)),
            this.chart.element,
            this.gallery.titleEl, this.gallery.element,
            this.config.element,
            h("details", { className: "fluxlab-report-box" }, h("summary", {}, "Dataset report"), this.reportEl));
        this.element = h("div", { className: "fluxlab-panel", "data-testid": "fluxlab-panel" },
            h("div", { className: "fluxlab-head" }, h("h3", {}, "Flux LoRA Lab"),
                h("button", { className: "fluxlab-icon-button", type: "button", title: "Reload the run list",
                    "data-testid": "fluxlab-refresh", onclick: () => this.refreshRuns() }, h("i", { className: "pi pi-refresh" }))),
            this.errorEl, this.emptyEl, this.looseBoxEl, this.listEl, this.detailEl);
    }

    #render() {
        const runs = [...this.runs.values()].sort((a, b) => (b.summary.started_at ?? b.summary.updated_at ?? 0)
            - (a.summary.started_at ?? a.summary.updated_at ?? 0));
        const selected = this.runs.get(this.selectedId) ?? null;
        this.errorEl.textContent = this.loadError ?? selected?.loadError ?? "";
        this.errorEl.hidden = !this.errorEl.textContent;
        this.emptyEl.hidden = !(this.loaded && runs.length === 0);
        this.listEl.hidden = runs.length === 0;
        const items = runs.map((run) => this.runList.item(run, run === selected));
        if (items.some((item, i) => this.listEl.children[i] !== item) || this.listEl.children.length !== items.length) {
            this.listEl.replaceChildren(...items);
        }
        this.looseBoxEl.hidden = !this.looseReport;
        if (this.looseReport && this.looseRendered !== this.looseReport) {
            this.looseRendered = this.looseReport;
            this.looseReportEl.replaceChildren(renderDatasetReport(this.looseReport.report));
        }
        this.detailEl.hidden = !selected;
        if (selected) this.#renderDetail(selected);
    }

    #renderDetail(run) {
        this.titleEl.textContent = run.runId;
        this.statusEl.textContent = run.status;
        this.statusEl.className = `fluxlab-status status-${run.status}`;
        this.detailEl.dataset.status = run.status;
        this.detailEl.dataset.runId = run.runId;
        this.barEl.style.width = `${run.percent ?? 0}%`;
        this.stats.render(run);
        const allowed = allowedActions(run);
        for (const [action, button] of Object.entries(this.buttons)) {
            button.disabled = !allowed.has(action) || this.actionPending !== null;
        }
        this.messageEl.textContent = this.#message(run);
        this.messageEl.className = `fluxlab-message${run.status === "failed" ? " fluxlab-error" : ""}`;
        this.offer.render(run);
        this.chart.render(run.losses, run.evalLosses);
        this.evalLegendEl.hidden = !run.evalLosses.length;
        this.gallery.render(run);
        this.config.render(run);
        this.reportEl.replaceChildren(renderDatasetReport(run.datasetReport));
    }

    #message(run) {
        if (run.status === "failed") return `Failed: ${run.summary.error ?? "see the server log"}`;
        if (run.summary.lora_path) return `LoRA: ${run.summary.lora_path}`;
        if (run.status === "interrupted") return "The server stopped during this run; resume it by queueing the same run name.";
        if (run.status === "stopping") return "Stopping after this step…";
        if (!run.historyLoaded && this.historyRequests.has(run.runId)) return "Loading history…";
        return run.info?.message ?? "";
    }
}
