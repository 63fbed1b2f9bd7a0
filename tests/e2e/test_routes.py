"""The /fluxlab/runs routes in the real server (docs/api.md): listing, detail with ?since, run files
only from inside the run folder, `use`, and a 4xx JSON message for every malformed request."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.e2e.test_training import make_dataset, run_folder
from tests.harness.graphs import training_graph

pytestmark = pytest.mark.e2e

RUN = "e2e_routes"


@pytest.fixture(scope="module")
def trained(comfy_client, comfy_server):
    """A finished 4-step run with checkpoints at steps 2 and 4."""
    make_dataset(comfy_server)
    comfy_client.run(training_graph(comfy_client, RUN, steps=4, run_save_every=2), timeout=60)
    return run_folder(comfy_server, RUN)


def call(client, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) without raising on 4xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(client.base_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def error_of(client, method: str, path: str, status: int, body=None, raw=None) -> str:
    got, payload, content_type = call(client, method, path, body, raw)
    assert got == status, (got, payload[:300])
    assert content_type.startswith("application/json"), content_type
    message = json.loads(payload)["error"]
    assert message and "Traceback" not in message
    return message


def file_url(path: str, run: str = RUN) -> str:
    return f"/fluxlab/runs/{run}/file?" + urllib.parse.urlencode({"path": path})


def test_list_and_detail(comfy_client, trained):
    runs = {r["run_id"]: r for r in comfy_client.get_json("/fluxlab/runs")["runs"]}
    summary = runs[RUN]
    assert summary["status"] == "finished" and summary["step"] == 4 and summary["total_steps"] == 4
    assert summary["run_dir"] == str(trained) and summary["lora_path"] == str(trained / "lora_final.safetensors")
    detail = comfy_client.get_json(f"/fluxlab/runs/{RUN}")
    seqs = [e["seq"] for e in detail["events"]]
    assert seqs == list(range(len(seqs))) and detail["events"][-1]["kind"] == "finished"
    later = comfy_client.get_json(f"/fluxlab/runs/{RUN}?since={seqs[-3]}")
    assert [e["seq"] for e in later["events"]] == seqs[-2:]
    assert comfy_client.get_json(f"/api/fluxlab/runs/{RUN}")["run_id"] == RUN, "ComfyUI's /api prefix works too"


def test_run_files_are_served_from_inside_the_run_folder_only(comfy_client, comfy_server, trained):
    status, body, content_type = call(comfy_client, "GET", file_url("learning_curve.svg"))
    assert status == 200 and body == (trained / "learning_curve.svg").read_bytes()
    status, body, _ = call(comfy_client, "GET", file_url("checkpoint_000002/training_state.json"))
    assert status == 200 and json.loads(body)["step"] == 2

    secret = comfy_server.base_dir / "secret.txt"
    secret.write_text("not for the browser")
    (trained / "link_out").unlink(missing_ok=True)
    (trained / "link_out").symlink_to(secret)
    for path in ("../../secret.txt", "checkpoint_000002/../../../secret.txt", "..\\..\\secret.txt"):
        assert ".." in error_of(comfy_client, "GET", file_url(path), 400)
    for path in (str(secret), "/etc/passwd", "C:\\Windows\\win.ini"):
        assert "absolute" in error_of(comfy_client, "GET", file_url(path), 400)
    assert "outside the run folder" in error_of(comfy_client, "GET", file_url("link_out"), 403)
    assert "no file" in error_of(comfy_client, "GET", file_url("nothing.png"), 404)
    assert "no file" in error_of(comfy_client, "GET", file_url("checkpoint_000002"), 404)  # a folder
    assert "path" in error_of(comfy_client, "GET", f"/fluxlab/runs/{RUN}/file", 400)


def test_malformed_requests_get_a_json_message(comfy_client, trained):
    assert "unknown run" in error_of(comfy_client, "GET", "/fluxlab/runs/no_such_run", 404)
    assert "unknown run" in error_of(comfy_client, "POST", "/fluxlab/runs/no_such_run/pause", 404)
    assert "unknown run" in error_of(comfy_client, "GET", file_url("learning_curve.svg", "no_such_run"), 404)
    assert "unknown action" in error_of(comfy_client, "POST", f"/fluxlab/runs/{RUN}/explode", 400)
    assert "not an integer" in error_of(comfy_client, "GET", f"/fluxlab/runs/{RUN}?since=abc", 400)
    assert "POST" in error_of(comfy_client, "GET", f"/fluxlab/runs/{RUN}/pause", 405)
    for action in ("pause", "resume", "checkpoint", "stop"):
        assert "not running" in error_of(comfy_client, "POST", f"/fluxlab/runs/{RUN}/{action}", 409)
    assert "folder name" in error_of(comfy_client, "GET", "/fluxlab/runs/.hidden", 400)
    # Measured before: both answered 500 (ENAMETOOLONG, RecursionError).
    assert "not a usable file name" in error_of(comfy_client, "GET", file_url("a" * 300), 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    assert "body must be JSON" in error_of(comfy_client, "POST", f"/fluxlab/runs/{RUN}/use", 400, raw=deep)


def test_use_copies_a_checkpoint_into_the_loras_folder(comfy_client, comfy_server, trained):
    loras = comfy_server.base_dir / "models" / "loras"
    answer = comfy_client.post_json(f"/fluxlab/runs/{RUN}/use", {"checkpoint": "checkpoint_000002"})
    assert answer == {"ok": True, "lora_name": f"fluxlab/{RUN}_2.safetensors"}
    assert (loras / answer["lora_name"]).read_bytes() == (trained / "checkpoint_000002" / "lora.safetensors").read_bytes()
    answer = comfy_client.post_json(f"/fluxlab/runs/{RUN}/use", {"checkpoint": "final"})
    assert answer["lora_name"] == f"fluxlab/{RUN}_4.safetensors"
    assert answer["lora_name"] in comfy_client.object_info("LoraLoaderModelOnly")["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0]

    url = f"/fluxlab/runs/{RUN}/use"
    assert "no complete checkpoint" in error_of(comfy_client, "POST", url, 404, {"checkpoint": "checkpoint_000003"})
    assert "no complete checkpoint" in error_of(comfy_client, "POST", url, 404, {"checkpoint": "../../x"})
    assert "checkpoint" in error_of(comfy_client, "POST", url, 400, {"step": 2})
    assert "JSON" in error_of(comfy_client, "POST", url, 400, raw=b"{not json")


def test_previews_and_config_come_from_the_run_folder(comfy_client, comfy_server, trained):
    """The panel's gallery and config view: TrainLoRA's preview prompts reach the route with the
    images they were rendered from (baseline and each checkpoint), and the saved config by section."""
    run = "e2e_gallery"
    comfy_client.run(training_graph(comfy_client, run, steps=2, run_save_every=2, previews=True), timeout=60)
    answer = comfy_client.get_json(f"/fluxlab/runs/{run}/previews")
    assert answer["trigger"] == "ohwx" and answer["class_word"] is None
    assert [s["step"] for s in answer["steps"]] == [0, 2]
    for step, folder in zip(answer["steps"], ("baseline", "checkpoint_000002")):
        assert step["images"] == [{"path": f"{folder}/prompt_0_64x64.png", "prompt": "a photo of ohwx"},
                                  {"path": f"{folder}/prompt_0_64x64_notrigger.png", "prompt": "a photo of"},
                                  {"path": f"{folder}/prompt_1_64x64.png", "prompt": "a red fox"}]
        status, body, content_type = call(comfy_client, "GET", file_url(step["images"][0]["path"], run))
        assert status == 200 and content_type == "image/png" and body.startswith(b"\x89PNG")
    assert comfy_client.get_json(f"/fluxlab/runs/{RUN}/previews")["steps"] == [], "a run without preview prompts"

    config = comfy_client.get_json(f"/fluxlab/runs/{run}/config")
    assert config["config"]["lora"]["rank"] == 4 and config["config"]["run"]["trigger"] == "ohwx"
    assert "rank" in config["docs"]["lora.rank"].lower()
    assert "unknown run" in error_of(comfy_client, "GET", "/fluxlab/runs/no_such_run/previews", 404)
    assert "/previews" in error_of(comfy_client, "GET", f"/fluxlab/runs/{RUN}/gallery", 404)
