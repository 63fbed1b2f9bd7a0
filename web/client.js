// Typed client for the pack's own routes and websocket events (docs/api.md). It never imports
// ComfyUI: the entry file hands it ComfyUI's `api` object, so this module has no side effects and
// can be loaded on its own (ComfyUI imports every .js file of the web folder).

/**
 * @typedef {"starting"|"running"|"paused"|"stopping"|"finished"|"stopped"|"failed"|"interrupted"} RunStatus
 * @typedef {{run_id: string, status: RunStatus, run_dir: string, live: boolean, step: ?number,
 *            total_steps: ?number, loss: ?number, started_at: ?number, updated_at: ?number,
 *            lora_path: ?string, error: ?string}} RunSummary
 * @typedef {{seq: number, time: number, kind: string, [field: string]: any}} EventRecord
 * @typedef {RunSummary & {events: EventRecord[]}} RunDetail
 * @typedef {"pause"|"resume"|"checkpoint"|"stop"} RunAction
 * @typedef {{filename: string, subfolder?: string, type?: string}} ImageRef
 */

/** Every event kind the server sends as `fluxlab.<kind>` (core.run.events.EVENT_TYPES). */
export const EVENT_KINDS = Object.freeze([
    "started", "step", "checkpoint", "preview", "paused", "resumed", "finished", "failed", "dataset_report", "info",
]);

/** Statuses in which a run still has a training thread (core.run.runner.LIVE_STATUSES). */
export const LIVE_STATUSES = Object.freeze(["starting", "running", "paused", "stopping"]);

/** An error answer of our routes: the server's `{"error": ...}` message and the HTTP status. */
export class FluxLabError extends Error {
    constructor(message, status) {
        super(message);
        this.name = "FluxLabError";
        this.status = status;
    }
}

export class FluxLabClient {
    /** @param {{fetchApi: Function, apiURL: Function, addEventListener: Function, removeEventListener: Function}} api ComfyUI's api object */
    constructor(api) {
        this.api = api;
    }

    /** @returns {Promise<RunSummary[]>} live runs and past runs found on disk */
    async listRuns() {
        return (await this.#json("GET", "/fluxlab/runs")).runs ?? [];
    }

    /** @returns {Promise<RunDetail>} the summary and every event with seq > since (all without since) */
    async getRun(runId, since = undefined) {
        const query = since === undefined ? "" : `?since=${encodeURIComponent(since)}`;
        return this.#json("GET", `${runPath(runId)}${query}`);
    }

    /** @param {RunAction} action @returns {Promise<{ok: boolean, status: RunStatus}>} */
    async control(runId, action) {
        return this.#json("POST", `${runPath(runId)}/${action}`);
    }

    /** Copy a checkpoint's LoRA ("checkpoint_000010" or "final") into the loras folder.
     * @returns {Promise<{ok: boolean, lora_name: string}>} */
    async useCheckpoint(runId, checkpoint) {
        return this.#json("POST", `${runPath(runId)}/use`, { checkpoint });
    }

    /** Every preview step still on disk, with each image's prompt, and the run's trigger / class word.
     * @returns {Promise<{steps: {step: number, images: {path: string, prompt: ?string}[]}[],
     *                    trigger: ?string, class_word: ?string}>} */
    async previews(runId) {
        return this.#json("GET", `${runPath(runId)}/previews`);
    }

    /** The run's saved config by section, and each setting's doc ("lora.rank": "...").
     * @returns {Promise<{config: ?Object<string, Object>, docs: Object<string, string>}>} */
    async config(runId) {
        return this.#json("GET", `${runPath(runId)}/config`);
    }

    /** URL of a file in the run folder (previews); the route refuses paths outside it. */
    fileUrl(runId, relativePath) {
        return this.api.apiURL(`${runPath(runId)}/file?path=${encodeURIComponent(relativePath)}`);
    }

    /** URL of an image ComfyUI wrote (output/temp/input), through its own /view route.
     * @param {ImageRef} image */
    viewUrl(image) {
        const query = new URLSearchParams({
            filename: image.filename, subfolder: image.subfolder ?? "", type: image.type ?? "output",
        });
        return this.api.apiURL(`/view?${query}`);
    }

    /** Call `onRecord(runId, record)` for every fluxlab websocket event (runId null for events
     * outside a run, e.g. DatasetFromFolder's dataset_report) and `onReconnect()` after
     * the socket came back (events may have been missed). Returns the unsubscribe function. */
    subscribe(onRecord, onReconnect) {
        const handlers = EVENT_KINDS.map((kind) => {
            const handler = (event) => {
                const { run_id: runId, ...record } = event.detail ?? {};
                // Started carries its own run_id field too: keep it in the record.
                if (kind === "started") record.run_id = runId;
                onRecord(runId ?? null, { kind, ...record }); // run_id null: a report from DatasetFromFolder
            };
            this.api.addEventListener(`fluxlab.${kind}`, handler);
            return [`fluxlab.${kind}`, handler];
        });
        if (onReconnect) handlers.push(["reconnected", () => onReconnect()]);
        if (onReconnect) this.api.addEventListener("reconnected", handlers.at(-1)[1]);
        return () => handlers.forEach(([type, handler]) => this.api.removeEventListener(type, handler));
    }

    async #json(method, path, body = undefined) {
        const options = { method, cache: "no-store" };
        if (body !== undefined) {
            options.headers = { "Content-Type": "application/json" };
            options.body = JSON.stringify(body);
        }
        const response = await this.api.fetchApi(path, options);
        let data = null;
        try {
            data = await response.json();
        } catch (error) {
            throw new FluxLabError(`${method} ${path}: HTTP ${response.status}, answer is not JSON (${error.message})`, response.status);
        }
        if (!response.ok) {
            throw new FluxLabError(data?.error ?? `${method} ${path}: HTTP ${response.status}`, response.status);
        }
        return data;
    }
}

function runPath(runId) {
    return `/fluxlab/runs/${encodeURIComponent(runId)}`;
}
