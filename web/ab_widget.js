// A/B view for CompareCheckpoints: pick two checkpoints (rows of the node's grid) and one prompt
// (a column), then compare the two images, rendered at the same prompt and seed, in one of two
// modes: "Toggle" (one image; a click or Space shows the other) or "Slider" (A left, B right of a
// divider you drag). "Swap A ⇄ B" exchanges the two picks. Under it the whole grid at the node's
// width, full size on click. "Use …" copies the shown checkpoint's LoRA into the loras folder
// through our route. It is display-only: the entry file mounts it as a DOM widget with serialize
// off, and the data comes from the node's `executed` ui output, never from the workflow.

/**
 * @typedef {{label: string, checkpoint: string, step: ?number, lora_path: ?string, run_id?: string}} CompareRow
 * @typedef {{rows: CompareRow[], columns: {prompt: string}[], seed: ?number,
 *            cells: import("./client.js").ImageRef[][], runId: ?string,
 *            grid: ?import("./client.js").ImageRef}} CompareData
 */

import { ABStage } from "./ab_stage.js";
import { h } from "./dom.js";
import { openLightbox } from "./lightbox.js";

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
    const grid = Array.isArray(output.images) ? output.images[0] ?? null : null;
    return { rows, columns, cells, seed: unwrap(data.seed) ?? null, runId: unwrap(data.run_id) ?? null, grid };
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
const MODES = [["toggle", "Toggle", "One image at a time: click it or press Space to show the other"],
    ["slide", "Slider", "A left of the divider, B right of it: drag across the picture"]];

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
        this.mode = "toggle";
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

    /** Toggle mode: show the other image. */
    flip() {
        this.shown = this.shown === "a" ? "b" : "a";
        this.render();
    }

    /** Exchange the checkpoints picked as A and B. */
    swap() {
        [this.a, this.b] = [this.b, this.a];
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
        this.stage = new ABStage();
        const stage = this.stage.element;
        stage.addEventListener("pointerdown", (event) => this.#pointer(event, true));
        stage.addEventListener("pointermove", (event) => this.#pointer(event, false));
        stage.addEventListener("pointerup", () => { this.dragging = false; });
        this.modeButtons = Object.fromEntries(MODES.map(([mode, text, title]) => [mode, h("button",
            { type: "button", className: "fluxlab-ab-mode", "data-mode": mode, role: "radio", title, onclick: () => this.setMode(mode) },
            text)]));
        this.label = h("span", { className: "fluxlab-ab-label", "data-testid": "fluxlab-ab-label" });
        this.useButton = h("button", { type: "button", className: "fluxlab-ab-use", "data-testid": "fluxlab-ab-use",
            onclick: () => this.#use() }, "Use this one");
        this.gridImg = h("img", { className: "fluxlab-ab-grid-img", "data-testid": "fluxlab-ab-grid", alt: "the compare grid",
            title: "Rows: checkpoints, columns: prompts. Click for full size.", onclick: () => this.#openGrid() });
        this.hint = h("div", { className: "fluxlab-ab-hint" }, "Queue the graph to compare checkpoints here.");
        this.body = h("div", { className: "fluxlab-ab-body" },
            h("div", { className: "fluxlab-ab-pickers" }, aLabel, aSelect, bLabel, bSelect, pLabel, pSelect),
            h("div", { className: "fluxlab-ab-toolbar" },
                h("div", { className: "fluxlab-ab-modes", role: "radiogroup", "aria-label": "Compare mode" },
                    h("span", {}, "Mode:"), ...Object.values(this.modeButtons)),
                h("button", { type: "button", className: "fluxlab-ab-swap", "data-testid": "fluxlab-ab-swap",
                    title: "Exchange the checkpoints picked as A and B", onclick: () => this.swap() }, "Swap A ⇄ B")),
            stage,
            h("div", { className: "fluxlab-ab-footer" }, this.label, this.useButton),
            h("div", { className: "fluxlab-ab-grid" }, this.gridImg));
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
        if (this.mode === "toggle") {
            if (down && event.button === 0) this.flip();
            return;
        }
        if (down) this.dragging = event.button === 0;
        if (!this.dragging) return;
        this.split = this.stage.splitFor(event);
        this.shown = this.split >= 50 ? "a" : "b"; // the side showing more is "this one"
        this.render();
    }

    #openGrid() {
        if (this.data?.grid) openLightbox(this.client.viewUrl(this.data.grid), "compare grid: rows = checkpoints, columns = prompts");
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
        for (const [mode, button] of Object.entries(this.modeButtons)) {
            button.classList.toggle("active", mode === this.mode);
            button.setAttribute("aria-checked", String(mode === this.mode));
        }
        const name = (row) => data.rows[row]?.label ?? data.rows[row]?.checkpoint ?? "?";
        const src = (row) => (data.cells[row]?.[this.column] ? this.client.viewUrl(data.cells[row][this.column]) : "");
        const prompt = data.columns[this.column]?.prompt ?? "";
        this.stage.show({ srcA: src(this.a), srcB: src(this.b), altA: `${name(this.a)} — ${prompt}`, altB: `${name(this.b)} — ${prompt}`,
            labelA: name(this.a), labelB: name(this.b), mode: this.mode, shown: this.shown, split: this.split });
        const gridSrc = data.grid ? this.client.viewUrl(data.grid) : "";
        if (this.gridImg.getAttribute("src") !== gridSrc) this.gridImg.setAttribute("src", gridSrc);
        this.gridImg.parentElement.hidden = !gridSrc;
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
