"""LoKr the way users run it, in the real server: TrainLoRA with `lora_network` = lokr (wait, 4 steps)
-> SampleCheckpoint over the FLUXLAB_RUN socket gives the same pixels as the published file in a
stock LoraLoaderModelOnly + KSampler graph, the LoKr visibly changes the image, and the log has no
unmatched key. Flux.1 (kohya stems, `.alpha`) and Flux.2 (`diffusion_model.` stems, scale folded).
"""

import numpy as np
import pytest
from safetensors import safe_open

from tests.comfy_host import klein_param
from tests.e2e.test_sample_compare import MODEL_SEED, _base_graph, _sample_node, _save, _saved, _stock_branch
from tests.e2e.test_training import make_dataset, training_graph

pytestmark = pytest.mark.e2e


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["flux1-dev", klein_param()])
def test_a_trained_lokr_run_matches_stock_comfyui(comfy_client, comfy_server, variant):
    run_name = f"e2e_lokr_{variant}"
    make_dataset(comfy_server)
    graph = training_graph(comfy_client, run_name, steps=4, run_save_every=0, variant=variant, lora_network="lokr",
                           lora_lokr_decompose_both="on", optim_learning_rate=0.05)
    graph["models"]["inputs"]["seed"] = MODEL_SEED
    graph.update({k: v for k, v in _base_graph(variant).items() if k != "models"})
    graph["ours"] = _sample_node(run=["train", 0], checkpoint="final")  # strength 0.8, as _stock_branch
    ours = _save(graph, "lokr_trained", ["ours", 0], variant)
    result = comfy_client.run(graph, timeout=240)

    stock_graph = _base_graph(variant)
    stock = _stock_branch(stock_graph, "lokr_stock", variant, "guided0", f"fluxlab/{run_name}.safetensors")
    base = _stock_branch(stock_graph, "lokr_base", variant, "guided0", None)
    stock_result = comfy_client.run(stock_graph, timeout=120)
    stock_px = _saved(comfy_client, stock_result, stock)
    assert np.abs(stock_px.astype(int) - _saved(comfy_client, stock_result, base)).mean() > 0.5, \
        "the trained LoKr must change the image for this to prove anything"
    assert np.array_equal(_saved(comfy_client, result, ours), stock_px)
    assert "lora key not loaded" not in comfy_server.log_text()

    published = comfy_server.base_dir / "models" / "loras" / "fluxlab" / f"{run_name}.safetensors"
    with safe_open(str(published), framework="pt") as f:
        assert f.metadata()["fluxlab.network"] == "lokr"
        keys = list(f.keys())
    assert keys and all(".lokr_w" in k or k.endswith(".alpha") for k in keys)
    assert any(".lokr_w1_a" in k for k in keys) and any(k.endswith(".alpha") for k in keys) == variant.startswith("flux1")
