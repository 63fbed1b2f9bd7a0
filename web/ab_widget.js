// A/B view for CompareCheckpoints: pick two checkpoints (rows of the node's grid) and one prompt
// (a column), then flip or slide between the two images, rendered at the same prompt and seed.
// "Use this one" copies the shown checkpoint's LoRA into the loras folder through our route.
// It is display-only: the entry file mounts it as a DOM widget with serialize off, and the data
// comes from the node's `executed` ui output, never from the workflow.

/**
 * @typedef {{label: string, checkpoint: string, step: ?number, lora_path: ?string, run_id?: string}} CompareRow
 * @typedef {{rows: CompareRow[], columns: {prompt: string}[], seed: ?number,
 *            cells: import("./client.js").ImageRef[][], runId: ?string}} CompareData
 */

import { h } from "./dom.js";

const unwrap = (value) => (Array.isArray(value) && value.length === 1 && !Array.isArray(value[0]) ? value[0] : value);

/** The node's ui output as CompareData, or null when it is not a compare grid. ComfyUI makes
 * every ui value a list (execution.py joins lists), so scalars arrive as one-item lists. */
export function parseCompareOutput(output) {
    if (!output) return null;
    const data = output.fluxlab_compare ? unwrap(output.fluxlab_compare) : output;
    const rows = data.rows;
    const columns = data.columns;
    const cells = data.cells;
    if (!Array.isArray(rows) || !Array.isArray(columns) || !Array.isArray(cells) || !rows.length || !columns.length) return null;
    return { rows, columns, cells, seed: unwrap(data.seed) ?? null, runId: unwrap(data.run_id) ?? null };
}

/** The run a row's LoRA belongs to: its own run_id, the grid's, or the run folder in its path
 * (<output>/fluxlab/<run>/checkpoint_000010/lora.safetensors or <run>/lora_final.safetensors). */
export function runIdOf(row, data) {
    if (row.run_id) return row.run_id;
    if (data.runId) return data.runId;
    const parts = String(row.lora_path ?? "").split(/[\\/]+/).filter(Boolean);
    if (parts.length >= 3 && /^checkpoint_\d+$/.test(parts.at(-2))) return parts.at(-3);
    if (parts.length >= 2) return parts.at(-2);
    return null;
}

const FLIP_KEYS = new Set([" ", "f", "F", "ArrowLeft", "ArrowRight", "a", "A", "b", "B"]);

export class ABCompare {
    /**
     * @param {import("./client.js").FluxLabClient} client
     * @param {{toast?: (severity: string, summary: string, detail: string) => void}} hooks
     */
    constructor(client, hooks = {}) {
        this.client = client;
        this.toast = hooks.toast ?? (() => {});
        /** @type {?CompareData} */
        this.data = null;
        this.a = 0;
        this.b = 1;
        this.column = 0;
        this.shown = "a";
        this.mode = "flip";
        this.split = 50;
        this.#build();
    }

    /** New grid from the node's executed output (keeps the choices where they still exist). */
    update(output) {
        const first = !this.data;
        this.data = parseCompareOutput(output);
        if (this.data) {
            const rows = this.data.rows.length;
            // First grid: the first row (base) against the last (final); later grids keep the choice.
            if (first || this.a >= rows) this.a = 0;
            if (first || this.b >= rows) this.b = rows - 1;
            if (this.column >= this.data.columns.length) this.column = 0;
        }
        this.#fillPickers();
        this.render();
    }

    flip() {
        this.shown = this.shown === "a" ? "b" : "a";
        this.render();
    }

    setMode(mode) {
        this.mode = mode;
        this.render();
    }

    #build() {
        const picker = (role, label) => {
            const select = h("select", { "data-role": role, "aria-label": label, onchange: () => {
                this[role === "prompt" ? "column" : role] = Number(select.value);
                this.render();
            } });
            return [h("label", {}, label), select];
        };
        const [aLabel, aSelect] = picker("a", "A");
        const [bLabel, bSelect] = picker("b", "B");
        const [pLabel, pSelect] = picker("prompt", "Prompt");
        this.selects = { a: aSelect, b: bSelect, prompt: pSelect };
        this.imgA = h("img", { className: "fluxlab-ab-img side-a", alt: "A", draggable: "false" });
        this.imgB = h("img", { className: "fluxlab-ab-img side-b", alt: "B", draggable: "false" });
        this.divider = h("div", { className: "fluxlab-ab-divider" });
        this.stage = h("div", { className: "fluxlab-ab-stage", "data-testid": "fluxlab-ab-stage", title: "Click or press Space to flip" },
            this.imgA, this.imgB, this.divider);
        this.stage.addEventListener("pointerdown", (event) => this.#pointer(event, true));
        this.stage.addEventListener("pointermove", (event) => this.#pointer(event, false));
        this.stage.addEventListener("pointerup", () => { this.dragging = false; });
        this.modeButtons = Object.fromEntries(["flip", "slide"].map((mode) => [mode, h("button",
            { type: "button", className: "fluxlab-ab-mode", "data-mode": mode, onclick: () => this.setMode(mode) },
            mode === "flip" ? "Flip" : "Slide")]));
        this.label = h("span", { className: "fluxlab-ab-label", "data-testid": "fluxlab-ab-label" });
        this.useButton = h("button", { type: "button", className: "fluxlab-ab-use", "data-testid": "fluxlab-ab-use",
            onclick: () => this.#use() }, "Use this one");
        this.hint = h("div", { className: "fluxlab-ab-hint" }, "Queue the graph to compare checkpoints here.");
        this.body = h("div", { className: "fluxlab-ab-body" },
            h("div", { className: "fluxlab-ab-pickers" }, aLabel, aSelect, bLabel, bSelect, pLabel, pSelect),
            h("div", { className: "fluxlab-ab-toolbar" }, ...Object.values(this.modeButtons),
                h("button", { type: "button", className: "fluxlab-ab-flip", "data-testid": "fluxlab-ab-flip", onclick: () => this.flip() }, "A ⇄ B")),
            this.stage,
            h("div", { className: "fluxlab-ab-footer" }, this.label, this.useButton));
        this.element = h("div", { className: "fluxlab-ab", tabindex: "0", "data-testid": "fluxlab-ab" }, this.hint, this.body);
        // Our keys flip; stop them before ComfyUI's window keybindings see them.
        this.element.addEventListener("keydown", (event) => {
            if (event.target instanceof HTMLSelectElement || !FLIP_KEYS.has(event.key) || !this.data) return;
            event.preventDefault();
            event.stopPropagation();
            if (event.key === "a" || event.key === "A") this.shown = "a";
            else if (event.key === "b" || event.key === "B") this.shown = "b";
            else if (this.mode === "slide" && event.key.startsWith("Arrow")) this.split = Math.max(0, Math.min(100, this.split + (event.key === "ArrowLeft" ? -5 : 5)));
            else return this.flip();
            this.render();
        });
    }

    #pointer(event, down) {
        if (!this.data) return;
        if (this.mode === "flip") {
            if (down && event.button === 0) this.flip();
            return;
        }
        if (down) this.dragging = event.button === 0;
        if (!this.dragging) return;
        const box = this.stage.getBoundingClientRect();
        this.split = Math.max(0, Math.min(100, ((event.clientX - box.left) / box.width) * 100));
        this.shown = this.split >= 50 ? "a" : "b"; // the side showing more is "this one"
        this.render();
    }

    #fillPickers() {
        const rows = this.data?.rows ?? [];
        const columns = this.data?.columns ?? [];
        const options = (items, text) => items.map((item, index) => h("option", { value: String(index) }, text(item, index)));
        this.selects.a.replaceChildren(...options(rows, (row) => row.label ?? row.checkpoint));
        this.selects.b.replaceChildren(...options(rows, (row) => row.label ?? row.checkpoint));
        this.selects.prompt.replaceChildren(...options(columns, (col, i) => `${i + 1}: ${String(col.prompt ?? "").slice(0, 60)}`));
    }

    render() {
        const data = this.data;
        this.hint.hidden = Boolean(data);
        this.body.hidden = !data;
        this.element.dataset.shown = this.shown;
        this.element.dataset.mode = this.mode;
        if (!data) return;
        this.selects.a.value = String(this.a);
        this.selects.b.value = String(this.b);
        this.selects.prompt.value = String(this.column);
        for (const [mode, button] of Object.entries(this.modeButtons)) button.classList.toggle("active", mode === this.mode);
        const cell = (row) => data.cells[row]?.[this.column];
        for (const [img, row] of [[this.imgA, this.a], [this.imgB, this.b]]) {
            const ref = cell(row);
            const src = ref ? this.client.viewUrl(ref) : "";
            if (img.getAttribute("src") !== src) img.setAttribute("src", src);
            img.alt = `${data.rows[row]?.label ?? "?"} — ${data.columns[this.column]?.prompt ?? ""}`;
        }
        if (this.mode === "flip") {
            this.imgA.hidden = this.shown !== "a";
            this.imgB.hidden = this.shown !== "b";
            this.imgB.style.clipPath = "";
            this.divider.hidden = true;
        } else {
            this.imgA.hidden = false;
            this.imgB.hidden = false;
            this.imgB.style.clipPath = `inset(0 0 0 ${this.split}%)`; // A left of the divider, B right
            this.divider.hidden = false;
            this.divider.style.left = `${this.split}%`;
        }
        const row = data.rows[this.shown === "a" ? this.a : this.b];
        const seed = data.seed === null ? "" : ` · seed ${data.seed}`;
        this.label.textContent = `${this.shown.toUpperCase()}: ${row.label ?? row.checkpoint}${seed}`;
        this.label.dataset.checkpoint = row.checkpoint;
        this.useButton.textContent = `Use ${row.label ?? row.checkpoint}`;
        // The base row has no LoRA to use.
        this.useButton.disabled = !row.lora_path || row.checkpoint === "base" || !runIdOf(row, data);
    }

    async #use() {
        const row = this.data?.rows[this.shown === "a" ? this.a : this.b];
        const runId = row && runIdOf(row, this.data);
        if (!runId) return;
        this.useButton.disabled = true;
        try {
            const answer = await this.client.useCheckpoint(runId, row.checkpoint);
            this.toast("success", "LoRA ready", `${answer.lora_name} is in your loras folder (LoraLoader lists it).`);
        } catch (error) {
            this.toast("error", `Could not use ${row.checkpoint}`, error.message);
        } finally {
            this.render();
        }
    }
}
