"""The bundled workflows, described by node and widget name (scripts/build_workflows.py writes them).

Settings and their explanations follow the seed documents users know: ai-toolkit's Flux character
template (rank 32, lr 1e-4, DOP with a class word), the Flux.2 guide's DOP and timestep advice, and
Astria's steps-per-image rules. File names are the ones ComfyUI's own Flux examples use.
"""

from __future__ import annotations

from nodes._comfy.model_files import FP8_HINT, GGUF_HINT, KNOWN_FILES
from nodes._demo_images import DEMO_FOLDER, demo_captions

DEMO_STEPS, DEMO_SAVE_EVERY = 400, 100

DEMO_NOTE = f"""## Flux LoRA Lab demo: train a LoRA on the CPU in a few minutes
Everything here is **tiny and random**: `Tiny Flux Models` builds a seeded miniature Flux.1-dev from
ComfyUI's own classes with random weights; it has never seen a picture. Its **colour** VAE turns each
8 x 8 pixel block into one latent pixel and back, so you can see what the LoRA learns.

`Demo Images` writes three captioned pictures into `ComfyUI/input/fluxlab_demo/` (a solid red square,
blue and white stripes, a yellow and black checkerboard). Press **Run** and watch the **Flux LoRA Lab**
sidebar tab: loss curve, previews, pause / save now / stop. The run folder is `output/fluxlab/demo/`.

`CompareCheckpoints` samples each caption with ComfyUI's own sampler and the same seed per column:
the **base** row is colourful noise (the random model), each checkpoint row moves toward the
training pictures (colours first; a random model this small never gets them crisp). Settings:
rank 64, all layers plus the modulation layers (`lora_train_modulation` on: without them a random
base learns little more than an offset), learning rate 3e-3 with a cosine decay, the three pictures
in one batch, {DEMO_STEPS} steps, high-noise (`style`) timesteps, no EMA, no DOP.

To train for real, swap `Tiny Flux Models` for `Load Diffusion Model` + `DualCLIPLoader` + `Load VAE`
and `Demo Images` for your own folder (see the other bundled workflows)."""

_BFL_KLEIN_9B = "black-forest-labs/FLUX.2-klein-9B on Hugging Face, accept its licence first"
FLUX1_FILES = ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")
FLUX2_FILES = ("flux-2-klein-4b.safetensors", "qwen_3_4b.safetensors", "flux2-vae.safetensors")


def files_section(names) -> str:
    """The note's model-file list: exact names, their folder under models/, where to get them, and
    what fp8 / GGUF users change (nodes/_comfy/model_files.py, which the pack's pre-flight uses too)."""
    lines = ["**Model files** (without them ComfyUI refuses to run the workflow; \"not in []\" means a file is missing):"]
    lines += [f"- `models/{KNOWN_FILES[n].folder}/{n}`: {KNOWN_FILES[n].what}, from [{KNOWN_FILES[n].source}]"
              f"({KNOWN_FILES[n].url})" for n in names]
    lines += [f"- {FP8_HINT}", f"- {GGUF_HINT}"]
    return "\n".join(lines)


BACKGROUND_RUN = """**Run** starts training in the background (`mode: background`): the queue is free at once and
the **Flux LoRA Lab** sidebar tab shows the loss and previews. The compare grid appears right away
with the **base** row and a note "training - 0 of N checkpoints so far"; to see the checkpoints, run
the *Compare checkpoints of a run* template with the same `run_name` while or after it trains."""

CHARACTER_NOTE = f"""## Flux.1-dev character LoRA with DOP
Settings of ai-toolkit's community character template (seed guides):
- **rank 32, alpha 32** (`linear` / `linear_alpha`): standard for characters; 64 for complex ones.
- **learning rate 1e-4**: the Flux standard; 2e-4 learns faster but may overfit.
- **steps**: left at 0 = the preset's rule: Astria's 27 images shown per image, at least 300 ('portrait'), divided by the gradient accumulation (4 here, seed 000).
- **DOP** (differential output preservation) is on in the *character* preset: the caption with the
  trigger replaced by the **class word** (`woman` here) is trained to match the base model, so the
  character appears only with the trigger. `dop_every_n_steps` 4-8 saves time on big models.
- quantization **auto**: when the run starts, the least lossy base that fits your card for these
  settings (the loaded weights, then fp8, then int4; ai-toolkit's `quantize: true`), said in the log.
- **resolutions 512,768,1024**: multi-resolution buckets, as ai-toolkit's `resolution: [512, 768, 1024]`.
- **content** timestep sampling: biased toward low noise, for subjects (Flux.2 guide).

Put 10-30 photos with `.txt` captions in `ComfyUI/input/my_character/`; captions say `ohwx woman ...`
(or use `{{trigger}}`). Check the dataset report before training starts.

{{files}}

Flux.1 [schnell] or Krea [dev]: pick `flux1-schnell.safetensors` or `flux1-krea-dev.safetensors` in
Load Diffusion Model (same folder, text encoders and VAE; {KNOWN_FILES["flux1-schnell.safetensors"].source},
{KNOWN_FILES["flux1-krea-dev.safetensors"].source}).

{BACKGROUND_RUN}""".replace("{files}", files_section(FLUX1_FILES))

STYLE_NOTE = f"""## Flux.1 style LoRA (no DOP)
- **style** preset: rank 64, lr 1.5e-4, 100 steps per image (at least 300; Astria 'high').
- **No DOP**: a style should affect everything (Flux.2 guide: "You WANT the style to affect everything").
- **style** timestep sampling biases toward high noise (composition, global look).
- Simple, consistent captions matter most for styles (RunDiffusion's report). Use a trigger such as
  `xyz style` if you want it to be switchable; that is a *concept* LoRA and may use DOP.

Put your style images with `.txt` captions in `ComfyUI/input/my_style/`.

{files_section(FLUX1_FILES)}

{BACKGROUND_RUN}"""

FLUX2_NOTE = f"""## Flux.2 klein 4B subject LoRA (the cat-toy example)
Flux.2 guide settings: rank 32, alpha 32, lr 1e-4, **balanced** timestep sampling, **bell_shaped**
loss weighting, DOP with the class word (`cat` for the cat-toy example), `dop_every_n_steps` 2
(1-2 on klein 4B). ~250 steps for a subject. Your images with same-name `.txt` captions go in
`input/cat_toy/`. Needs ComfyUI 0.9.2 or newer (names as ComfyUI's own klein templates use them).

{files_section(FLUX2_FILES)}

**klein 9B**: pick `flux-2-klein-9b.safetensors` ({_BFL_KLEIN_9B}) and `qwen_3_8b_fp8mixed.safetensors` (Qwen3-8B),
set `dop_every_n_steps` 4 (quantization auto picks fp8 or int4 where bf16 does not fit).
**dev**: `{KNOWN_FILES["flux2_dev_fp8mixed.safetensors"].name}` with `{KNOWN_FILES["mistral_3_small_flux2_fp8.safetensors"].name}`
(both {KNOWN_FILES["flux2_dev_fp8mixed.safetensors"].source}), quantization **auto** (or int4), targets
**attention**, `dop_every_n_steps` 8 (the guide: dev needs ~60 GB otherwise).

{BACKGROUND_RUN}"""

COMPARE_NOTE = f"""## Compare the checkpoints of a run
Set `run_name` to the folder name under `output/fluxlab/` (the name you gave TrainLoRA). Rows are
base (no LoRA), each kept checkpoint and the final LoRA; columns are the prompts; every column uses
the same seed, so only the LoRA differs. A run that is still training shows what it has saved so far
and says how many checkpoints are still to come. The A/B widget on the node flips or slides between
two rows; "use this one" copies that checkpoint to `loras/fluxlab/` for any LoRA loader.
`SampleCheckpoint` renders one image through ComfyUI's own LoRA loader and sampler: bit-identical to
LoraLoaderModelOnly + KSampler. Use the same base model files the run trained on.

{files_section(FLUX1_FILES)}"""


def with_model_files(node: dict, *names: str) -> dict:
    """Declare the files a stock loader loads (`properties.models`): ComfyUI's frontend lists those that
    are missing, with their folder and a download link, when the workflow opens."""
    node["properties"]["models"] = [KNOWN_FILES[name].frontend_entry() for name in names]
    return node


def _flux1_loaders(g, column=0):
    model = g.add("UNETLoader", column, 0, unet_name="flux1-dev.safetensors", weight_dtype="default")
    clip = g.add("DualCLIPLoader", column, 1, clip_name1="clip_l.safetensors", clip_name2="t5xxl_fp16.safetensors",
                 type="flux")
    vae = g.add("VAELoader", column, 2, vae_name="ae.safetensors")
    with_model_files(model, "flux1-dev.safetensors")
    with_model_files(clip, "clip_l.safetensors", "t5xxl_fp16.safetensors")
    with_model_files(vae, "ae.safetensors")
    return model, clip, vae


def _train_chain(g, model, clip, vae, *, load, dataset, train, compare, column=1):
    """LoadFluxForTraining -> DatasetFromFolder -> TrainLoRA -> CompareCheckpoints -> SaveImage."""
    trainer_model = g.add("LoadFluxForTraining", column, 0, **load)
    data = g.add("DatasetFromFolder", column, 1, **dataset)
    advanced_names = set(g.info["TrainLoRAAdvanced"]["input"]["required"]) | set(
        g.info["TrainLoRAAdvanced"]["input"].get("optional", {}))
    advanced = {k: train.pop(k) for k in list(train) if k in advanced_names}
    trainer = g.add("TrainLoRA", column + 1, 0, **train)
    if advanced:  # settings beyond TrainLoRA's essentials: on its advanced node, as a user would set them
        settings = g.add("TrainLoRAAdvanced", column + 1, 1, **advanced)
        g.link(settings, "advanced", trainer, "advanced")
    grid = g.add("CompareCheckpoints", column + 2, 0, **compare)
    save = g.add("SaveImage", column + 2, 1, filename_prefix="fluxlab/compare")
    g.link(model, "MODEL", trainer_model, "model")
    g.link(vae, "VAE", data, "vae")
    g.link(clip, "CLIP", data, "clip")
    g.link(trainer_model, "training_model", trainer, "model")
    g.link(data, "dataset", trainer, "dataset")
    g.link(clip, "CLIP", trainer, "clip")
    g.link(vae, "VAE", trainer, "vae")
    g.link(trainer, "run", grid, "run")
    g.link(model, "MODEL", grid, "model")
    g.link(clip, "CLIP", grid, "clip")
    g.link(vae, "VAE", grid, "vae")
    g.link(grid, "grid", save, "images")


def demo(g):
    g.note(DEMO_NOTE, -1, title="Read me")
    tiny = g.add("FluxLabTinyModels", 0, 0, variant="flux1-dev", seed=0, vae="colour")
    images = g.add("FluxLabDemoImages", 0, 1)
    captions = "\n".join(demo_captions())
    _train_chain(
        g, tiny, tiny, tiny,
        load={"quantization": "none", "training_dtype": "fp32", "gradient_checkpointing": False},
        dataset={"folder": DEMO_FOLDER, "resolutions": "64", "trigger": "ohwx"},
        train={"preset": "concept", "run_name": "demo", "mode": "wait", "train_steps": DEMO_STEPS, "lora_rank": 64,
               "lora_targets": "all", "lora_train_modulation": "on", "optim_learning_rate": 3e-3, "train_ema": "off",
               "train_batch_size": 3, "optim_lr_scheduler": "cosine", "flow_timestep_sampling": "style",
               "flow_loss_weighting": "uniform", "dop_enabled": "off", "run_save_every": DEMO_SAVE_EVERY, "run_sample_every": DEMO_SAVE_EVERY,
               "preview_prompts": captions, "preview_width": 64, "preview_height": 64, "preview_steps": 8,
               "preview_guidance": 1.0},
        compare={"prompts": captions, "checkpoints": "all", "width": 64, "height": 64, "steps": 8, "seed": 7,
                 "guidance": 1.0},
    )
    dataset = next(node for node in g.nodes if node["type"] == "DatasetFromFolder")
    g.link(images, "folder", dataset, "folder")


def flux1_character_dop(g):
    g.note(CHARACTER_NOTE, -1, title="Read me: settings from the guides")
    model, clip, vae = _flux1_loaders(g)
    _train_chain(
        g, model, clip, vae,
        load={"quantization": "auto", "training_dtype": "bf16", "gradient_checkpointing": True},
        dataset={"folder": "my_character", "resolutions": "512,768,1024", "trigger": "ohwx", "class_word": "woman",
                 "caption_dropout": 0.05},
        train={"preset": "character", "run_name": "my_character", "mode": "background", "lora_rank": 32,
               "optim_learning_rate": 1e-4, "dop_enabled": True, "run_save_every": 250, "run_sample_every": 250,
               "preview_prompts": "photo of ohwx woman in a cafe, natural light\nphoto of a woman in a cafe, natural light",
               "preview_width": 768, "preview_height": 1024},
        compare={"prompts": "photo of ohwx woman hiking, golden hour\nphoto of a woman hiking, golden hour",
                 "checkpoints": "latest 4", "width": 768, "height": 1024, "steps": 20, "seed": 42},
    )


def flux1_style(g):
    g.note(STYLE_NOTE, -1, title="Read me: style settings")
    model, clip, vae = _flux1_loaders(g)
    _train_chain(
        g, model, clip, vae,
        load={"quantization": "auto", "training_dtype": "bf16", "gradient_checkpointing": True},
        dataset={"folder": "my_style", "resolutions": "512,1024", "trigger": "xyz style"},
        train={"preset": "style", "run_name": "my_style", "mode": "background", "dop_enabled": False,
               "preview_prompts": "a lighthouse at dusk, xyz style\na portrait of an old sailor, xyz style",
               "preview_width": 1024, "preview_height": 1024},
        compare={"prompts": "a city street in the rain, xyz style\na bowl of fruit, xyz style",
                 "checkpoints": "latest 4", "width": 1024, "height": 1024, "steps": 20, "seed": 42},
    )


def flux2_subject(g):
    g.note(FLUX2_NOTE, -1, title="Read me: Flux.2 settings")
    model = g.add("UNETLoader", 0, 0, unet_name="flux-2-klein-4b.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", 0, 1, clip_name="qwen_3_4b.safetensors", type="flux2")
    vae = g.add("VAELoader", 0, 2, vae_name="flux2-vae.safetensors")
    with_model_files(model, "flux-2-klein-4b.safetensors")
    with_model_files(clip, "qwen_3_4b.safetensors")
    with_model_files(vae, "flux2-vae.safetensors")
    _train_chain(
        g, model, clip, vae,
        load={"quantization": "auto", "training_dtype": "bf16", "gradient_checkpointing": True},
        dataset={"folder": "cat_toy", "resolutions": "512", "trigger": "sks", "class_word": "cat"},
        train={"preset": "character", "run_name": "cat_toy", "mode": "background", "train_steps": 250,
               "lora_rank": 32, "lora_targets": "attention", "flow_timestep_sampling": "balanced",
               "dop_enabled": True, "dop_every_n_steps": 2,
               "run_save_every": 125, "run_sample_every": 125,
               "preview_prompts": "a photo of sks cat toy on a beach\na photo of a cat on a beach"},
        compare={"prompts": "a photo of sks cat toy in a garden\na photo of a cat in a garden",
                 "checkpoints": "all", "width": 512, "height": 512, "steps": 28, "seed": 42, "guidance": 4.0},
    )


def compare_existing_run(g):
    g.note(COMPARE_NOTE, -1, title="Read me")
    model, clip, vae = _flux1_loaders(g)
    grid = g.add("CompareCheckpoints", 1, 0, run_name="my_character", checkpoints="all",
                 prompts="photo of ohwx woman reading in a library\nphoto of a woman reading in a library",
                 width=768, height=1024, steps=20, seed=42)
    positive = g.add("CLIPTextEncode", 1, 1, text="photo of ohwx woman at the beach, candid")
    sample = g.add("SampleCheckpoint", 2, 1, run_name="my_character", checkpoint="latest", width=768, height=1024,
                   steps=20, seed=42)
    save_grid = g.add("SaveImage", 2, 2, filename_prefix="fluxlab/compare")
    save_one = g.add("SaveImage", 3, 1, filename_prefix="fluxlab/sample")
    for target in (grid, sample):
        g.link(model, "MODEL", target, "model")
        g.link(vae, "VAE", target, "vae")
    g.link(clip, "CLIP", grid, "clip")
    g.link(clip, "CLIP", positive, "clip")
    g.link(positive, "CONDITIONING", sample, "positive")
    g.link(grid, "grid", save_grid, "images")
    g.link(sample, "image", save_one, "images")


# File names are the template browser's card titles (ComfyUI lists a pack's templates by file name
# and searches those names), so they are titles in words that name what users search for.
DEMO_WORKFLOW = "Train a tiny Flux LoRA on the CPU (demo)"
WORKFLOWS = {
    DEMO_WORKFLOW: demo,
    "Train a Flux.1-dev character LoRA with DOP": flux1_character_dop,
    "Train a Flux.1 style LoRA": flux1_style,
    "Train a Flux.2 klein subject LoRA": flux2_subject,
    "Compare the checkpoints of a Flux LoRA run": compare_existing_run,
}
