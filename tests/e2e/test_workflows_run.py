"""Every bundled workflow succeeds on Run in the real server, as shipped (issue 13, item 1).

The stock model loaders are swapped, here in the test and never in the shipped file, for
`FluxLabTinyModels` of the same family (no weights can be downloaded). The workflow is converted to an
API prompt the way the harness and `make demo` do it (scripts/workflow_prompt.py) and queued. Every
setting stays as the user gets it except the image sizes and sampling steps in `CHEAPER` (on CPU the
compare workflow alone took 16.5 minutes at its shipped 768 x 1024, 20 steps): they change how long a
sample takes, not which nodes run, in which mode, on which run and checkpoints. The training workflows run TrainLoRA in `background` mode, so
CompareCheckpoints meets a run that has not saved anything yet: that must show the base row and say
what is coming, not fail the prompt. Each background run is stopped once its prompt is done.
"""

import copy
import json
import shutil

import pytest

from scripts.comfy_server import REPO_ROOT
from scripts.demo_dataset import write_demo_dataset
from scripts.workflow_prompt import ui_to_prompt, widget_inputs
from tests.e2e.test_sample_compare import _make_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKFLOW_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
LOADERS = {"UNETLoader", "DualCLIPLoader", "CLIPLoader", "VAELoader", "CheckpointLoaderSimple"}
TINY_SLOT = {"MODEL": 0, "CLIP": 1, "VAE": 2}  # FluxLabTinyModels' outputs
CHEAPER = {  # class_type -> widget values that only set the cost of sampling / encoding
    "CompareCheckpoints": {"width": 64, "height": 64, "steps": 2},
    "SampleCheckpoint": {"width": 64, "height": 64, "steps": 2},
    "TrainLoRA": {"preview_width": 64, "preview_height": 64, "preview_steps": 2},
    "DatasetFromFolder": {"resolutions": "64"},
}


def tiny_variant(workflow: dict, variants: list[str]) -> str:
    """The tiny model of the family the workflow's loaders name (Flux.2 klein where the host has it)."""
    names = " ".join(str(v) for n in workflow["nodes"] if n["type"] in LOADERS for v in n.get("widgets_values", []))
    if "flux2" in names or "flux-2" in names:
        return "flux2-klein" if "klein" in names and "flux2-klein" in variants else "flux2-dev"
    return "flux1-dev"


def with_tiny_models(workflow: dict, variant: str) -> dict:
    """A copy of `workflow` with every stock loader replaced by one FluxLabTinyModels node; links
    from the loaders are re-pointed at its MODEL / CLIP / VAE outputs. Nothing else changes."""
    workflow = copy.deepcopy(workflow)
    loaders = {n["id"] for n in workflow["nodes"] if n["type"] in LOADERS}
    if not loaders:
        return workflow
    tiny_id = max(n["id"] for n in workflow["nodes"]) + 1
    workflow["nodes"] = [n for n in workflow["nodes"] if n["id"] not in loaders]
    workflow["nodes"].append({"id": tiny_id, "type": "FluxLabTinyModels", "inputs": [], "outputs": [],
                              "widgets_values": [variant, 0]})
    for link in workflow["links"]:
        if link[1] in loaders:
            link[1], link[2] = tiny_id, TINY_SLOT[link[5]]
    return workflow


def nodes_of(workflow: dict, kind: str, object_info: dict) -> list[dict]:
    return [widget_inputs(n, object_info[kind], check=False) for n in workflow["nodes"] if n["type"] == kind]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_every_shipped_workflow_succeeds_on_run(path, comfy_server, comfy_client):
    info = comfy_client.object_info()
    shipped = json.loads(path.read_text())
    variant = tiny_variant(shipped, info["FluxLabTinyModels"]["input"]["required"]["variant"][0])
    for dataset in nodes_of(shipped, "DatasetFromFolder", info):
        write_demo_dataset(comfy_server.base_dir / "input" / dataset["folder"])
    runs = comfy_server.base_dir / "output" / "fluxlab"
    trains = nodes_of(shipped, "TrainLoRA", info)
    for train in trains:  # a first run, as a new user has it (not one an earlier test left under that name)
        shutil.rmtree(runs / train["run_name"], ignore_errors=True)
    for compare in nodes_of(shipped, "CompareCheckpoints", info):
        if compare.get("run_name"):  # the compare-a-run workflow: a finished run of that name, on the tiny model
            shutil.rmtree(runs / compare["run_name"], ignore_errors=True)
            _make_run(comfy_server, variant, compare["run_name"])

    start = len(comfy_client.stream.events)
    prompt = ui_to_prompt(with_tiny_models(shipped, variant), info)
    for node in prompt.values():
        node["inputs"].update(CHEAPER.get(node["class_type"], {}))
    try:
        result = comfy_client.run(prompt, timeout=900)
    finally:
        for train in trains:  # a background run goes on after the prompt: stop it, wait for its end
            run = train["run_name"]
            if comfy_client.get_json(f"/fluxlab/runs/{run}").get("live"):
                comfy_client.post_json(f"/fluxlab/runs/{run}/stop", {})
                ended = comfy_client.stream.wait_for(
                    lambda e: e.get("type") in ("fluxlab.finished", "fluxlab.failed")
                    and (e.get("data") or {}).get("run_id") == run, timeout=900, start=start)
                assert ended is not None, f"run {run} did not stop"

    assert result.status == "success" and result.error() is None
    executed = {e["data"]["node"] for e in result.events if e["type"] == "executed"}
    compares = [node_id for node_id, node in prompt.items() if node["class_type"] == "CompareCheckpoints"]
    for node_id in compares:
        assert node_id in executed, f"CompareCheckpoints (node {node_id}) did not run"
        output = result.outputs(node_id)
        (grid,) = output["images"]
        assert comfy_client.view(grid["filename"], grid["subfolder"], grid["type"]).startswith(b"\x89PNG")
        (description,) = output["fluxlab_compare"]
        if any(train["mode"] == "background" for train in trains):
            # The run had just started: the base row is there and the node says what is still to come.
            assert [row["label"] for row in description["rows"]] == ["base"]
            assert description["training"].startswith("training - 0 "), description["training"]
            assert "checkpoints so far" in description["training"]
        else:
            assert description["training"] is None
            assert len(description["rows"]) >= 3  # base, checkpoints, final
