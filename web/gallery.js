// The run's preview gallery: every preview step still on disk (newest first), each image with its
// prompt, a trigger prompt next to its no-trigger twin (gallery_pairs.js). Fed by the run folder's
// history (GET /fluxlab/runs/<id>/previews), so a finished run and a reloaded page show all of it;
// a new preview event of the run fetches the list again. A click opens the image full-size.
import { h } from "./dom.js";
import { pairPrompts } from "./gallery_pairs.js";
import { openLightbox } from "./lightbox.js";

export class Gallery {
    /** @param {import("./client.js").FluxLabClient} client */
    constructor(client) {
        this.client = client;
        this.key = null;
        this.titleEl = h("h4", {}, "Previews");
        this.element = h("div", { className: "fluxlab-gallery", "data-testid": "fluxlab-gallery" });
    }

    /** Fetch and draw when the run or its newest preview changed (keeps loaded images otherwise). */
    render(run) {
        const key = `${run.runId}:${run.preview?.seq ?? "-"}:${run.historyLoaded}`;
        if (key === this.key) return;
        this.key = key;
        this.client.previews(run.runId)
            .then((answer) => { if (this.key === key) this.#draw(run.runId, answer); })
            .catch((error) => {
                if (this.key !== key) return;
                this.key = null; // try again on the next render
                this.element.replaceChildren(h("p", { className: "fluxlab-error" }, `Could not list previews: ${error.message}`));
            });
    }

    #draw(runId, { steps, trigger, class_word: classWord }) {
        const count = steps.reduce((n, s) => n + s.images.length, 0);
        this.titleEl.textContent = steps.length ? `Previews · ${steps.length} step${steps.length > 1 ? "s" : ""}, ${count} images` : "Previews";
        this.element.dataset.steps = steps.map((s) => s.step).join(",");
        if (!steps.length) {
            this.element.replaceChildren(h("p", { className: "fluxlab-muted" },
                "No preview images yet (TrainLoRA's preview_prompts render them at each save and sample step)."));
            return;
        }
        const figure = (image, tag) => {
            const src = this.client.fileUrl(runId, image.path);
            const caption = image.prompt ?? image.path;
            return h("figure", { className: "fluxlab-gallery-item", dataset: { path: image.path } },
                tag ? h("div", { className: "fluxlab-gallery-tag" }, tag) : null,
                h("img", { src, alt: caption, title: `${caption}\n(click: full size)`, loading: "lazy",
                    onclick: () => openLightbox(src, `${caption} · ${image.path}`) }),
                h("figcaption", {}, caption));
        };
        const sections = [...steps].reverse().map((step) => h("section",
            { className: "fluxlab-gallery-step", dataset: { step: String(step.step) } },
            h("h5", {}, step.step === 0 ? "Baseline (before training)" : `Step ${step.step}`),
            ...pairPrompts(step.images, trigger, classWord).map((row) => (row.single
                ? h("div", { className: "fluxlab-gallery-row" }, figure(row.single))
                : h("div", { className: "fluxlab-gallery-row fluxlab-gallery-pair" },
                    figure(row.trigger, `with ${trigger}`), figure(row.plain, `without ${trigger}`))))));
        this.element.replaceChildren(...sections);
    }
}
