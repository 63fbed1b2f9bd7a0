// The latest preview images of a run under its loss chart, each a link to the full-size file.
import { h } from "./dom.js";

export class PreviewStrip {
    /** @param {{fileUrl: (runId: string, path: string) => string}} client */
    constructor(client) {
        this.client = client;
        this.titleEl = h("h4", {}, "Previews");
        this.element = h("div", { className: "fluxlab-previews", "data-testid": "fluxlab-previews" });
    }

    render(run) {
        const preview = run.preview;
        this.titleEl.textContent = preview ? `Previews · step ${preview.step}` : "Previews";
        const key = preview ? `${run.runId}:${preview.seq}` : "";
        if (this.element.dataset.key === key) return; // keep loaded images: no flicker per step
        this.element.dataset.key = key;
        const images = preview?.images ?? [];
        const url = (path) => this.client.fileUrl(run.runId, path);
        this.element.replaceChildren(...(images.length ? images.map((path) => h("a",
            { href: url(path), target: "_blank", rel: "noopener", title: path },
            h("img", { src: url(path), alt: `preview at step ${preview.step}: ${path}`, loading: "lazy" })))
            : [h("p", { className: "fluxlab-muted" }, "No preview images yet.")]));
    }
}
