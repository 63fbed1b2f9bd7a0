"""TrainLoRA in the real server, over HTTP and the websocket: wait mode, background mode with control,
Cancel and resume, bad inputs, and runs listed again after a server restart.

Graph: FluxLabTinyModels -> LoadFluxForTraining -> DatasetFromFolder (64 px images generated into
the server's input folder) -> TrainLoRA, rank 4, a few steps: each training takes seconds.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.harness.api import ComfyAPIError
from tests.harness.graphs import node_inputs, tiny_sampling_graph, training_graph
from tests.harness.server import ComfyServer

pytestmark = pytest.mark.e2e

VARIANT = "flux1-dev"
DATASET = "fluxlab_train_e2e"


# -- helpers (also used by test_routes.py; the prompt itself: tests/harness/graphs.py) ----------------------
def make_dataset(server, name: str = DATASET, count: int = 3) -> str:
    """`count` 64 px images with captions in <input>/<name>/; returns the folder name DatasetFromFolder takes."""
    folder = server.base_dir / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i}.png")
        (folder / f"img_{i}.txt").write_text(f"a photo of ohwx, pattern {i}")
    return name


def fluxlab_events(client, run_name: str, start: int = 0, kind: str | None = None) -> list[dict]:
    """The `fluxlab.*` websocket events of one run received since index `start`, in arrival order."""
    return [e for e in client.stream.events[start:]
            if e.get("type", "").startswith("fluxlab.") and (e.get("data") or {}).get("run_id") == run_name
            and (kind is None or e["type"] == f"fluxlab.{kind}")]


def wait_event(client, run_name: str, kind: str, start: int = 0, timeout: float = 60.0, **match) -> dict:
    event = client.stream.wait_for(
        lambda e: e.get("type") == f"fluxlab.{kind}" and (e.get("data") or {}).get("run_id") == run_name
        and all(e["data"].get(k) == v for k, v in match.items()), timeout, start=start)
    assert event is not None, f"no fluxlab.{kind} {match or ''} for {run_name} within {timeout} s"
    return event["data"]


def run_folder(server, run_name: str) -> Path:
    return server.base_dir / "output" / "fluxlab" / run_name


def wait_summary(client, run_name: str, predicate, timeout: float = 10.0) -> dict:
    """The run's summary once `predicate(summary)` holds (the thread ends just after its last event)."""
    deadline = time.monotonic() + timeout
    while True:
        summary = client.get_json(f"/fluxlab/runs/{run_name}")
        if predicate(summary) or time.monotonic() > deadline:
            return summary
        time.sleep(0.05)


def post(client, run_name: str, action: str, body: dict | None = None) -> dict:
    return client.post_json(f"/fluxlab/runs/{run_name}/{action}", body or {})


@pytest.fixture(scope="module")
def dataset(comfy_server):
    return make_dataset(comfy_server)


# -- wait mode -------------------------------------------------------------------------------------
def test_wait_mode_trains_and_the_lora_loads_in_stock_comfyui(comfy_client, comfy_server, dataset):
    run = "e2e_wait"
    start = len(comfy_client.stream.events)
    result = comfy_client.run(training_graph(comfy_client, run, steps=8, previews=True), timeout=120)

    events = fluxlab_events(comfy_client, run, start)
    kinds = [e["type"].removeprefix("fluxlab.") for e in events]
    assert kinds[:3] == ["info", "dataset_report", "started"] and kinds[-1] == "finished", kinds
    # quantization 'auto' (LoadFluxForTraining's default) says what it picked, first.
    assert events[0]["data"]["message"].startswith("auto: the loaded weights, no checkpointing (")
    seqs = [e["data"]["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e["data"]["step"] for e in events if e["type"] == "fluxlab.step"] == list(range(1, 9))
    assert [e["data"]["step"] for e in events if e["type"] == "fluxlab.checkpoint"] == [4, 8]
    assert events[-1]["data"]["stopped_early"] is False
    progress = [e["data"] for e in result.events if e["type"] == "progress" and e["data"].get("node") == "train"]
    assert [p["value"] for p in progress] == list(range(1, 9)), "ComfyUI's own progress bar is fed in wait mode"

    folder = run_folder(comfy_server, run)  # seed 002 layout
    previews = {"prompt_0_64x64.png", "prompt_1_64x64.png"}
    for step in (4, 8):
        checkpoint = folder / f"checkpoint_{step:06d}"
        names = {p.name for p in checkpoint.iterdir()}
        assert {"lora.safetensors", "optimizer_state.safetensors", "training_state.json"} | previews <= names, names
    assert previews <= {p.name for p in (folder / "baseline").iterdir()}
    # "a photo of ohwx" names the trigger: seed 002's progression pairs it with "a photo of" at each step.
    assert sorted(p.name for p in (folder / "progression").iterdir()) == [
        f"step_{s:06d}_prompt_0_64x64_{kind}.png" for s in (0, 4, 8) for kind in ("notrigger", "trigger")]
    assert (folder / "learning_curve.svg").read_text().startswith("<svg")
    assert (folder / "lora_final.safetensors").is_file() and (folder / "events.jsonl").is_file()
    published = comfy_server.base_dir / "models" / "loras" / "fluxlab" / f"{run}.safetensors"
    assert published.read_bytes() == (folder / "lora_final.safetensors").read_bytes()
    assert result.outputs("train")["images"], "the loss curve is shown on the node"


    log_start = len(comfy_server.log_text())
    graph = tiny_sampling_graph(VARIANT, prefix="fluxlab_e2e_trained")
    graph["lora"] = {"class_type": "LoraLoaderModelOnly",
                     "inputs": {"model": ["models", 0], "lora_name": f"fluxlab/{run}.safetensors", "strength_model": 1.0}}
    graph["sampler"]["inputs"]["model"] = ["lora", 0]
    comfy_client.run(graph, timeout=60)
    new_log = comfy_server.log_text()[log_start:]
    assert "lora key not loaded" not in new_log, new_log

    # A finished run queued again with more steps continues from its last checkpoint.
    mark = len(comfy_client.stream.events)
    comfy_client.run(training_graph(comfy_client, run, steps=10, previews=True), timeout=120)
    assert wait_event(comfy_client, run, "started", mark)["start_step"] == 8
    assert [e["data"]["step"] for e in fluxlab_events(comfy_client, run, mark, "step")] == [9, 10]
    assert (folder / "checkpoint_000010" / "lora.safetensors").is_file()


def test_the_nodes_show_the_runs_settings_its_memory_plan_and_the_dataset_report(comfy_client, comfy_server):
    """What TrainLoRA and DatasetFromFolder put under themselves (web/node_text.js shows a ui output's text). A
    dataset of its own, so DatasetFromFolder really runs (ComfyUI's cache would answer for a known folder)."""
    run = "e2e_node_texts"
    graph = training_graph(comfy_client, run, steps=2, dataset=make_dataset(comfy_server, "e2e_node_texts", count=3),
                           preset="style", train_steps=0, lora_rank=8, optim_learning_rate=2e-4, run_save_every=0)
    result = comfy_client.run(graph, timeout=120)
    (text,) = result.outputs("train")["text"]
    assert text.startswith("Run 'e2e_node_texts', preset style:"), text
    for words in ("300 steps (style: 100 per image x 3 images, at least 300)", "LoRA rank 8, alpha 8 on 'all'",
                  "adamw, learning rate 0.0002", "Memory plan for these settings (estimate):", "peak: "):
        assert words in text, text
    (report,) = result.outputs("data")["text"]
    assert "Dataset: 3 images" in report and "Suggested steps: character 75, concept 300, style 300." in report, report


# -- prompts written for the first layout --------------------------------------------------------------
def _first_layout_inputs() -> dict:
    """TrainLoRA's inputs as the first layout's /object_info gave them (captured before the change)."""
    return dict(json.loads((Path(__file__).parent.parent / "fixtures" / "old_trainlora_widgets.json").read_text()))


def test_a_prompt_of_the_first_layout_is_refused_naming_what_to_change(comfy_client, dataset):
    """All of its -1 numbers are refused when queued, by ComfyUI's minimum check, naming the widgets."""
    graph = training_graph(comfy_client, "e2e_first_layout", steps=4)
    graph["train"]["inputs"] = {**_first_layout_inputs(), "model": ["load", 0], "dataset": ["data", 0],
                                "run_name": "e2e_first_layout", "preset": "custom"}
    with pytest.raises(ComfyAPIError) as refused:
        comfy_client.queue(graph)
    for name in ("lora_rank", "lora_alpha", "optim_learning_rate", "train_batch_size"):
        assert name in str(refused.value), str(refused.value)
    assert not run_folder_exists(comfy_client, "e2e_first_layout")


def test_a_setting_of_the_first_layout_is_not_dropped_silently(comfy_client, dataset):
    """ComfyUI drops inputs a node does not declare: a first-layout prompt that set an advanced setting on
    TrainLoRA (valid otherwise) would train without it. It is refused, saying where the setting went."""
    graph = training_graph(comfy_client, "e2e_moved_setting", steps=4)
    graph["train"]["inputs"].update({"optim_beta1": 0.8, "flow_shift": 2.0})
    stage, message = comfy_client.refusal(graph, timeout=60)
    assert stage == "node", message
    for words in ("first layout", "flow_shift, optim_beta1", "TrainLoRAAdvanced", "'advanced' input"):
        assert words in message, message
    assert not run_folder_exists(comfy_client, "e2e_moved_setting")

# -- background mode and control ---------------------------------------------------------------------
def test_background_run_leaves_the_queue_free_and_obeys_the_routes(comfy_client, comfy_server, dataset):
    run = "e2e_background"
    folder = run_folder(comfy_server, run)
    start = len(comfy_client.stream.events)
    result = comfy_client.run(training_graph(comfy_client, run, mode="background", steps=400, run_save_every=0))
    assert result.status == "success"
    wait_event(comfy_client, run, "step", start)

    # The queue is free: a stock sampling graph completes while the run trains.
    comfy_client.run(tiny_sampling_graph(VARIANT, prefix="fluxlab_e2e_during_training"), timeout=60)
    assert comfy_client.get_json(f"/fluxlab/runs/{run}")["status"] == "running"
    # Cancel is for the queue: a background run neither stops nor fails on it (ComfyUI's ops check
    # the interrupt flag on every forward, the training thread's too).
    mark = len(comfy_client.stream.events)
    comfy_client.interrupt()
    now = wait_event(comfy_client, run, "step", mark)["step"]
    wait_event(comfy_client, run, "step", mark, step=now + 5)
    assert not fluxlab_events(comfy_client, run, start, "failed")
    assert comfy_client.get_json(f"/fluxlab/runs/{run}")["status"] == "running"

    mark = len(comfy_client.stream.events)
    assert post(comfy_client, run, "checkpoint")["ok"] is True
    saved = wait_event(comfy_client, run, "checkpoint", mark)
    assert Path(saved["path"]).parent == folder and (Path(saved["path"]) / "lora.safetensors").is_file()

    mark = len(comfy_client.stream.events)
    assert post(comfy_client, run, "pause")["ok"] is True
    paused = wait_event(comfy_client, run, "paused", mark)
    assert (folder / ".pause").exists()
    time.sleep(1.0)
    steps = [e["data"]["step"] for e in fluxlab_events(comfy_client, run, kind="step")]
    assert max(steps) == paused["step"], "no step while paused"
    assert comfy_client.get_json(f"/fluxlab/runs/{run}")["status"] == "paused"

    mark = len(comfy_client.stream.events)
    assert post(comfy_client, run, "resume")["ok"] is True
    wait_event(comfy_client, run, "resumed", mark)
    wait_event(comfy_client, run, "step", mark, step=paused["step"] + 1)
    assert not (folder / ".pause").exists()

    mark = len(comfy_client.stream.events)
    assert post(comfy_client, run, "stop")["ok"] is True
    finished = wait_event(comfy_client, run, "finished", mark)
    assert finished["stopped_early"] is True and finished["step"] < 400
    assert Path(finished["lora_path"]).is_file()
    assert (folder / f"checkpoint_{finished['step']:06d}" / "training_state.json").is_file()
    summary = wait_summary(comfy_client, run, lambda s: not s["live"])
    assert summary["status"] == "stopped"
    with pytest.raises(ComfyAPIError, match="409"):
        post(comfy_client, run, "pause")


def test_a_lora_sampling_beside_a_background_run_leaves_the_run_as_if_alone(comfy_client, comfy_server, dataset):
    """Stock LoraLoaderModelOnly + KSampler on the very MODEL a background run trains on: ComfyUI
    patches the LoRA into that MODEL's modules while it samples. Measured before the run owned its
    leaves: the run died within one step ("Inference tensors cannot be saved for backward"), and it
    would otherwise have trained on a base with another LoRA merged in. Now every sampling prompt
    completes and the run's LoRA equals, bit for bit, the same run trained with nothing beside it."""
    from safetensors.torch import load_file

    from flux_lora_lab.core.model.lora_format import save_lora
    from tests.e2e.test_sample_compare import _lora_weights
    from tests.harness.server import link_model

    lora_file = comfy_server.base_dir / "side_lora.safetensors"
    save_lora(lora_file, _lora_weights(VARIANT, seed=5), "flux1", step=1)
    lora_name = link_model(comfy_server, "loras", lora_file, name="fluxlab_e2e_side.safetensors")
    sampling = tiny_sampling_graph(VARIANT, prefix="fluxlab_e2e_beside_run")
    sampling["lora"] = {"class_type": "LoraLoaderModelOnly",
                        "inputs": {"model": ["models", 0], "lora_name": lora_name, "strength_model": 1.0}}
    sampling["sampler"]["inputs"]["model"] = ["lora", 0]

    run, steps = "e2e_beside_sampling", 80
    start = len(comfy_client.stream.events)
    comfy_client.run(training_graph(comfy_client, run, mode="background", steps=steps, run_save_every=0))
    wait_event(comfy_client, run, "step", start, step=1)
    for seed in range(3):
        sampling["sampler"]["inputs"]["seed"] = seed
        assert comfy_client.run(sampling, timeout=60).status == "success"
    assert comfy_client.get_json(f"/fluxlab/runs/{run}")["status"] == "running", "the sampling must overlap the run"
    finished = wait_event(comfy_client, run, "finished", start, timeout=180)
    assert not fluxlab_events(comfy_client, run, start, "failed")
    assert finished["stopped_early"] is False and finished["step"] == steps
    beside = fluxlab_events(comfy_client, run, start, "step")
    assert beside[-1]["data"]["step"] == steps

    alone = "e2e_alone"
    comfy_client.run(training_graph(comfy_client, alone, steps=steps, run_save_every=0), timeout=180)
    trained_beside = load_file(str(run_folder(comfy_server, run) / "lora_final.safetensors"))
    trained_alone = load_file(str(run_folder(comfy_server, alone) / "lora_final.safetensors"))
    assert trained_beside.keys() == trained_alone.keys()
    assert all(torch.equal(trained_beside[k], trained_alone[k]) for k in trained_alone)


# -- Cancel and resume ---------------------------------------------------------------------------------
def test_cancel_in_wait_mode_saves_a_checkpoint_and_requeue_resumes(comfy_client, comfy_server, dataset):
    run = "e2e_cancel"
    start = len(comfy_client.stream.events)
    prompt_id = comfy_client.queue(training_graph(comfy_client, run, steps=400, run_save_every=0))
    wait_event(comfy_client, run, "step", start, step=3)
    comfy_client.interrupt()
    result = comfy_client.wait(prompt_id, timeout=60, start=start)
    assert result.status == "interrupted", (result.status, result.error(), [e["type"] for e in result.events][-8:])
    finished = wait_event(comfy_client, run, "finished", start)
    assert finished["stopped_early"] is True
    step = finished["step"]
    assert step >= 3 and (run_folder(comfy_server, run) / f"checkpoint_{step:06d}" / "lora.safetensors").is_file()

    # The queue is not left interrupted, and the same run name resumes from the checkpoint.
    mark = len(comfy_client.stream.events)
    comfy_client.run(training_graph(comfy_client, run, steps=step + 2, run_save_every=0), timeout=60)
    started = wait_event(comfy_client, run, "started", mark)
    assert started["start_step"] == step and started["total_steps"] == step + 2
    assert [e["data"]["step"] for e in fluxlab_events(comfy_client, run, mark, "step")] == [step + 1, step + 2]
    assert (run_folder(comfy_server, run) / "lora_final.safetensors").is_file()


# -- bad inputs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, words", [
    ({"lora_rank": 0}, ("lora_rank", "lora.rank", "range")),
    ({"train_steps": -1}, ("train_steps", "train.steps", "range")),  # 0 is the preset's rule
    ({"run_name": "../escape"}, ("run_name", "not a safe folder name")),
    ({"dop_enabled": True}, ("class_word", "DOP", "DatasetFromFolder")),
    ({"optim_optimizer": "sgd"}, ("optim_optimizer", "'sgd' is not one of")),
    ({"flow_timestep_sampling": "balance"}, ("flow_timestep_sampling", "did you mean 'balanced'")),
    # NaN passes every comparison (ComfyUI's min/max checks too): refused by name, not in the thread.
    ({"optim_learning_rate": float("nan")}, ("optim_learning_rate", "not a finite number")),
    # Measured before: init_lora read any file of the server, unlike every other LoRA input.
    ({"lora_init_lora": "/etc/hostname"}, ("lora_init_lora", "absolute paths must lie in ComfyUI's output or loras")),
    ({"optim_warmup_steps": 10}, ("optim_warmup_steps", "on its Advanced LoRA training settings node", "less than")),
    ({"lora_init_lora": "no_such.safetensors"}, ("lora_init_lora", "not a name in the loras folder")),
])
def test_bad_settings_fail_with_a_message_naming_them(comfy_client, dataset, settings, words):
    """Refused by the node with our words, or (combo values on hosts that check them when a prompt
    is queued) by the server with a message that names the widget and the value."""
    (widget, value), = settings.items()
    if widget == "run_name":
        graph = training_graph(comfy_client, value, steps=4)
    else:
        graph = training_graph(comfy_client, "e2e_bad", steps=4, **settings)  # TrainLoRA's or the advanced node's
    stage, message = comfy_client.refusal(graph, timeout=60)
    assert widget in message, message
    if stage == "queue":  # a combo value, or a number under the widget's minimum (the setting's own bound)
        assert (f"'{value}'" in message and "not in" in message) or f"Value {value} smaller than min" in message, message
    else:
        for word in words:
            assert word in message, message


@pytest.mark.parametrize("name, value", [("preset", "portrait"), ("mode", "later"), ("lora_rank", -2)])
def test_unknown_values_are_refused_at_validation(comfy_client, dataset, name, value):
    graph = training_graph(comfy_client, "e2e_invalid", steps=4)
    graph["train"]["inputs"][name] = value
    with pytest.raises(ComfyAPIError, match=name):
        comfy_client.queue(graph)
    assert comfy_client.get_json("/system_stats")["system"], "the server keeps serving"


@pytest.mark.parametrize("name, value", [
    # Measured before the bounds: lr 1e6 trained to NaN from step 3 and published a NaN LoRA; rank
    # 1e6 ended in "DefaultCPUAllocator: can't allocate", naming nothing.
    ("optim_learning_rate", 1e6), ("lora_rank", 1_000_000), ("train_batch_size", 100_000),
])
def test_numbers_past_a_settings_bound_are_refused_when_queued(comfy_client, dataset, name, value):
    graph = training_graph(comfy_client, "e2e_bounds", steps=4)
    graph["train"]["inputs"][name] = value
    with pytest.raises(ComfyAPIError) as refused:
        comfy_client.queue(graph)
    assert name in str(refused.value) and "bigger than max" in str(refused.value)
    assert not run_folder_exists(comfy_client, "e2e_bounds")


def run_folder_exists(client, run_name: str) -> bool:
    return any(r["run_id"] == run_name for r in client.get_json("/fluxlab/runs")["runs"])


def test_a_live_run_name_is_refused(comfy_client, dataset):
    run = "e2e_live_twice"
    start = len(comfy_client.stream.events)
    comfy_client.run(training_graph(comfy_client, run, mode="background", steps=400, run_save_every=0))
    wait_event(comfy_client, run, "step", start)
    second = training_graph(comfy_client, run, mode="wait", steps=401, run_save_every=0)
    try:
        result = comfy_client.run(second, timeout=60, expect_success=False)
        assert result.status == "error"
        assert "already running" in result.error()["exception_message"]
    finally:
        post(comfy_client, run, "stop")
        wait_event(comfy_client, run, "finished", start)


# -- restart -------------------------------------------------------------------------------------------
def test_runs_are_listed_again_after_a_server_restart(comfy_client, comfy_server, dataset):
    for run in ("e2e_restart_a", "e2e_restart_b"):
        comfy_client.run(training_graph(comfy_client, run, steps=2), timeout=60)
    second = ComfyServer(comfy_server.base_dir, log_path=comfy_server.base_dir / "comfyui-restart.log", threads=1)
    second.start(timeout=180)
    try:
        from tests.harness.api import ComfyClient

        client = ComfyClient(second.url, log_tail=second.log_tail)
        try:
            runs = {r["run_id"]: r for r in client.get_json("/fluxlab/runs")["runs"]}
            detail = client.get_json("/fluxlab/runs/e2e_restart_b")
        finally:
            client.close()
    finally:
        second.stop()
    for run in ("e2e_restart_a", "e2e_restart_b"):
        assert runs[run]["status"] == "finished" and runs[run]["live"] is False, runs[run]
        assert runs[run]["step"] == 2 and runs[run]["lora_path"].endswith("lora_final.safetensors")
    assert [e["kind"] for e in detail["events"]][-1] == "finished"


# -- previews ----------------------------------------------------------------------------------------
def test_a_preview_shows_what_stock_comfyui_samples(comfy_client, comfy_server, dataset):
    """The baseline preview (LoRA off, before step 1) against KSampler + VAEDecode on the same MODEL,
    prompt, seed, size, steps and guidance. Measured before: previews used BFL's size-dependent
    shift, not the MODEL's own (Flux.1: 1.15), so they were not what users get."""
    run = "e2e_preview_match"
    comfy_client.run(training_graph(comfy_client, run, steps=1, previews=True, run_save_every=0), timeout=120)
    preview = np.asarray(Image.open(run_folder(comfy_server, run) / "baseline" / "prompt_1_64x64.png").convert("RGB"))
    result = comfy_client.run(tiny_sampling_graph(VARIANT, seed=0, steps=2, prompt="a red fox",
                                                  prefix="fluxlab_e2e_preview_stock"), timeout=60)
    (image,) = result.outputs("save")["images"]
    stock = np.asarray(Image.open(io.BytesIO(comfy_client.view(**image))).convert("RGB"))
    difference = np.abs(preview.astype(np.float64) - stock).mean()
    assert difference < 1.0, f"mean pixel difference {difference:.2f} of 255"


def test_the_runs_dataset_report_counts_steps_at_the_runs_batch(comfy_client, dataset):
    """Measured before: 'steps per epoch' used DatasetFromFolder's batch size (1), whatever TrainLoRA's."""
    run = "e2e_report_batch"
    start = len(comfy_client.stream.events)
    comfy_client.run(training_graph(comfy_client, run, steps=1, train_batch_size=2, optim_gradient_accumulation=2,
                                    run_save_every=0), timeout=120)
    report = wait_event(comfy_client, run, "dataset_report", start)["report"]
    assert report["batch_size"] == 4 and report["steps_per_epoch"] == 1  # 3 images, 4 per optimizer step
    assert report["preset"] == "custom" and report["suggested_steps"] is None  # 'custom' has no step rule
    assert report["suggested_steps_by_preset"] == {"character": 75, "concept": 300, "style": 300}  # 3 images; character: 4 per step


def test_an_eval_dataset_is_scored_before_step_1_and_at_every_checkpoint(comfy_client, comfy_server, dataset):
    """A second DatasetFromFolder on TrainLoRA's eval_dataset: its eval loss arrives as events (step 0 is
    the base), is kept in the checkpoints and drawn in learning_curve.svg."""
    run = "e2e_eval"
    held_out = make_dataset(comfy_server, "fluxlab_eval_e2e", count=2)
    graph = training_graph(comfy_client, run, steps=4, run_save_every=2, run_eval_timesteps=2)
    graph["eval"] = {"class_type": "DatasetFromFolder", "inputs": node_inputs(
        comfy_client, "DatasetFromFolder", folder=held_out, vae=["models", 2], clip=["models", 1], resolutions="64",
        trigger="ohwx")}
    graph["train"]["inputs"]["eval_dataset"] = ["eval", 0]
    start = len(comfy_client.stream.events)
    comfy_client.run(graph, timeout=120)
    wait_event(comfy_client, run, "finished", start)
    scores = [e["data"] for e in fluxlab_events(comfy_client, run, start, "eval_loss")]
    assert [s["step"] for s in scores] == [0, 2, 4] and all(s["loss"] > 0 for s in scores)
    state = json.loads((run_folder(comfy_server, run) / "checkpoint_000004" / "training_state.json").read_text())
    assert [p[0] for p in state["state"]["eval_losses"]] == [0, 2, 4]
    assert "eval-point" in (run_folder(comfy_server, run) / "learning_curve.svg").read_text()


def test_previews_take_a_prompt_library_more_sizes_and_real_cfg(comfy_client, comfy_server, dataset):
    run = "e2e_preview_options"
    graph = training_graph(comfy_client, run, steps=2, run_save_every=2, previews=True, preview_negative_prompt="blurry",
                           preview_real_cfg=2.0, preview_more_sizes="64x96")
    graph["train"]["inputs"]["preview_prompts"] = "portrait: a photo of ohwx"
    comfy_client.run(graph, timeout=120)
    names = {p.name for p in (run_folder(comfy_server, run) / "checkpoint_000002").iterdir()}
    assert {"portrait_64x64.png", "portrait_64x96.png", "portrait_64x64_notrigger.png",
            "portrait_64x96_notrigger.png"} <= names, names

    graph = training_graph(comfy_client, "e2e_preview_bad_cfg", steps=1, previews=True, preview_real_cfg=2.0)
    where, message = comfy_client.refusal(graph, timeout=60)
    assert where == "node" and "preview_real_cfg 2.0 needs a preview_negative_prompt" in message


def test_train_epochs_trains_that_many_passes_and_the_file_has_the_save_dtype(comfy_client, comfy_server, dataset):
    """train_epochs 2 at batch 1 x accumulation 2 over 3 images: 2 x the run's steps per epoch, in
    the report and in the steps trained; run_save_dtype bf16 gives a bf16 file the stock loader reads."""
    from safetensors.torch import load_file

    run = "e2e_epochs"
    start = len(comfy_client.stream.events)
    comfy_client.run(training_graph(comfy_client, run, steps=1, train_epochs=2, optim_gradient_accumulation=2,
                                    run_save_every=0, run_save_dtype="bf16"), timeout=120)
    report = wait_event(comfy_client, run, "dataset_report", start)["report"]
    assert (report["batch_size"], report["epochs"]) == (2, 2)
    assert report["steps_per_epoch"] >= 2 and report["train_steps"] == 2 * report["steps_per_epoch"]
    assert wait_event(comfy_client, run, "started", start)["total_steps"] == report["train_steps"]
    steps = [e["data"]["step"] for e in fluxlab_events(comfy_client, run, start, "step")]
    assert steps == list(range(1, report["train_steps"] + 1))
    final = load_file(str(run_folder(comfy_server, run) / "lora_final.safetensors"))
    assert {t.dtype for k, t in final.items() if not k.endswith(".alpha")} == {torch.bfloat16}
