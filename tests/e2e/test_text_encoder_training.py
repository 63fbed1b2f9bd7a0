"""TrainLoRA with lora_train_text_encoder in the real server: the run writes CLIP-L `lora_te1_` keys beside
the transformer's (with lora_train_t5 also T5 `lora_te3_` keys), and a stock graph (LoraLoader with model
and clip strength -> CLIPTextEncode -> KSampler) applies every key of the file; on Flux.2 the run fails
naming the setting."""

from __future__ import annotations

import pytest
from safetensors import safe_open

from tests.e2e.test_training import make_dataset, run_folder, training_graph
from tests.harness.graphs import tiny_sampling_graph

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("t5", [False, True])
def test_a_text_encoder_lora_trains_in_the_server_and_loads_in_stock_lora_loader(comfy_client, comfy_server, t5):
    dataset = make_dataset(comfy_server, f"fluxlab_te_e2e_{t5}", count=2)
    run = f"e2e_text_encoder_t5_{t5}"
    comfy_client.run(training_graph(comfy_client, run, steps=4, dataset=dataset, lora_train_text_encoder="on",
                                    lora_train_t5=t5, lora_text_encoder_lr=5e-2), timeout=120)
    final = run_folder(comfy_server, run) / "lora_final.safetensors"
    with safe_open(str(final), framework="pt") as f:
        keys = list(f.keys())
        te_up = [f.get_tensor(k) for k in keys if k.startswith("lora_te1_") and k.endswith("lora_up.weight")]
        t5_up = [f.get_tensor(k) for k in keys if k.startswith("lora_te3_") and k.endswith("lora_up.weight")]
    assert te_up and any(t.abs().max() > 0 for t in te_up), "the CLIP-L LoRA was not trained"
    assert any(k.startswith("lora_unet_") for k in keys)
    if t5:
        assert t5_up and all(t.abs().max() > 0 for t in t5_up), "the T5 LoRA was not trained"
    else:
        assert t5_up == []

    log_start = len(comfy_server.log_text())
    graph = tiny_sampling_graph("flux1-dev", prefix="fluxlab_e2e_te")
    graph["lora"] = {"class_type": "LoraLoader", "inputs": {
        "model": ["models", 0], "clip": ["models", 1], "lora_name": f"fluxlab/{run}.safetensors",
        "strength_model": 1.0, "strength_clip": 1.0}}
    graph["sampler"]["inputs"]["model"] = ["lora", 0]
    graph["text"]["inputs"]["clip"] = ["lora", 1]
    comfy_client.run(graph, timeout=60)
    new_log = comfy_server.log_text()[log_start:]
    assert "lora key not loaded" not in new_log, new_log


def test_flux2_refuses_the_text_encoder_lora_naming_the_setting(comfy_client, comfy_server):
    dataset = make_dataset(comfy_server, "fluxlab_te_e2e2", count=2)
    graph = training_graph(comfy_client, "e2e_te_flux2", steps=2, dataset=dataset, variant="flux2-dev",
                           lora_train_text_encoder="on")
    _, message = comfy_client.refusal(graph, timeout=120)
    assert "train_text_encoder" in message and "Flux.1's CLIP-L" in message, message
