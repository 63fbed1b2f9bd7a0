"""The bundled workflows: ComfyUI's template browser lists them, every node and widget value in them
is valid in the running server, and the demo workflow trains end to end."""

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from scripts.comfy_server import PACK_DIRNAME, REPO_ROOT
from scripts.workflow_descriptions import DEMO_SAVE_EVERY, DEMO_STEPS, DEMO_WORKFLOW, WORKFLOWS
from scripts.workflow_prompt import FRONTEND_ONLY, ui_to_prompt

pytestmark = pytest.mark.e2e

WORKFLOW_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
# The stock model files the real-model workflows name (ComfyUI's usual file names). Empty
# placeholders make the loaders list them; they are never loaded here.
PLACEHOLDERS = {
    "diffusion_models": ["flux1-dev.safetensors", "flux-2-klein-4b.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp16.safetensors", "qwen_3_4b.safetensors"],
    "vae": ["ae.safetensors", "flux2-vae.safetensors"],
}


def test_every_bundled_workflow_is_listed_by_the_template_browser(comfy_client):
    listed = comfy_client.get_json("/workflow_templates")
    assert sorted(listed[PACK_DIRNAME]) == sorted(path.stem for path in WORKFLOW_FILES)
    assert sorted(path.stem for path in WORKFLOW_FILES) == sorted(WORKFLOWS), "regenerate: scripts/build_workflows.py"
    for path in WORKFLOW_FILES:
        url = f"{comfy_client.base_url}/api/workflow_templates/{PACK_DIRNAME}/{urllib.parse.quote(path.name)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert json.load(response) == json.loads(path.read_text())


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_every_node_and_widget_value_is_valid_in_the_server(path, comfy_server, comfy_client):
    for folder, names in PLACEHOLDERS.items():
        for name in names:
            target = comfy_server.base_dir / "models" / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    workflow = json.loads(path.read_text())
    prompt = ui_to_prompt(workflow, comfy_client.object_info(), check=True)
    kinds = {node["type"] for node in workflow["nodes"]}
    assert kinds & FRONTEND_ONLY, f"{path.name} has no Note explaining its settings"
    assert {"CompareCheckpoints"} <= {n["class_type"] for n in prompt.values()}
    notes = [n for n in workflow["nodes"] if n["type"] in FRONTEND_ONLY]
    assert all(len(n["widgets_values"][0]) > 200 for n in notes)


@pytest.mark.slow
def test_the_demo_workflow_trains_and_compares(comfy_server, comfy_client):
    workflow = json.loads((REPO_ROOT / "workflows" / f"{DEMO_WORKFLOW}.json").read_text())
    result = comfy_client.run(ui_to_prompt(workflow, comfy_client.object_info()), timeout=300)
    steps = [e["data"]["step"] for e in result.events if e["type"] == "fluxlab.step" and e["data"]["run_id"] == "demo"]
    assert steps == list(range(1, DEMO_STEPS + 1))
    run = Path(comfy_server.base_dir) / "output" / "fluxlab" / "demo"
    assert (run / "lora_final.safetensors").is_file() and (run / "learning_curve.svg").is_file()
    assert sorted(p.name for p in run.glob("checkpoint_*")) == [f"checkpoint_{s:06d}" for s in range(DEMO_SAVE_EVERY, DEMO_STEPS + 1, DEMO_SAVE_EVERY)]
    grid = [image for image in result.images() if image["filename"].startswith("compare")]
    assert len(grid) == 1, result.images()
