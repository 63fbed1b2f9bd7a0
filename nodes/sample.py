"""SampleCheckpoint: one image from a run's checkpoint (or any LoRA file), exactly as stock ComfyUI
would sample it: LoraLoaderModelOnly + FluxGuidance + Empty latent + KSampler + VAEDecode."""

from __future__ import annotations

import math

from comfy_api.latest import io

from ._checkpoints import CHECKPOINT_CHOICES, LoraChoice, RunCheckpoints, TrainingProgress
from ._comfy import runs, sampling
from .types import Run

CATEGORY = "FluxLoRALab"


def lora_source_inputs() -> list:
    """The run / run_name inputs SampleCheckpoint and CompareCheckpoints share."""
    return [
        Run.Input("run", optional=True, tooltip="A run from TrainLoRA. Alternatively type its name in run_name."),
        io.String.Input("run_name", default="", optional=True,
                        tooltip="Name of an existing run folder in <output>/fluxlab/ (used when no run is connected)."),
    ]


def _pick_source(run_given: bool, run_name: str | None, lora: str | None) -> str:
    """Which of run / run_name / lora names the LoRA; exactly one must. `lora` None: no such input."""
    given = [name for name, value in (("run", run_given), ("run_name", (run_name or "").strip()), ("lora", (lora or "").strip())) if value]
    if len(given) != 1:
        options = "connect a run, or set run_name" + (", or set lora to a LoRA file" if lora is not None else "")
        problem = "none is given" if not given else f"{' and '.join(given)} are {'both' if len(given) == 2 else 'all'} given"
        raise ValueError(f"which LoRA to use: {options} (exactly one); {problem}")
    return given[0]


def resolve_run(run, run_name: str | None, lora: str | None = None) -> tuple[str, object]:
    """Exactly one of run / run_name / lora: ("run", RunCheckpoints) or ("lora", Path).

    Errors name the inputs so the user knows which to set or clear.
    """
    source = _pick_source(run is not None, run_name, lora)
    if source == "lora":
        return "lora", sampling.lora_file(lora)
    run_id, folder = sampling.run_folder_of(run) if source == "run" else sampling.run_folder_named(run_name)
    return "run", RunCheckpoints(run_id, folder, TrainingProgress.of_handle(runs.find_run(run_id)))


def check_run_name(run_name: str | None) -> bool | str:
    """validate_inputs' part: True, or why `run_name` names no run folder (checked when the prompt is
    queued, before any model loads). Blank: a linked run, or execute() says what is missing.

    Why only run_name: ComfyUI (0.3.75 and 0.33) copies a failed validate_inputs message once per
    argument the function declares, so a validator taking six inputs filled the error dialog with six
    copies of one message. With one argument there is one message; every other check (the selection,
    run and run_name both given, a LoRA file) runs in execute(), before anything is sampled.
    """
    if not (run_name or "").strip():
        return True
    try:
        sampling.run_folder_named(run_name)
    except (ValueError, OSError) as exc:
        return str(exc)
    return True


def source_fingerprint(run_name: str | None, lora: str | None = None):
    """What makes a cached result stale: the LoRA files present and their times. A linked run
    (not visible to fingerprinting) always re-runs (NaN never equals itself)."""
    name, value = ((run_name or "").strip(), (lora or "").strip())
    try:
        if value and not name:
            path = sampling.lora_file(value)
            return (str(path), path.stat().st_mtime_ns)
        if name and not value:
            _, folder = sampling.run_folder_named(name)
            files = [*folder.glob("checkpoint_*/training_state.json"), *folder.glob("lora_final.safetensors")]
            return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in files))
    except (OSError, ValueError):
        return math.nan  # execute() reports the problem with its full message
    return math.nan


class SampleCheckpoint(io.ComfyNode):
    """Sample one checkpoint of a run (or a LoRA file) with ComfyUI's own LoRA loader and sampler.

    Bit-identical to the stock graph LoraLoaderModelOnly(strength) -> KSampler(seed, steps, cfg,
    sampler, scheduler; positive with FluxGuidance(guidance); negative or ConditioningZeroOut) on
    EmptySD3LatentImage / EmptyFlux2LatentImage(width, height) -> VAEDecode. Outputs the image and
    the MODEL with the LoRA applied (to keep sampling with stock nodes).
    """

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SampleCheckpoint",
            display_name="Sample Checkpoint (Flux LoRA Lab)",
            category=CATEGORY,
            description="Sample a run's checkpoint (latest, final or a step) or a LoRA file, exactly as stock LoraLoaderModelOnly + KSampler would.",
            inputs=[
                io.Model.Input("model", tooltip="The Flux MODEL the LoRA was trained on (from ComfyUI's loaders)."),
                io.Conditioning.Input("positive", tooltip="The prompt (CLIPTextEncode). Guidance is set below."),
                io.Vae.Input("vae"),
                io.Combo.Input("checkpoint", options=list(CHECKPOINT_CHOICES), default="latest",
                               tooltip="latest saved checkpoint, the final LoRA, or the checkpoint at `step`."),
                io.Int.Input("step", default=0, min=0, max=10**9, tooltip="The checkpoint's step when checkpoint is 'step'."),
                io.Float.Input("strength", default=1.0, min=-100.0, max=100.0, step=0.01, tooltip="LoRA strength (LoraLoaderModelOnly's strength_model)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Int.Input("steps", default=20, min=1, max=10000),
                io.Float.Input("guidance", default=3.5, min=0.0, max=100.0, step=0.1,
                               tooltip="Distilled guidance (FluxGuidance); models without it ignore it."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance; 1 for Flux dev / schnell (the negative is then unused)."),
                io.Combo.Input("sampler_name", options=sampling.sampler_names(), default="euler"),
                io.Combo.Input("scheduler", options=sampling.scheduler_names(), default="simple"),
                io.Int.Input("width", default=1024, min=16, max=16384, step=16),
                io.Int.Input("height", default=1024, min=16, max=16384, step=16),
                *lora_source_inputs(),
                io.String.Input("lora", default="", optional=True,
                                tooltip="Instead of a run: a LoRA name from the loras folder, or an absolute path inside the output / loras folders (checkpoint and step are then unused)."),
                io.Conditioning.Input("negative", optional=True, tooltip="Only used when cfg != 1; default: the zeroed positive."),
            ],
            outputs=[
                io.Image.Output(display_name="image"),
                io.Model.Output(display_name="model", tooltip="The MODEL with the LoRA applied."),
            ],
        )

    @classmethod
    def validate_inputs(cls, run_name=None):
        """Only run_name (see check_run_name); the checkpoint selection is checked by execute()."""
        return check_run_name(run_name)

    @classmethod
    def fingerprint_inputs(cls, run_name=None, lora=None, **_):
        return source_fingerprint(run_name, lora)

    @classmethod
    def execute(cls, model, positive, vae, checkpoint, step, strength, seed, steps, guidance, cfg, sampler_name,
                scheduler, width, height, run=None, run_name="", lora="", negative=None) -> io.NodeOutput:
        kind, source = resolve_run(run, run_name, lora)
        choice = source.select(checkpoint, step) if kind == "run" else LoraChoice("lora", "lora", None, source)
        settings = sampling.SampleSettings(seed, steps, cfg, sampler_name, scheduler, width, height)
        patched = sampling.apply_lora(model, choice.lora_path, strength)
        image = sampling.render(patched, vae, sampling.with_guidance(positive, guidance), negative, settings)
        preview = sampling.save_temp_images(image, "fluxlab_sample", cls)
        return io.NodeOutput(image, patched, ui={"images": preview})
