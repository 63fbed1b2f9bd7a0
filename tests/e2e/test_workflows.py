"""The bundled workflows: ComfyUI's template browser lists them, every node and widget value in them
is valid in the running server, and the demo workflow trains end to end."""

import json
import urllib.request
from pathlib import Path

import pytest

from scripts.comfy_server import PACK_DIRNAME, REPO_ROOT
from scripts.demo_dataset import write_demo_dataset
from scripts.workflow_descriptions import DEMO_FOLDER, WORKFLOWS
from scripts.workflow_prompt import FRONTEND_ONLY, ui_to_prompt
from tests.harness.api import ComfyAPIError

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
        url = f"{comfy_client.base_url}/api/workflow_templates/{PACK_DIRNAME}/{path.name}"
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
    write_demo_dataset(comfy_server.base_dir / "input" / DEMO_FOLDER)
    workflow = json.loads((REPO_ROOT / "workflows" / "fluxlab_demo_tiny_cpu.json").read_text())
    result = comfy_client.run(ui_to_prompt(workflow, comfy_client.object_info()), timeout=300)
    steps = [e["data"]["step"] for e in result.events if e["type"] == "fluxlab.step" and e["data"]["run_id"] == "demo"]
    assert steps == list(range(1, 41))
    run = Path(comfy_server.base_dir) / "output" / "fluxlab" / "demo"
    assert (run / "lora_final.safetensors").is_file() and (run / "learning_curve.svg").is_file()
    assert sorted(p.name for p in run.glob("checkpoint_*")) == [f"checkpoint_{s:06d}" for s in (10, 20, 30, 40)]
    grid = [image for image in result.images() if image["filename"].startswith("compare")]
    assert len(grid) == 1, result.images()


def test_an_unknown_run_name_gives_one_message_per_node_and_internal_folders_are_not_runs(comfy_server, comfy_client):
    """The compare workflow with a run name that does not exist: one message on each node that names
    it (ComfyUI copies a validator's message once per argument it declares, so the validators declare
    one), and the runs it lists are runs: not the pack's `.dataset_cache` folder."""
    for folder, names in PLACEHOLDERS.items():
        for name in names:
            target = comfy_server.base_dir / "models" / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    cache = comfy_server.base_dir / "output" / "fluxlab" / ".dataset_cache"
    (cache / ".latent_cache").mkdir(parents=True, exist_ok=True)
    (cache / "events.jsonl").touch()  # even a folder that looks like a run is not one when its name is internal
    workflow = json.loads((REPO_ROOT / "workflows" / "compare_checkpoints_of_a_run.json").read_text())
    prompt = ui_to_prompt(workflow, comfy_client.object_info())
    named = [node_id for node_id, node in prompt.items() if "run_name" in node["inputs"]]
    assert len(named) == 2
    for node_id in named:
        prompt[node_id]["inputs"]["run_name"] = "no such run"
    with pytest.raises(ComfyAPIError) as refused:
        comfy_client.queue(prompt)
    body = json.loads(str(refused.value).split("HTTP 400: ", 1)[1].split("\n", 1)[0])
    messages = {node_id: [e["details"] for e in entry["errors"]] for node_id, entry in body["node_errors"].items()}
    assert sorted(messages) == sorted(named), messages
    for node_id, details in messages.items():
        assert len(details) == 1, f"node {node_id}: {len(details)} messages: {details}"
        assert "run_name 'no such run': no run folder" in details[0]
        assert ".dataset_cache" not in details[0], details[0]
    listed = [run["run_id"] for run in comfy_client.get_json("/fluxlab/runs")["runs"]]
    assert not [name for name in listed if name.startswith(".")], listed

