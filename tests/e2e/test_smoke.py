"""The real ComfyUI server starts with the pack loaded: its nodes are registered, its JS is served
and its import left no error in the log."""

import pytest

from tests.harness.server import PACK_DIRNAME, pack_log_problems

pytestmark = pytest.mark.e2e

# Every node the pack registers; add each new node id here.
PACK_NODES = {
    "LoadFluxForTraining": "FluxLoRALab",
    "DatasetFromFolder": "FluxLoRALab",
    "SampleCheckpoint": "FluxLoRALab",
    "CompareCheckpoints": "FluxLoRALab",
    "TrainLoRA": "FluxLoRALab",
    "FluxLabTinyModels": "FluxLoRALab/dev",
}
PACK_JS = ["fluxlab.js"]


def test_pack_nodes_are_registered(comfy_client, comfy_server):
    info = comfy_client.object_info()
    missing = sorted(set(PACK_NODES) - set(info))
    assert not missing, f"nodes missing from /object_info: {missing}\n{comfy_server.log_tail()}"
    for node, category in PACK_NODES.items():
        assert info[node]["category"] == category
        assert info[node]["python_module"].endswith(PACK_DIRNAME), info[node]["python_module"]


def test_tiny_models_node_schema(comfy_client):
    node = comfy_client.object_info("FluxLabTinyModels")["FluxLabTinyModels"]
    assert node["output"] == ["MODEL", "CLIP", "VAE"]
    variants = node["input"]["required"]["variant"]
    assert {"flux1-dev", "flux1-schnell", "flux2-dev"} <= set(variants[1]["options"] if variants[0] == "COMBO" else variants[0])


def test_pack_js_is_served(comfy_client):
    listed = comfy_client.get_json("/extensions")
    for name in PACK_JS:
        url = f"/extensions/{PACK_DIRNAME}/{name}"
        assert url in listed, f"{url} not in /extensions: {[u for u in listed if not u.startswith('/extensions/core/')]}"
        source = comfy_client.request("GET", url).decode()
        assert "registerExtension" in source


def test_no_pack_errors_in_log(comfy_server):
    log = comfy_server.log_text()
    assert f"custom_nodes/{PACK_DIRNAME}" in log, "the log does not show the pack being imported"
    problems = pack_log_problems(log)
    assert not problems, "pack errors in the server log:\n" + "\n\n".join(problems)
