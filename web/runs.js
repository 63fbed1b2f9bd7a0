// Run state for the panel: folds summaries and event records (docs/api.md) into what the panel
// draws. Pure data, no DOM and no ComfyUI, so the panel, the tab badge and the toasts all read one
// picture of each run. Records are keyed by seq: the same record arriving twice (history fetch
// and websocket) counts once, and a gap in seq tells the caller to fetch what it missed.

import { LIVE_STATUSES } from "./client.js";

/** Status after one record (core.run.runner.status_from_history, one step at a time). */
function statusAfter(status, record) {
    switch (record.kind) {
        case "started":
        case "resumed":
            return "running";
        case "paused":
            return "paused";
        case "finished":
            return record.stopped_early ? "stopped" : "finished";
        case "failed":
            return "failed";
        default:
            return status;
    }
}

export class RunState {
    /** @param {import("./client.js").RunSummary} summary */
    constructor(summary) {
        this.runId = summary.run_id;
        this.summary = { ...summary };
        this.lastSeq = -1;
        this.historyLoaded = false;
        this.loading = false; // a history request is in flight (set by the panel)
        this.pending = []; // live records that arrived during that request
        this.losses = []; // [{step, loss}] in step order; a resumed session restarts from its step
        this.evalLosses = []; // [{step, loss}] of the held-out set (eval_loss records), step order
        this.latestStep = null; // the last step record (lr, its, eta_s, memory)
        this.preview = null; // the last preview record ({step, images})
        this.previewSteps = []; // steps that have previews, in order
        this.checkpoints = []; // [{step, path}]
        this.datasetReport = null;
        this.info = null; // the last info message
        this.endedSeq = null; // seq of the finished / failed record that ended the latest session
    }

    get status() {
        return this.summary.status;
    }

    get live() {
        return LIVE_STATUSES.includes(this.summary.status) && this.summary.live !== false;
    }

    get step() {
        return this.summary.step;
    }

    get totalSteps() {
        return this.summary.total_steps;
    }

    /** 0..100, or null before the total is known. */
    get percent() {
        const { step, total_steps: total } = this.summary;
        if (!total || step === null || step === undefined) return null;
        return Math.max(0, Math.min(100, Math.floor((100 * step) / total)));
    }

    /** Replace the summary (from the run list); keeps records already folded in. */
    setSummary(summary) {
        this.summary = { ...this.summary, ...summary };
    }

    /** The server's summary (the run list, a control answer), which may be older than the records
     * folded in: a live status never undoes an end those records showed. A resumed session's own
     * `started` record makes the run live again. */
    setServerSummary(summary) {
        const stale = this.endedSeq !== null && LIVE_STATUSES.includes(summary.status);
        this.setSummary(stale ? { ...summary, status: this.summary.status, live: false } : summary);
    }

    /** Fold live records in seq order. Before the history is loaded they only update the summary
     * (status, step), and wait in `pending` while a history request is in flight (a run nobody
     * looks at keeps no records: its history is fetched when it is selected). Returns "history" when the caller should load the
     * history, "gap" when a record before the first new one is missing (fetch `?since=lastSeq`),
     * else the number of records folded. */
    apply(records) {
        const sorted = [...records].sort((a, b) => a.seq - b.seq);
        if (!this.historyLoaded) {
            for (const record of sorted) this.#foldSummary(record);
            if (this.loading) this.pending.push(...sorted);
            return "history";
        }
        let added = 0;
        for (const record of sorted) {
            if (record.seq <= this.lastSeq) continue;
            if (record.seq > this.lastSeq + 1) return "gap";
            this.#fold(record);
            added += 1;
        }
        return added;
    }

    /** Fold a detail answer (summary + every event after lastSeq), then what waited meanwhile. */
    applyDetail(detail) {
        const { events = [], ...summary } = detail;
        for (const record of [...events].sort((a, b) => a.seq - b.seq)) {
            if (record.seq > this.lastSeq) this.#fold(record);
        }
        this.setSummary(summary); // the server's word on status (stopping, interrupted) at answer time
        this.historyLoaded = true;
        const pending = this.pending;
        this.pending = [];
        return pending.length ? this.apply(pending) : events.length;
    }

    #foldSummary(record) {
        this.summary.status = statusAfter(this.summary.status, record);
        this.summary.updated_at = record.time ?? this.summary.updated_at;
        if (record.kind === "started") {
            this.summary.total_steps = record.total_steps;
            this.summary.live = true;
            this.endedSeq = null;
        } else if (record.kind === "step") {
            this.summary.step = record.step;
            this.summary.total_steps = record.total ?? this.summary.total_steps;
            this.summary.loss = record.loss;
        } else if (record.kind === "finished" || record.kind === "failed") {
            this.summary.live = false;
            this.endedSeq = record.seq;
            if (record.step !== null && record.step !== undefined) this.summary.step = record.step;
        }
    }

    #fold(record) {
        this.#foldSummary(record);
        this.lastSeq = record.seq;
        switch (record.kind) {
            case "started":
                this.summary.started_at = record.time;
                // A resumed session restarts at start_step: drop points the resume overwrites.
                this.losses = this.losses.filter((p) => p.step <= record.start_step);
                this.evalLosses = this.evalLosses.filter((p) => p.step <= record.start_step);
                break;
            case "step":
                this.latestStep = record;
                if (this.losses.length && this.losses.at(-1).step >= record.step) {
                    this.losses = this.losses.filter((p) => p.step < record.step);
                }
                this.losses.push({ step: record.step, loss: record.loss });
                break;
            case "eval_loss":
                // A resumed run scores its checkpoint step again: the newest score of a step wins.
                this.evalLosses = [...this.evalLosses.filter((p) => p.step !== record.step),
                    { step: record.step, loss: record.loss }].sort((a, b) => a.step - b.step);
                break;
            case "preview":
                this.preview = record;
                if (!this.previewSteps.includes(record.step)) this.previewSteps.push(record.step);
                break;
            case "checkpoint":
                this.checkpoints.push({ step: record.step, path: record.path });
                break;
            case "dataset_report":
                this.datasetReport = record.report ?? null;
                break;
            case "info":
                this.info = record;
                break;
            case "finished":
                this.summary.lora_path = record.lora_path ?? null;
                break;
            case "failed":
                this.summary.error = record.message;
                break;
        }
    }
}

/** Which control buttons make sense in a status (the server answers 409 for the others anyway). */
export function allowedActions(run) {
    if (!run || !run.live) return new Set();
    switch (run.status) {
        case "running":
            return new Set(["pause", "checkpoint", "stop"]);
        case "paused":
            return new Set(["resume", "checkpoint", "stop"]);
        case "starting":
            return new Set(["stop"]);
        default: // stopping
            return new Set();
    }
}

/** A loss or learning rate: 4 significant digits, or an exponent below 1e-3. */
export function formatNumber(value, digits = 4) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "–";
    return Math.abs(value) < 1e-3 && value !== 0 ? value.toExponential(2) : value.toPrecision(digits);
}

/** "1h 02m", "3m 05s", "12s" */
export function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    if (h) return `${h}h ${pad(m)}m`;
    if (m) return `${m}m ${pad(s % 60)}s`;
    return `${s}s`;
}

const mb = (v) => (v >= 1024 ? `${(v / 1024).toFixed(1)} GB` : `${Math.round(v)} MB`);

/** The process's RAM of a step record's memory (MB) as "812 MB", "–" when not reported. */
export function formatRam(memory) {
    return memory?.ram_mb === undefined || memory?.ram_mb === null ? "–" : mb(memory.ram_mb);
}

/** GPU memory of a step record as "3.1 GB (peak 3.4 GB)"; null when the run has no GPU (a CPU
 * run reports no gpu_mb at all: core/run/progress.py), so the panel shows nothing rather than 0. */
export function formatGpuMemory(memory) {
    if (memory?.gpu_mb === undefined || memory?.gpu_mb === null) return null;
    return `${mb(memory.gpu_mb)}${memory.gpu_peak_mb ? ` (peak ${mb(memory.gpu_peak_mb)})` : ""}`;
}
