"""The real loop in the background runner writes seed 002's run folder and obeys pause / resume / stop."""

import json
import threading

import torch
from PIL import Image
from safetensors import safe_open

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.train.preview import PreviewPrompt, PreviewSize, PreviewSpec
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.run.runner import RunRegistry
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.core.train.trainer_fixtures import CONTEXT_DIM, POOLED_DIM, TOKENS, SyntheticData, adopt, tiny_owner


def decode(latents: torch.Tensor) -> list[Image.Image]:
    """A stand-in VAE: the first three latent channels as an 8-bit picture (the nodes pass ComfyUI's VAE)."""
    rgb = latents[:, :3].clamp(-2, 2).add(2).div(4).mul(255).to(torch.uint8)
    return [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in rgb]


def preview_spec() -> PreviewSpec:
    g = torch.Generator().manual_seed(11)
    prompts = tuple(PreviewPrompt(f"prompt_{i}", torch.randn(TOKENS, CONTEXT_DIM, generator=g),
                                  torch.randn(POOLED_DIM, generator=g)) for i in range(2))
    return PreviewSpec(prompts, decode, sizes=(PreviewSize(8, 8, 8, 8),), steps=2)


def config(steps: int) -> TrainConfig:
    return TrainConfig.from_dict({
        "lora": {"rank": 2, "targets": "attention"},
        "train": {"steps": steps, "batch_size": 1, "mixed_precision": "no", "gradient_checkpointing": False,
                  "ema": True},
        "run": {"name": "folder", "trigger": "ohwx", "save_every": 3, "sample_every": 2, "max_step_saves_to_keep": 2},
    })


def test_background_run_writes_the_layout_and_obeys_pause_and_resume(tmp_path):
    folder = tmp_path / "folder"
    job = TrainingJob(config(9), adopt(tiny_owner()), SyntheticData(), RunDir(folder), base_fingerprint="tiny-0",
                      previews=preview_spec(), dataset_report={"images": 6})
    registry = RunRegistry()
    paused = threading.Event()

    def on_record(record):
        if record.kind == "step" and record.event.step == 4:
            handle.pause()
        if record.kind == "paused":
            paused.set()

    handle = registry.start("folder", folder, lambda control, emit: train(job, control, emit))
    handle.events.add_listener(on_record)
    assert paused.wait(60), "the run never paused"
    assert (folder / ".pause").exists() and handle.status == "paused"
    assert RunDir(folder).latest_checkpoint().step == 4, "pausing saves a checkpoint first"
    handle.resume()
    assert handle.join(120)

    kinds = [r.kind for r in handle.events.history()]
    assert kinds[0] == "dataset_report" and kinds[1] == "started" and kinds[-1] == "finished"
    steps = [r.event.step for r in handle.events.history() if r.kind == "step"]
    assert steps == list(range(1, 10))
    assert kinds.index("paused") < kinds.index("resumed")
    assert handle.status == "finished"

    names = {p.name for p in folder.iterdir()}
    assert {"baseline", "learning_curve.svg", "lora_final.safetensors", "events.jsonl", "samples"} <= names
    checkpoints = [c.step for c in RunDir(folder).list_checkpoints()]
    assert checkpoints == [6, 9], "max_step_saves_to_keep=2 keeps the two newest"
    last = folder / "checkpoint_000009"
    assert {p.name for p in last.iterdir()} == {"lora.safetensors", "optimizer_state.safetensors", "training_state.json",
                                               "prompt_0_8x8.png", "prompt_1_8x8.png"}
    assert json.loads((last / "training_state.json").read_text())["complete"] is True
    assert sorted(p.name for p in (folder / "baseline").iterdir()) == ["prompt_0_8x8.png", "prompt_1_8x8.png"]
    assert (folder / "samples" / "step_000002" / "prompt_0_8x8.png").is_file()
    with safe_open(str(folder / "lora_final.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["fluxlab.step"] == "9" and meta["fluxlab.trigger"] == "ohwx" and meta["fluxlab.base_fingerprint"] == "tiny-0"
    assert json.loads(meta["fluxlab.config"])["lora"]["rank"] == 2
    svg = (folder / "learning_curve.svg").read_text()
    assert svg.startswith("<svg") or svg.startswith("<?xml")


def test_stop_file_ends_the_run_with_a_resumable_checkpoint(tmp_path):
    folder = tmp_path / "stop"
    job = TrainingJob(config(50), adopt(tiny_owner()), SyntheticData(), RunDir(folder))
    registry = RunRegistry()
    handle = registry.start("stop", folder, lambda control, emit: train(job, control, emit), file_poll_s=0.0)
    handle.events.add_listener(
        lambda r: (folder / ".stop").touch() if r.kind == "step" and r.event.step == 2 else None)
    assert handle.join(120)
    end = handle.events.last("finished").event
    assert end.stopped_early and handle.status == "stopped"
    assert RunDir(folder).latest_checkpoint().step == end.step < 50
    assert not (folder / ".stop").exists(), "the stop request is consumed"
    assert not (folder / "lora_final.safetensors").exists()
