"""LoadFluxForTraining and DatasetFromFolder in the real server, over HTTP and the websocket.

- The same MODEL samples bit-identically with a stock KSampler before and after LoadFluxForTraining
  ran on it, and before and after a TrainLoRA run on it (ComfyUI's cache keeps the MODEL object of
  FluxLabTinyModels across the prompts; the events prove it was reused, not rebuilt).
- A dataset graph runs; a repeat after /free (every node re-runs, new VAE/CLIP objects) encodes
  nothing, and an edited image is re-encoded alone, as the report text and the
  `fluxlab.dataset_report` event say.
- Bad inputs (missing folder, corrupt image under policy "error") give messages that name the
  folder / file, and the server keeps serving.
"""

from __future__ import annotations

import io
import re
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.harness.api import ComfyAPIError, ComfyClient
from tests.harness.graphs import node_inputs, tiny_sampling_graph
from tests.harness.server import start_server

pytestmark = pytest.mark.e2e

VARIANT = "flux1-dev"


@pytest.fixture(scope="module")
def failing_server(tmp_path_factory):
    """(server, client) of a server of its own for graphs that fail on purpose: ComfyUI logs their
    tracebacks, and the session server's log must stay free of pack tracebacks (test_smoke checks it)."""
    server = start_server(tmp_path_factory.mktemp("comfy-base-h7-errors"))
    client = ComfyClient(server.url, log_tail=server.log_tail)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


def write_images(server, name: str, count: int = 3) -> str:
    folder = server.base_dir / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # contents (and captions) unique to this folder:
    # the encoding cache is shared by every dataset, so other tests' images must not count as reuse here
    for i in range(count):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(folder / f"img_{i}.png")
        (folder / f"img_{i}.txt").write_text(f"a photo of ohwx, {name} pattern {i}")
    return name


def dataset_graph(client, folder: str, **widgets) -> dict:
    return {
        "models": {"class_type": "FluxLabTinyModels", "inputs": {"variant": VARIANT, "seed": 0}},
        "data": {"class_type": "DatasetFromFolder", "inputs": node_inputs(
            client, "DatasetFromFolder", folder=folder, vae=["models", 2], clip=["models", 1], resolutions="64",
            trigger="ohwx", **widgets)},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["data", 1]}},
    }


def executed(result) -> set[str]:
    return {e["data"]["node"] for e in result.events if e["type"] == "executing" and e["data"].get("node")}


def cached(result) -> set[str]:
    return {n for e in result.events if e["type"] == "execution_cached" for n in e["data"]["nodes"]}


def pixels(client, result) -> np.ndarray:
    (image,) = result.images()
    return np.asarray(Image.open(io.BytesIO(client.view(**image))).convert("RGB"))


def report_of(result) -> tuple[str, dict]:
    """The report text (PreviewAny of the STRING output) and the `fluxlab.dataset_report` event data."""
    text = result.outputs("show")["text"][0]
    (event,) = [e["data"] for e in result.events if e["type"] == "fluxlab.dataset_report"]
    assert event["run_id"] is None and event["text"] == text
    return text, event["report"]


def test_load_node_leaves_stock_sampling_bit_identical(comfy_client):
    sampling = tiny_sampling_graph(VARIANT, seed=3, width=64, height=64, steps=2, prefix="h7_load")
    before = comfy_client.run(sampling, timeout=180)
    load = {
        "models": sampling["models"],
        "load": {"class_type": "LoadFluxForTraining", "inputs": node_inputs(
            comfy_client, "LoadFluxForTraining", model=["models", 0], quantization="int8")},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["load", 1]}},
    }
    loaded = comfy_client.run(load, timeout=180)
    after = comfy_client.run(sampling, timeout=180)

    memory = loaded.outputs("show")["text"][0]
    assert memory.startswith("Flux.1:") and "int8 copies of" in memory and loaded.outputs("load")["text"] == [memory]
    assert "models" in cached(loaded) and "models" in cached(after), "the MODEL was rebuilt: the proof would be empty"
    assert "sampler" in executed(after), "KSampler was answered from the cache: the proof would be empty"
    assert np.array_equal(pixels(comfy_client, before), pixels(comfy_client, after))


def test_training_leaves_stock_sampling_bit_identical(comfy_client, comfy_server):
    from tests.e2e.test_training import make_dataset  # TrainLoRA's own dataset helper
    from tests.harness.graphs import training_graph

    sampling = tiny_sampling_graph(VARIANT, seed=0, width=64, height=64, steps=2, prefix="h7_train")
    before = comfy_client.run(sampling, timeout=180)
    graph = training_graph(comfy_client, "h7_model_unchanged", steps=4, dataset=make_dataset(comfy_server, "h7_train"))
    assert graph["models"] == sampling["models"]
    trained = comfy_client.run(graph, timeout=300)
    after = comfy_client.run(sampling, timeout=180)

    assert "models" in cached(trained) and "models" in cached(after) and "sampler" in executed(after)
    assert {"load", "train"} <= executed(trained)
    assert np.array_equal(pixels(comfy_client, before), pixels(comfy_client, after))


def test_dataset_repeat_encodes_nothing_and_an_edit_re_encodes_one_image(comfy_client, comfy_server):
    folder = write_images(comfy_server, "h7_dataset")
    graph = dataset_graph(comfy_client, folder)
    first = comfy_client.run(graph, timeout=180)
    text, report = report_of(first)
    assert report["images"] == 3 and "Dataset: 3 images" in text
    assert (report["cache"]["latents_encoded"], report["cache"]["texts_encoded"]) == (3, 3)

    comfy_client.post_json("/free", {"free_memory": True})  # drop every cached node output
    comfy_client.run({"p": {"class_type": "PrimitiveString", "inputs": {"value": "sync"}},
                      "s": {"class_type": "PreviewAny", "inputs": {"source": ["p", 0]}}}, timeout=60)
    second = comfy_client.run(graph, timeout=180)
    text, report = report_of(second)
    assert {"models", "data"} <= executed(second) and not {"models", "data"} & cached(second)
    assert report["cache"] == {"latents_encoded": 0, "latents_reused": 3, "texts_encoded": 0, "texts_reused": 3,
                               "damaged_rebuilt": []}
    assert "Cache: 0 latents encoded, 3 reused; 0 captions encoded, 3 reused." in text

    image = comfy_server.base_dir / "input" / folder / "img_1.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(image)  # the node re-runs: its folder changed
    third = comfy_client.run(graph, timeout=180)
    _, report = report_of(third)
    assert "data" in executed(third) and "models" in cached(third)
    assert (report["cache"]["latents_encoded"], report["cache"]["texts_encoded"]) == (1, 0)


def test_missing_folder_is_refused_naming_it(failing_server):
    _, comfy_client = failing_server
    with pytest.raises(ComfyAPIError, match=r"graph rejected(.|\n)*h7_no_such_folder does not exist"):
        comfy_client.queue(dataset_graph(comfy_client, "h7_no_such_folder"))
    assert comfy_client.object_info("DatasetFromFolder")  # still serving


def test_corrupt_image_is_named_and_the_server_keeps_serving(failing_server):
    comfy_server, comfy_client = failing_server
    folder = write_images(comfy_server, "h7_corrupt")
    path = comfy_server.base_dir / "input" / folder / "img_2.png"
    path.write_bytes(path.read_bytes()[:200])  # truncated PNG
    result = comfy_client.run(dataset_graph(comfy_client, folder), timeout=180, expect_success=False)
    assert result.status == "error" and result.error()["node_id"] == "data"
    assert re.search(r"h7_corrupt/img_2\.png: damaged or truncated .*on_bad_file='skip'", result.error()["exception_message"])
    # ComfyUI titles the error dialog with the type: ours read as such, not as the install path.
    assert result.error()["exception_type"] == "fluxlab.DatasetError"

    skipped = comfy_client.run(dataset_graph(comfy_client, folder, bad_files="skip"), timeout=180)
    text, report = report_of(skipped)
    assert report["images"] == 2 and [r["file"].endswith("img_2.png") for r in report["rejected"]] == [True]
    assert "Rejected: " in text


def test_a_kohya_users_folder_gets_every_problem_in_one_report(failing_server):
    """A parent folder holding `10_sks_toy/` with a truncated PNG, an empty file, a 6x6 image, a
    Latin-1 caption, a caption without image, an image without caption, a duplicate and CMYK /
    16-bit / palette images. Measured before: "No usable images in ... (0 rejected)" at the
    defaults, and one problem per queue with recursive on."""
    from tests.core.data.kohya_folder import EXPECTED, GOOD, write_kohya_folder

    comfy_server, comfy_client = failing_server
    write_kohya_folder(comfy_server.base_dir / "input" / "kohya_toy")
    result = comfy_client.run(dataset_graph(comfy_client, "kohya_toy"), timeout=180, expect_success=False)
    assert result.status == "error" and result.error()["exception_type"] == "fluxlab.DatasetError"
    message = result.error()["exception_message"]
    assert message.startswith(f"The dataset has {len(EXPECTED)} problem(s)")
    for name, (words, _) in EXPECTED.items():
        assert any(f"10_sks_toy/{name}: " in line and words in line for line in message.splitlines()), (name, message)

    relaxed = comfy_client.run(dataset_graph(comfy_client, "kohya_toy", bad_files="skip",
                                             missing_caption="trigger_only"), timeout=180)
    text, report = report_of(relaxed)
    assert report["images"] == len(GOOD) and f"Dataset: {len(GOOD)} images" in text
    assert {r["file"].rsplit("/", 1)[-1] for r in report["rejected"]} == {"truncated.png", "empty.png", "latin1.png",
                                                                          "tiny.png"}
