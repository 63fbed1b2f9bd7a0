"""Per-folder dataset options through the real server: a regularisation folder chained after the
training folder (file-name captions, crop none, its own loss weight) is reported with its samples per
epoch and weight, and TrainLoRA trains on the combined set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_training import make_dataset, training_graph, wait_event
from tests.harness.graphs import node_inputs

pytestmark = pytest.mark.e2e


def write_reg_images(server, name: str) -> str:
    """Four 96x64 class images named like SimpleTuner's caption_strategy=filename sets, no caption files."""
    folder = server.base_dir / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    for i in range(4):
        Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(folder / f"a_person_{i}.png")
    return name


def test_regularisation_folder_is_reported_and_trained_on(comfy_client, comfy_server):
    run = "e2e_reg_folder"
    graph = training_graph(comfy_client, run, steps=2, run_save_every=0,
                           dataset=make_dataset(comfy_server, "e2e_reg_train"))
    graph["reg"] = {"class_type": "DatasetFromFolder", "inputs": node_inputs(
        comfy_client, "DatasetFromFolder", folder=write_reg_images(comfy_server, "e2e_reg_class"),
        vae=["models", 2], clip=["models", 1], resolutions="64", trigger="ohwx", caption_strategy="filename",
        crop="none", role="regularisation", reg_ratio=0.5, loss_weight=0.3, dataset=["data", 0])}
    graph["train"]["inputs"]["dataset"] = ["reg", 0]
    graph["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["reg", 1]}}
    start = len(comfy_client.stream.events)
    result = comfy_client.run(graph, timeout=300)

    text = result.outputs("show")["text"][0]
    assert "regularisation: 3 reg samples per epoch (with 3 training samples), loss weight 0.3, " \
           "captions without the trigger" in text, text
    assert "captions: filename; crop: none" in text and "Trigger 'ohwx' in 3/3 training captions." in text
    report = wait_event(comfy_client, run, "dataset_report", start)["report"]
    reg = report["folders"][1]
    assert (reg["role"], reg["reg_samples_per_epoch"], reg["loss_weight"]) == ("regularisation", 3, 0.3)
    assert report["samples_per_epoch"] == 6
    finished = wait_event(comfy_client, run, "finished", start)
    assert finished["step"] == 2 and finished["lora_path"]
