// The A/B widget's picture: two images of the same size stacked in a frame that is exactly the
// image's fitted box inside the stage (not the stage: measured before, with the images letterboxed
// by object-fit, a slider past ~78 % of the stage cut B off outside the picture and showed only A).
// In slide mode A is left of the divider and B right of it, each half labelled; in toggle mode one
// image and its label. Pure view: the widget tells it what to show.
import { h } from "./dom.js";

/** The largest box of aspect `imageW:imageH` that fits `boxW × boxH`, centred: {left, top, width, height}. */
export function fitBox(boxW, boxH, imageW, imageH) {
    if (!(boxW > 0 && boxH > 0 && imageW > 0 && imageH > 0)) return { left: 0, top: 0, width: Math.max(0, boxW), height: Math.max(0, boxH) };
    const scale = Math.min(boxW / imageW, boxH / imageH);
    const [width, height] = [imageW * scale, imageH * scale];
    return { left: (boxW - width) / 2, top: (boxH - height) / 2, width, height };
}

/** The divider position (0..100 % of the picture) for a pointer at `clientX` over a picture whose
 * box starts at `left` and is `width` wide: clamped, so dragging past either edge gives 0 or 100. */
export function splitAt(clientX, left, width) {
    if (!(width > 0)) return 50;
    return Math.max(0, Math.min(100, ((clientX - left) / width) * 100));
}

export class ABStage {
    constructor() {
        const img = (side) => h("img", { className: `fluxlab-ab-img side-${side}`, alt: side.toUpperCase(), draggable: "false" });
        this.imgA = img("a");
        this.imgB = img("b");
        this.divider = h("div", { className: "fluxlab-ab-divider" });
        this.tagA = h("span", { className: "fluxlab-ab-tag tag-a", "data-testid": "fluxlab-ab-tag-a" });
        this.tagB = h("span", { className: "fluxlab-ab-tag tag-b", "data-testid": "fluxlab-ab-tag-b" });
        this.frame = h("div", { className: "fluxlab-ab-frame", "data-testid": "fluxlab-ab-frame" },
            this.imgA, this.imgB, this.divider, this.tagA, this.tagB);
        this.element = h("div", { className: "fluxlab-ab-stage", "data-testid": "fluxlab-ab-stage" }, this.frame);
        for (const image of [this.imgA, this.imgB]) image.addEventListener("load", () => this.fit());
        new ResizeObserver(() => this.fit()).observe(this.element);
    }

    /** The divider position for a pointer event's x, relative to the picture (not the stage). */
    splitFor(event) {
        const box = this.frame.getBoundingClientRect();
        return splitAt(event.clientX, box.left, box.width);
    }

    /** @param {{srcA: string, srcB: string, altA: string, altB: string, labelA: string, labelB: string,
     *           mode: "toggle"|"slide", shown: "a"|"b", split: number}} view */
    show(view) {
        for (const [image, src, alt] of [[this.imgA, view.srcA, view.altA], [this.imgB, view.srcB, view.altB]]) {
            if (image.getAttribute("src") !== src) image.setAttribute("src", src);
            image.alt = alt;
        }
        this.tagA.textContent = `A · ${view.labelA}`;
        this.tagB.textContent = `B · ${view.labelB}`;
        const slide = view.mode === "slide";
        this.imgA.hidden = !slide && view.shown !== "a";
        this.imgB.hidden = !slide && view.shown !== "b";
        this.tagA.hidden = !slide && view.shown !== "a";
        this.tagB.hidden = !slide && view.shown !== "b";
        this.divider.hidden = !slide;
        this.element.title = slide ? "Drag across the picture to move the divider" : "Click or press Space to show the other";
        // B is drawn over A and clipped to the right of the divider: A left, B right.
        this.imgB.style.clipPath = slide ? `inset(0 0 0 ${view.split}%)` : "";
        this.divider.style.left = `${view.split}%`;
        this.frame.dataset.split = String(view.split);
        // A label hides where its half is too narrow to hold it (the other side covers the picture).
        this.tagA.classList.toggle("faded", slide && view.split < 12);
        this.tagB.classList.toggle("faded", slide && view.split > 88);
        this.fit();
    }

    /** Size the frame to the picture's fitted box (called on resize and when an image loads). */
    fit() {
        // Every cell of a grid has one size: while a new src loads (naturalWidth 0) keep the last one.
        const image = [this.imgA, this.imgB].find((i) => i.complete && i.naturalWidth > 0);
        if (image) this.imageSize = [image.naturalWidth, image.naturalHeight];
        const box = fitBox(this.element.clientWidth, this.element.clientHeight, ...(this.imageSize ?? [0, 0]));
        Object.assign(this.frame.style, { left: `${box.left}px`, top: `${box.top}px`, width: `${box.width}px`, height: `${box.height}px` });
    }
}
