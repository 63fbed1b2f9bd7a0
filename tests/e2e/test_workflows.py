"""The bundled workflows: ComfyUI's template browser lists them, every node and widget value in them
is valid in the running server, and the demo workflow trains end to end."""

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from scripts.comfy_server import PACK_DIRNAME, REPO_ROOT
from scripts.workflow_descriptions import DEMO_SAVE_EVERY, DEMO_STEPS, DEMO_WORKFLOW, WORKFLOWS
from flux_lora_lab.nodes._comfy.model_files import LOADER_WIDGETS
from scripts.workflow_prompt import FRONTEND_ONLY, ui_to_prompt, widget_inputs
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
    workflow = json.loads((REPO_ROOT / "workflows" / "Compare the checkpoints of a Flux LoRA run.json").read_text())
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


@pytest.mark.parametrize("path", [p for p in WORKFLOW_FILES if "tiny" not in p.stem], ids=lambda p: p.stem)
def test_each_real_workflow_names_its_model_files_their_folder_and_source(path, comfy_client):
    """Every file a stock loader of the workflow loads is declared on the loader (`properties.models`:
    ComfyUI's frontend lists the missing ones with a download link) and spelled out in the note: the
    name, the folder under models/ and where to get it, plus what fp8 and GGUF users change."""
    workflow = json.loads(path.read_text())
    info = comfy_client.object_info()
    notes = "\n".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] in FRONTEND_ONLY)
    loaders = [n for n in workflow["nodes"] if n["type"] in LOADER_WIDGETS]
    assert loaders
    for node in loaders:
        values = widget_inputs(node, info[node["type"]], check=False)
        declared = {entry["name"]: entry for entry in node["properties"].get("models", [])}
        for widget, folder in LOADER_WIDGETS[node["type"]]:
            name = values[widget]
            assert declared.get(name, {}).get("directory") == folder, f"{node['type']} {widget}={name}: {declared}"
            assert declared[name]["url"].startswith("https://huggingface.co/") and declared[name]["url"].endswith(name)
            assert f"models/{folder}/{name}" in notes, f"{path.name}: the note does not say where {name} goes"
            assert declared[name]["url"] in notes
    assert "fp8" in notes and "GGUF" in notes and "weight_dtype" in notes


def test_a_missing_model_file_is_named_with_its_folder_and_source_before_comfyui_refuses(comfy_client, comfy_server):
    """ComfyUI refuses a loader value it does not list ("not in [...]") before any node runs; the pack's
    pre-flight has already said, in the log and to the client as `fluxlab.missing_models`, which
    file is missing, where it goes and where to get it."""
    workflow = json.loads((REPO_ROOT / "workflows" / "Train a Flux.1-dev character LoRA with DOP.json").read_text())
    prompt = ui_to_prompt(workflow, comfy_client.object_info(), check=False)
    (unet,) = [node for node in prompt.values() if node["class_type"] == "UNETLoader"]
    unet["inputs"]["unet_name"] = "flux1-krea-dev.safetensors"  # a known file no test ever places
    start = len(comfy_client.stream.events)
    with pytest.raises(ComfyAPIError, match="flux1-krea-dev.safetensors"):
        comfy_client.queue(prompt)
    event = comfy_client.stream.wait_for(lambda e: e.get("type") == "fluxlab.missing_models", timeout=30, start=start)
    assert event is not None, "no fluxlab.missing_models event"
    (message,) = [m for m in event["data"]["messages"] if "flux1-krea-dev.safetensors" in m]
    for part in ("UNETLoader", "models/diffusion_models/", "black-forest-labs/FLUX.1-Krea-dev on Hugging Face",
                 "https://huggingface.co/black-forest-labs/FLUX.1-Krea-dev/resolve/main/flux1-krea-dev.safetensors",
                 "weight_dtype"):
        assert part in message, message
    assert message in comfy_server.log_text()
