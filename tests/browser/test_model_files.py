"""Opening a real-model workflow without its model files, as a new user does: ComfyUI's frontend lists
each missing file with its folder and a Download button, from the `properties.models` the bundled
workflows declare on their loaders (scripts/workflow_descriptions.py). Frontend 1.32 shows a "Missing
Models" dialog on load; 1.58 a notice ("4 issues found") whose "View details" opens the list."""

from __future__ import annotations

import re

import pytest


from .test_templates import open_template

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

FILES = {"flux1-dev.safetensors": "diffusion_models", "clip_l.safetensors": "text_encoders",
         "t5xxl_fp16.safetensors": "text_encoders", "ae.safetensors": "vae"}
DOWNLOAD = re.compile(r"^\s*Download( \(.*\))?\s*$")  # 1.58: "Download"; 1.32: "Download (?)" (size unknown)


def test_a_real_workflow_lists_its_missing_model_files_with_a_download(open_ui):
    ui = open_ui()
    ui.allow(r"workflow_templates/.+\.(jpg|jpeg|png|webp)")
    open_template(ui, "Train a Flux.1-dev character LoRA with DOP")
    ui.wait_for("() => window.app.graph.nodes.some((n) => n.type === 'UNETLoader')")
    details = ui.page.get_by_role("button", name="View details")
    ui.wait_for("() => /Missing Models|issues? found/i.test(document.body.innerText)")
    if details.count():  # 1.58: the notice first
        details.first.click()
    ui.wait_for("() => document.body.innerText.includes('Missing Models')")
    # One Download per declared file: without `properties.models` 1.32 shows no list at all and 1.58
    # lists the names without a download (the note names the files too, so names alone prove nothing).
    downloads = ui.page.locator("button", has_text=DOWNLOAD)
    downloads.nth(len(FILES) - 1).wait_for()
    listed = ui.evaluate("() => document.body.innerText")
    ui.shot("21_missing_model_files_listed")
    assert downloads.count() == len(FILES), f"{downloads.count()} Download buttons for {len(FILES)} missing files"
    for name, folder in FILES.items():
        assert name in listed and folder in listed
