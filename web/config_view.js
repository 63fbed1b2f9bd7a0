// The selected run's saved config (the `started` record of its latest session, GET
// /fluxlab/runs/<id>/config), one table per section, each setting's doc as its tooltip: what the
// run really trained with, after presets and defaults, for a finished run as for a live one.
import { h } from "./dom.js";

/** A setting's value as text: lists joined, empty strings and nulls shown as such. */
export function configValue(value) {
    if (value === null || value === undefined) return "none";
    if (value === "") return '""';
    if (Array.isArray(value)) return value.length ? value.map(configValue).join(", ") : "[]";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
}

export class ConfigView {
    /** @param {import("./client.js").FluxLabClient} client */
    constructor(client) {
        this.client = client;
        this.key = null;
        this.body = h("div", { className: "fluxlab-config", "data-testid": "fluxlab-config" });
        this.element = h("details", { className: "fluxlab-report-box", "data-testid": "fluxlab-config-box" },
            h("summary", {}, "Run config"), this.body);
    }

    /** Fetch again when the run or its session changed (a resumed run may have new settings). */
    render(run) {
        const key = `${run.runId}:${run.summary.started_at ?? "-"}`;
        if (key === this.key) return;
        this.key = key;
        this.client.config(run.runId)
            .then((answer) => { if (this.key === key) this.#draw(answer); })
            .catch((error) => {
                if (this.key !== key) return;
                this.key = null;
                this.body.replaceChildren(h("p", { className: "fluxlab-error" }, `Could not load the config: ${error.message}`));
            });
    }

    #draw({ config, docs = {} }) {
        if (!config) {
            this.body.replaceChildren(h("p", { className: "fluxlab-muted" }, "No config yet: the run has not started."));
            return;
        }
        const sections = Object.entries(config).filter(([, values]) => values && typeof values === "object");
        this.body.replaceChildren(...sections.map(([section, values]) => h("section",
            { className: "fluxlab-config-section", dataset: { section } }, h("h5", {}, section),
            h("table", {}, ...Object.entries(values).map(([name, value]) => h("tr",
                { title: docs[`${section}.${name}`] ?? "", dataset: { key: `${section}.${name}` } },
                h("th", {}, name), h("td", {}, configValue(value))))))));
    }
}
