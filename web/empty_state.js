// What the panel says before any run exists: how to start one.
import { h } from "./dom.js";

export function emptyState() {
    return h("div", { className: "fluxlab-empty", "data-testid": "fluxlab-empty" },
        h("p", {}, h("strong", {}, "No training runs yet.")),
        h("p", {}, "To start one: open Templates (the sidebar button, or Workflow → Browse Templates), pick "
            + "Extensions → comfyui-flux-lora-lab → fluxlab_demo_tiny_cpu, and press Run. It trains a tiny model "
            + "on the CPU in about a minute, on the images in ComfyUI's input/fluxlab_demo/ (`make demo` writes a set)."),
        h("p", {}, "For your own LoRA wire LoadFluxForTraining → DatasetFromFolder → TrainLoRA. Runs "
            + "appear here live, and past runs from output/fluxlab/ are listed too."));
}
