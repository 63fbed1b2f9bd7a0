"""The sections of the training settings: model, optim, flow, dop, train, run (lora, the largest, is
core/lora_settings.py). Each field says what it does, its default and its allowed values (core/setting.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .setting import Section, setting

MAX_LEARNING_RATE = 0.1
"""The largest learning rate for every optimizer but prodigy: 1000x the Flux standard (tiny test
models learn at 2e-2); far beyond it a LoRA diverges within steps (lr 1e6 trained to NaN at step 3)."""
PRODIGY_ADAPTED_RATE = 1e-4
"""The default learning_rate (AdamW's): with prodigy it stands for Prodigy's 1.0 (`effective_learning_rate`)."""
ADAM_BETAS, LION_BETAS = (0.9, 0.999), (0.9, 0.99)
"""The default betas (Adam's) and what lion uses in their place (`effective_betas`)."""


@dataclass(frozen=True)
class ModelSettings(Section):
    """How the base Flux transformer is held in memory while the LoRA trains."""

    SECTION: ClassVar[str] = "model"
    quantize: str = setting("none", "Quantize the frozen base weights to save memory: 'none' keeps "
                            "them as loaded (bf16), 'qint8' (~half the memory, quality about equal), "
                            "'qfloat8', 'qint4' (~quarter, some quality loss); 'auto': when the run starts, "
                            "the first of none, qfloat8, qint8, qint4 (then checkpointing every block, then "
                            "block swap) that fits the device's free memory. The LoRA stays bf16/fp32.",
                            choices=("none", "qint8", "qfloat8", "qint4", "auto"))


@dataclass(frozen=True)
class OptimizerSettings(Section):
    """Optimizer, learning-rate schedule, accumulation and clipping."""

    SECTION: ClassVar[str] = "optim"
    optimizer: str = setting("adamw", "'adamw' (torch, fused when possible); 'adamw8bit' (bitsandbytes: "
                             "a quarter of AdamW's optimizer memory, seed 000's choice); 'adafactor' (torch; "
                             "uses neither betas nor eps); 'prodigy' (prodigyopt: finds its own step size, "
                             "learning_rate 1.0, the default 1e-4 is taken as 1.0); 'lion' (lion-pytorch: "
                             "half of AdamW's memory, use a 3-10x lower learning_rate and betas (0.9, 0.99)); "
                             "'adamw_schedulefree' (schedulefree: no decay schedule needed, lr_scheduler "
                             "constant, no EMA: it averages the weights itself).",
                             choices=("adamw", "adamw8bit", "adafactor", "prodigy", "lion", "adamw_schedulefree"))
    learning_rate: float = setting(1e-4, "Peak learning rate. 1e-4 is the Flux standard; 2e-4 learns "
                                   "faster but may overfit; 1e-3 fries a LoRA. Prodigy: 1.0.", gt=0.0,
                                   le=10.0)
    weight_decay: float = setting(1e-4, "Decoupled weight decay (pulls LoRA weights toward 0).", ge=0.0, le=1.0)
    betas: tuple[float, float] = setting(ADAM_BETAS, "Momentum coefficients (beta1, beta2) of Adam, "
                                         "prodigy, schedule-free and Lion (lion at this default uses (0.9, 0.99)).",
                                         ge=0.0, lt=1.0)
    eps: float = setting(1e-8, "Adam epsilon (numerical floor of the denominator).", gt=0.0, le=1.0)
    lr_scheduler: str = setting("constant", "Learning-rate shape after warmup: 'constant', 'cosine' "
                                "(to 0 at the last step) or 'linear' (to 0).",
                                choices=("constant", "cosine", "linear"))
    warmup_steps: int = setting(0, "Optimizer steps of linear warmup from ~0 to the peak rate.", ge=0,
                                le=1_000_000)
    gradient_accumulation: int = setting(1, "Micro-batches summed before each optimizer step "
                                         "(effective batch = batch_size x this). Costs time, not memory.",
                                         ge=1, le=1024)
    max_grad_norm: float = setting(1.0, "Clip the gradient norm to this value (0 = no clipping).", ge=0.0,
                                   le=1000.0)

    def _check(self) -> None:
        if self.optimizer == "prodigy" and self.learning_rate < 0.1 and self.learning_rate != PRODIGY_ADAPTED_RATE:
            self._fail("learning_rate", f"{self.learning_rate} with prodigy: Prodigy estimates the step "
                       "size itself and learning_rate is a multiplier of it; use 1.0 (0.1-2 is sane)")
        if self.optimizer != "prodigy" and self.learning_rate > MAX_LEARNING_RATE:
            self._fail("learning_rate", f"{self.learning_rate} would blow the LoRA up within a few steps "
                       f"(Flux LoRAs train at 1e-4 to 4e-4); use at most {MAX_LEARNING_RATE} with "
                       f"{self.optimizer} (larger values are for prodigy, which scales its own steps)")
        if self.optimizer == "adamw_schedulefree" and self.lr_scheduler != "constant":
            self._fail("lr_scheduler", f"{self.lr_scheduler!r} with adamw_schedulefree: schedule-free AdamW "
                       "replaces the decay schedule (that is its point); use 'constant' (warmup_steps still "
                       "applies)")

    @property
    def effective_learning_rate(self) -> float:
        """The rate the optimizer is built with: 1.0 for prodigy left at the default 1e-4 (an AdamW
        rate the user did not change when switching to prodigy), else `learning_rate`."""
        if self.optimizer == "prodigy" and self.learning_rate == PRODIGY_ADAPTED_RATE:
            return 1.0
        return self.learning_rate

    @property
    def effective_betas(self) -> tuple[float, float]:
        """The betas the optimizer is built with: Lion's own (0.9, 0.99) for lion left at Adam's
        default (0.9, 0.999), whose slow second moment makes Lion's sign steps lag; else `betas`."""
        if self.optimizer == "lion" and self.betas == ADAM_BETAS:
            return LION_BETAS
        return self.betas


@dataclass(frozen=True)
class FlowSettings(Section):
    """Flow-matching noise levels, loss weighting and the guidance input (core/train/flow.py)."""

    SECTION: ClassVar[str] = "flow"
    timestep_sampling: str = setting(
        "balanced", "Which noise levels training sees: 'uniform'; 'sigmoid' (logit-normal, mid-noise "
        "heavy); 'shift' (fixed shift toward high noise); 'flux_shift' (shift from image size, as BFL); "
        "'content' (bias toward low noise: details, subjects); 'style' (bias toward high noise: "
        "composition, styles); 'balanced' (50/50 content and style, recommended).",
        choices=("uniform", "sigmoid", "shift", "flux_shift", "content", "style", "balanced"))
    sigmoid_scale: float = setting(1.0, "Spread of 'sigmoid' sampling: sigma = sigmoid(scale * N(0,1)). "
                                   "Larger = more mass near 0 and 1.", gt=0.0, le=10.0)
    shift: float = setting(3.0, "Fixed shift of 'shift' sampling (SimpleTuner's flow_schedule_shift): "
                           ">1 moves noise levels up (composition, colour), <1 down (fine detail). "
                           "1 = uniform.", gt=0.0, le=100.0)
    content_style_bias: float = setting(3.0, "Exponent of 'content' / 'style' / 'balanced' sampling "
                                        "(sigma = u^k or 1-u^k): 1 = uniform, 3 = ai-toolkit's cubic.",
                                        ge=1.0, le=10.0)
    loss_weighting: str = setting("bell_shaped", "Weight of each noise level in the loss: 'uniform' or "
                                  "'bell_shaped' (mid noise counts most, ends least; mean weight 1).",
                                  choices=("uniform", "bell_shaped"))
    guidance: float = setting(1.0, "Guidance value fed to guidance-distilled models (Flux.1 dev) "
                              "while training. 1.0 keeps the distillation (the compatible default); "
                              "3.5-4.5 reintroduces CFG behaviour. Ignored by models without it.",
                              ge=0.0, le=100.0)


@dataclass(frozen=True)
class DopSettings(Section):
    """Differential output preservation: keep no-trigger outputs like the base model (seed 002)."""

    SECTION: ClassVar[str] = "dop"
    enabled: bool = setting(False, "Also train the prompt with the trigger replaced by the class word "
                            "to match the base model's output, so the subject appears only with the "
                            "trigger. Yes for characters, no for styles. Costs 2 extra forwards.")
    class_word: str = setting("", "Word that replaces the trigger in the preservation prompt "
                              "(e.g. 'woman', 'cat'). Required when DOP is on.")
    multiplier: float = setting(1.0, "Strength of the preservation loss (1.0 = equal to the main loss; "
                                "raise to 1.5-2 if the subject leaks into no-trigger images).", gt=0.0, le=100.0)
    every_n_steps: int = setting(1, "Do the preservation pass every N steps (1 = always; 4-8 for big "
                                 "models to save time).", ge=1, le=1_000_000)

    def _check(self) -> None:
        if self.enabled and not self.class_word.strip():
            self._fail("class_word", "DOP is enabled but class_word is empty; set the generic word for "
                       "your subject (e.g. 'person', 'cat') or turn dop.enabled off")


@dataclass(frozen=True)
class TrainSettings(Section):
    """Length, batch, precision, memory savers and EMA of the training loop."""

    SECTION: ClassVar[str] = "train"
    steps: int = setting(1000, "Optimizer steps to train. Each uses batch_size x "
                         "gradient_accumulation images. Rule of thumb: 27 per image for subjects "
                         "(min 300), 100 per image for styles.", ge=1, le=1_000_000)
    batch_size: int = setting(1, "Images per micro-batch (1 is normal for small datasets).", ge=1, le=256)
    seed: int = setting(42, "Seed of the run: data order, caption dropout and token-shuffle picks, noise, "
                        "timesteps, LoRA init and dropout. Same seed and same dataset = same run.",
                        ge=0, le=2**31 - 1)
    mixed_precision: str = setting("bf16", "Compute precision: 'bf16' autocast (fast, standard) or "
                                   "'no' (fp32, slow; for exact tests). fp16 overflows in Flux.",
                                   choices=("no", "bf16"))
    gradient_checkpointing: bool = setting(True, "Recompute block activations in the backward pass to "
                                           "save memory (on every block a step takes ~1.5x as long). "
                                           "On: as checkpoint_every_n_blocks says; off: never (fastest, "
                                           "needs room for every block's activations).")
    checkpoint_every_n_blocks: int | None = setting(None, "With gradient checkpointing, which blocks "
                                                    "recompute: empty = auto, the memory plan picks the "
                                                    "least recompute that fits the device (none with room "
                                                    "to spare, every block when tight); N = every N-th "
                                                    "block (1 = all, the least memory).", ge=1, le=64)
    compile: str = setting("auto", "torch.compile each transformer block (regional compilation): "
                           "faster steps (CPU bench: 1.09x fp32, 1.36x bf16) after a first step that compiles "
                           "(~20 s there, seconds once cached). auto = on for CUDA with Triton installed, an "
                           "unquantized base and no block swap; eager otherwise (CPU too). Not yet measured on a GPU.",
                           choices=("off", "auto", "on"))
    blocks_to_swap: int = setting(0, "Keep the base weights of the last N single blocks in system RAM and "
                                  "bring each to the GPU only while it runs (kohya's blocks_to_swap): "
                                  "for 10-16 GB cards; slower, the same LoRA. 0 = off.", ge=0, le=64)
    ema: bool = setting(False, "Keep an exponential moving average of the LoRA weights and save that "
                        "(smoother results, same memory as one extra LoRA copy).")
    ema_decay: float = setting(0.999, "EMA decay per optimizer step (0.999 averages ~1000 steps; "
                               "warmed up early so short runs are not dominated by the start).",
                               gt=0.0, lt=1.0)
    epochs: int = setting(0, "Passes over the dataset to train, instead of steps (ai-toolkit / kohya "
                          "epochs; seed 000 trains 10-12). 0 = use steps. Converted with the dataset's steps "
                          "per epoch at batch_size x gradient_accumulation; the report shows both.",
                          ge=0, le=100_000)


_RUN_NAME = re.compile(r"\w[\w.\- ]{0,99}")
RUN_NAME_RULE = ("letters, digits, '_', '-', '.' or spaces, up to 100 characters, starting with a letter, digit "
                 "or '_' and not ending with '.' or a space")
"""The one naming rule of runs: a run name is a folder name and a URL segment (no paths, no '..')."""


def is_run_name(name: object) -> bool:
    return isinstance(name, str) and _RUN_NAME.fullmatch(name) is not None and name[-1] not in ". "


@dataclass(frozen=True)
class RunSettings(Section):
    """Naming, trigger, saving and preview cadence of one run."""

    SECTION: ClassVar[str] = "run"
    name: str = setting("flux_lora", "Run name; the run folder and file names use it "
                        "(letters, digits, '_', '-', '.' or spaces).")
    trigger: str = setting("", "Trigger word your captions contain (e.g. 'ohwx' or 'maya_char'); "
                           "prepended to captions that lack it. Empty = no trigger.")
    save_every: int = setting(250, "Save a checkpoint every N steps (0 = only the final LoRA).", ge=0,
                              le=1_000_000)
    max_step_saves_to_keep: int = setting(4, "Keep only the newest N step checkpoints (0 = keep all); "
                                          "the final LoRA is always kept.", ge=0, le=100_000)
    sample_every: int = setting(250, "Render preview images every N steps (0 = no previews).", ge=0,
                                le=1_000_000)
    eval_timesteps: int = setting(4, "With an eval_dataset on TrainLoRA: score each of its samples at this "
                                  "many fixed noise levels (0.2, 0.4, 0.6, 0.8 for 4) with fixed noise, before "
                                  "step 1 and at every checkpoint, and plot it with the training loss "
                                  "(SimpleTuner's stable eval loss). 0 = off.", ge=0, le=32)
    lora_format: str = setting("kohya", "Key layout of Flux.1 LoRA files: 'kohya' (ComfyUI, Forge and kohya "
                               "sd-scripts apply every layer; diffusers drops txt_in, which lora.targets "
                               "'context' trains) or 'diffusers' (ai-toolkit's layout: ComfyUI, Forge and "
                               "diffusers apply every layer; kohya sd-scripts does not read it). Flux.2 files "
                               "have one layout that every loader reads.", choices=("kohya", "diffusers"))
    save_dtype: str = setting("fp16", "Precision of the saved LoRA files (ai-toolkit save.dtype, kohya "
                              "--save_precision): 'fp16' (half the size of fp32, what seed 000 and most "
                              "shared Flux LoRAs use), 'bf16' or 'fp32' (exact). Resume always continues "
                              "from the full-precision weights in the checkpoint's optimizer state.",
                              choices=("fp16", "bf16", "fp32"))

    def _check(self) -> None:
        if not is_run_name(self.name):
            self._fail("name", f"{self.name!r} is not a safe folder name; use {RUN_NAME_RULE}")
        if self.trigger != self.trigger.strip():
            self._fail("trigger", f"{self.trigger!r} has leading/trailing spaces; remove them")
