// A full-size view of one image over the whole page (the gallery's tiles, the A/B widget's grid):
// click anywhere or press Escape to close. One at a time; it lives on document.body so neither the
// sidebar's width nor the node's size limits it.
import { h } from "./dom.js";

let open = null;

export function closeLightbox() {
    open?.remove();
    open = null;
}

/** Show `src` at its natural size (scaled down only to fit the window), with `caption` under it. */
export function openLightbox(src, caption = "") {
    closeLightbox();
    const onKey = (event) => {
        if (event.key !== "Escape") return;
        event.stopPropagation();
        closeLightbox();
    };
    open = h("div", { className: "fluxlab-lightbox", "data-testid": "fluxlab-lightbox", role: "dialog",
        "aria-label": caption || "image", tabindex: "-1", onclick: () => closeLightbox(), onkeydown: onKey },
    h("img", { src, alt: caption }),
    caption ? h("div", { className: "fluxlab-lightbox-caption" }, caption) : null,
    h("a", { href: src, target: "_blank", rel: "noopener", className: "fluxlab-lightbox-link",
        onclick: (event) => event.stopPropagation() }, "open in a new tab"));
    document.body.append(open);
    open.focus();
}
