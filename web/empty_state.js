// What the panel says before any run exists: how to start one.
import { h } from "./dom.js";

export function emptyState() {
    return h("div", { className: "fluxlab-empty", "data-testid": "fluxlab-empty" },
        h("p", {}, h("strong", {}, "No training runs yet.")),
        h("p", {}, "To start one: open Templates (the sidebar button, or Workflow → Browse Templates), pick "
            + "Flux LoRA Lab → \"Train a tiny Flux LoRA on the CPU (demo)\", and press Run. It trains a tiny "
            + "random model on the CPU in a few minutes, on three pictures it writes into ComfyUI's input/fluxlab_demo/."),
        h("p", {}, "For your own LoRA wire LoadFluxForTraining → DatasetFromFolder → TrainLoRA. Runs "
            + "appear here live, and past runs from output/fluxlab/ are listed too."));
}
