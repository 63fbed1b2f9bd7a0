"""Queuing a run name again, through the real server: an unchanged graph always runs (resuming a
stopped run, or saying at once that it finished), and a run on other weights or data is refused
without touching the old run's files, or trained under a new name when asked.

Measured before: an unchanged graph was served from ComfyUI's cache (nothing ran), and a re-queue
on another base or dataset resumed silently and overwrote the old run's final LoRA.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_training import fluxlab_events, make_dataset, post, run_folder, wait_event, wait_summary
from tests.harness.graphs import training_graph

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dataset(comfy_server):
    return make_dataset(comfy_server)


def published(server, run):
    return server.base_dir / "models" / "loras" / "fluxlab" / f"{run}.safetensors"


def snapshot(server, run):
    files = [p for p in run_folder(server, run).rglob("*") if p.is_file() and p.name != "events.jsonl"]
    files.append(published(server, run))
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def test_an_unchanged_graph_queued_again_resumes_a_stopped_run_and_reports_a_finished_one(comfy_client, dataset):
    run = "e2e_requeue"
    graph = training_graph(comfy_client, run, mode="background", steps=400, run_save_every=0)
    start = len(comfy_client.stream.events)
    comfy_client.run(graph)
    wait_event(comfy_client, run, "step", start)
    post(comfy_client, run, "stop")
    stopped = wait_event(comfy_client, run, "finished", start)["step"]
    wait_summary(comfy_client, run, lambda s: s["status"] == "stopped")

    mark = len(comfy_client.stream.events)
    comfy_client.run(graph)  # the very same graph: ComfyUI's cache must not answer for TrainLoRA
    assert wait_event(comfy_client, run, "started", mark)["start_step"] == stopped
    post(comfy_client, run, "stop")
    wait_event(comfy_client, run, "finished", mark)
    wait_summary(comfy_client, run, lambda s: s["status"] == "stopped")

    done = "e2e_requeue_done"
    finished = training_graph(comfy_client, done, steps=2)
    comfy_client.run(finished, timeout=60)
    mark = len(comfy_client.stream.events)
    comfy_client.run(finished, timeout=60)
    kinds = [e["type"].removeprefix("fluxlab.") for e in fluxlab_events(comfy_client, done, mark)]
    assert kinds[-3:] == ["started", "info", "finished"], kinds
    note = fluxlab_events(comfy_client, done, mark, "info")[-1]["data"]["message"]
    assert note.startswith(f"run '{done}' finished at step 2; to train it further, raise train_steps above 2")


@pytest.mark.parametrize("change, words", [
    ({"seed": 1}, ("other base weights",)),
    ({"dataset": "fluxlab_resume_other"}, ("another dataset",)),
    ({"lora_rank": 8}, ("lora.rank 4, now 8",)),
])
def test_a_run_on_other_weights_or_data_is_refused_and_nothing_is_touched(comfy_client, comfy_server, dataset,
                                                                          change, words):
    run = f"e2e_mismatch_{next(iter(change))}"
    comfy_client.run(training_graph(comfy_client, run, steps=2), timeout=60)
    before = snapshot(comfy_server, run)

    make_dataset(comfy_server, "fluxlab_resume_other", count=2)
    settings = {k: v for k, v in change.items() if k != "seed"}
    graph = training_graph(comfy_client, run, steps=4, **settings)
    if "seed" in change:
        graph["models"]["inputs"]["seed"] = change["seed"]
    stage, message = comfy_client.refusal(graph, timeout=60)
    assert stage == "node"
    for word in (*words, f"run '{run}'", "Nothing was changed", f"'new run' (trains fresh as '{run}_2')"):
        assert word in message, message
    assert snapshot(comfy_server, run) == before, "the old run's files changed"

    graph["train"]["inputs"]["on_existing_run"] = "new run"
    result = comfy_client.run(graph, timeout=60)
    assert result.outputs("train")  # the node ran
    assert (run_folder(comfy_server, f"{run}_2") / "lora_final.safetensors").is_file()
    assert published(comfy_server, f"{run}_2").is_file()
    assert snapshot(comfy_server, run) == before, "'new run' touched the old run's files"
