"""The tiny models run a stock sampling graph (KSampler -> VAEDecode -> SaveImage) in the real
server, for Flux.1 dev (with FluxGuidance, 16-ch latent at /8) and Flux.2 dev (128-ch at /16)."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.harness.api import ComfyAPIError
from tests.harness.graphs import tiny_sampling_graph

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 64, 48  # not square, so a swapped width/height would show


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev"])
def test_stock_sampling_graph_saves_an_image(comfy_client, variant):
    result = comfy_client.run(tiny_sampling_graph(variant, width=WIDTH, height=HEIGHT, steps=2), timeout=180)

    assert result.status == "success"
    executed = {e["data"]["node"] for e in result.events if e["type"] == "executing" and e["data"]["node"]}
    assert {"models", "sampler", "decode", "save"} <= executed
    progress = [e for e in result.events if e["type"] == "progress" and e["data"].get("node") == "sampler"]
    assert progress and progress[-1]["data"]["value"] == progress[-1]["data"]["max"] == 2

    (image,) = result.images()
    assert image["type"] == "output" and image["filename"].startswith(f"fluxlab_tiny_{variant}")
    pixels = np.asarray(Image.open(io.BytesIO(comfy_client.view(**image))).convert("RGB"))
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert pixels.std() > 1.0, "a constant image: the tiny models produced no signal"



def test_a_failing_graph_reports_its_node_error(comfy_client):
    """The harness reports failures instead of hanging: a Flux.2 latent (128 ch) decoded by the
    Flux.1 VAE (16 ch) fails in VAEDecode, and the server stays usable for the next test."""
    graph = tiny_sampling_graph("flux2-dev", width=WIDTH, height=HEIGHT, steps=1, prefix="broken")
    graph["flux1"] = {"class_type": "FluxLabTinyModels", "inputs": {"variant": "flux1-dev", "seed": 0}}
    graph["decode"]["inputs"]["vae"] = ["flux1", 2]
    result = comfy_client.run(graph, timeout=180, expect_success=False)

    assert result.status == "error"
    assert result.error()["node_id"] == "decode" and result.error()["exception_message"]
    assert result.images() == []
    with pytest.raises(ComfyAPIError, match="graph rejected.*images"):
        comfy_client.queue({"save": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}})
