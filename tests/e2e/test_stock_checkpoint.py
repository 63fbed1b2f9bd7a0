"""A generated full-width, depth-1 Flux.1-dev file goes through ComfyUI's stock UNETLoader, so tests
that must use the stock loading path (e.g. a saved LoRA applied by the stock LoraLoader) can."""

import pytest
import torch
from safetensors import safe_open

from scripts.make_stock_flux_checkpoint import STOCK_FLUX1_CONFIG, ensure_stock_flux1_checkpoint
from tests.comfy_host import import_comfy
from tests.harness.server import link_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stock_flux1_checkpoint():
    """Path of the cached checkpoint (.cache/, ~1.1 GB; generated once, ~25 s on 2 cores)."""
    return ensure_stock_flux1_checkpoint()


def test_stock_checkpoint_is_detected_as_flux1_dev(stock_flux1_checkpoint):
    """ComfyUI's detection, fed the file's own key names and shapes, picks Flux.1 dev with the
    full widths and depth 1 + 1 (shapes only: meta tensors, nothing loaded)."""
    import_comfy()
    import comfy.model_detection
    import comfy.supported_models

    with safe_open(str(stock_flux1_checkpoint), framework="pt") as handle:
        shapes = {key: handle.get_slice(key).get_shape() for key in handle.keys()}
    state_dict = {key: torch.empty(shape, dtype=torch.bfloat16, device="meta") for key, shape in shapes.items()}
    config = comfy.model_detection.model_config_from_unet(state_dict, "")
    assert type(config) is comfy.supported_models.Flux
    for key in ("hidden_size", "num_heads", "depth", "depth_single_blocks", "context_in_dim", "vec_in_dim", "guidance_embed"):
        assert config.unet_config[key] == STOCK_FLUX1_CONFIG[key], key


def test_stock_unet_loader_loads_it_in_the_server(comfy_client, comfy_server, stock_flux1_checkpoint):
    name = link_model(comfy_server, "diffusion_models", stock_flux1_checkpoint)
    assert name in comfy_client.object_info("UNETLoader")["UNETLoader"]["input"]["required"]["unet_name"][0]
    log_start = len(comfy_server.log_text())
    graph = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": "default"}},
        "shift": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["unet", 0], "max_shift": 1.15, "base_shift": 0.5, "width": 64, "height": 64}},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["shift", 0]}},
    }
    try:
        result = comfy_client.run(graph, timeout=240)
    finally:  # drop the 2 GB model (fp32 on CPU) so later tests on this server do not carry it
        comfy_client.post_json("/free", {"unload_models": True, "free_memory": True})

    assert "ModelPatcher" in result.outputs("show")["text"][0]
    log = comfy_server.log_text()[log_start:]
    assert "model_type FLUX" in log, log
    assert "left over keys" not in log, log
