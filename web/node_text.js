// A read-only text under a node, from its `executed` ui output's `text` (TrainLoRA: the settings the
// run uses and its memory plan; DatasetFromFolder: the dataset report). Display-only: a DOM widget
// with serialize off, so it never reaches the workflow or the prompt.
import { h } from "./dom.js";

export const TEXT_WIDGET = "fluxlab_text";
const MAX_HEIGHT = 360; // px; longer texts scroll

/** The text of a ui output ({text: ["..."]}), or null. */
export function outputText(output) {
    const text = output?.text;
    if (Array.isArray(text)) return text.filter((t) => typeof t === "string").join("\n") || null;
    return typeof text === "string" && text ? text : null;
}

/** Show `text` on `node` (a LiteGraph node with addDOMWidget), creating the widget on first use. */
export function showText(node, text) {
    let view = node.fluxlabText;
    if (!view) {
        view = h("pre", { className: "fluxlab-node-text", dataset: { testid: "fluxlab-node-text" } });
        const w = node.addDOMWidget(TEXT_WIDGET, "fluxlab-text", view, {
            serialize: false, hideOnZoom: false, getValue: () => undefined, setValue: () => {},
            getMinHeight: () => Math.min(MAX_HEIGHT, 16 * (view.textContent.split("\n").length + 1)),
        });
        w.serialize = false;
        node.fluxlabText = view;
    }
    view.textContent = text;
    const size = node.computeSize();
    node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
}
