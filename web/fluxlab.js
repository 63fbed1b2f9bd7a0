// Flux LoRA Lab front-end entry point. For now it only registers the extension, so the pack's web
// directory is served and found (tests/e2e/test_smoke.py); the training panel arrives in later files.
import { app } from "../../scripts/app.js";

app.registerExtension({
    name: "FluxLoRALab.Core",
});
