"""The `lora` section of the training settings: the adapter's size, scale, initialisation, network
(LoRA / LoKr), the layers it wraps and the text-encoder LoRAs. Its own file because it is the largest
section; core/config.py gathers it with the others (core/sections.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .lora_selection import TARGET_PRESETS, parse_blocks
from .setting import Section, setting


@dataclass(frozen=True)
class LoraSettings(Section):
    """The LoRA adapter: size, scale, initialisation and which layers it wraps."""

    SECTION: ClassVar[str] = "lora"
    rank: int = setting(16, "LoRA rank (ai-toolkit 'linear'): capacity of the adapter. 16 most uses, "
                        "32 characters, 64 complex styles. File size grows linearly.", ge=1, le=1024)
    alpha: float | None = setting(None, "LoRA alpha ('linear_alpha'): the update is scaled by "
                                  "alpha/rank. Empty (None) = same as rank (scale 1), the usual "
                                  "choice; it then follows rank when rank changes.", gt=0, le=4096)
    dropout: float = setting(0.0, "Dropout on the LoRA input during training (0 = off; 0.05-0.1 can "
                             "reduce overfitting on tiny datasets).", ge=0.0, lt=1.0)
    init: str = setting("default", "Initialisation of the LoRA matrices: 'default' (A Kaiming-uniform, "
                        "B zero: training starts from the base model) or 'gaussian' (A normal 1/rank).",
                        choices=("default", "gaussian"))
    targets: str = setting("all", "Which layers get a LoRA: 'attention' (double-block qkv + proj, "
                           "single-block linear1/linear2), 'all' (attention + the double-block MLPs), "
                           "'mmdit' (double blocks only), 'context' (the text stream only: "
                           "experimental). 'attention' saves memory on big models.",
                           choices=TARGET_PRESETS)
    train_modulation: bool = setting(False, "Also train the modulation linears (adaLN) of the streams "
                                     "the target preset touches. Off by default: they are large and "
                                     "kohya's Flux trainer leaves them out too.")
    blocks: str = setting("", "Only these blocks (empty = every block of the target preset), e.g. "
                          "'double:0-9,single:20-37' or 'double:0,2,4-6'.")
    exclude_blocks: str = setting("", "Blocks to leave out (empty = none), same syntax as blocks; "
                                  "applied after it.")
    init_lora: str = setting("", "Path of a LoRA .safetensors to start from (continue training); "
                             "empty = start fresh. Its rank must equal lora.rank.")
    network: str = setting("lora", "Adapter kind: 'lora' (low-rank, the standard) or 'lokr' (LyCORIS LoKr, a "
                           "Kronecker product: SimpleTuner lora_type=lycoris with algo 'lokr', ai-toolkit network "
                           "type 'lokr'; SimpleTuner finds it better than LoRA on larger datasets). LoKr trains at "
                           "a higher learning rate: about 1e-3 with adamw (2e-4 with Lion) where LoRA uses 1e-4; "
                           "set optim.learning_rate with it. lora.rank, alpha, targets, blocks, dropout apply to both; "
                           "the file loads in ComfyUI's stock LoraLoader.", choices=("lora", "lokr"))
    lokr_factor: int = setting(-1, "LoKr only (LyCORIS 'factor', ai-toolkit 'lokr_factor'): each weight splits "
                               "as kron(w1, w2) with w1 at most factor x factor. -1 = the most even split (fewest "
                               "weights); 4, 8, 16 keep w1 that small and w2 larger, more weights (SimpleTuner's "
                               "Flux example: 16).", ge=-1, le=1024)
    lokr_full_matrix: bool = setting(False, "LoKr only (LyCORIS 'full_matrix', ai-toolkit 'lokr_full_rank'): train "
                                     "w2 as a full matrix instead of a rank-lora.rank product (alpha then has no "
                                     "effect: the scale is 1). Off: w2 is full anyway when lora.rank is at least "
                                     "half its larger side, as in LyCORIS.")
    lokr_decompose_both: bool = setting(False, "LoKr only (LyCORIS 'decompose_both'): also make w1 a "
                                        "rank-lora.rank product when the rank is under half its larger side.")
    train_text_encoder: bool = setting(False, "Also train a LoRA on the text encoder's CLIP-L (kohya "
                                       "train_text_encoder; Flux.1 only), same rank and alpha: captions are "
                                       "then encoded through it in every step. Flux.1's context comes from T5, "
                                       "which stays frozen and cached; CLIP-L gives only the pooled (global) "
                                       "vector, so this LoRA shapes the global conditioning. Start off; turn "
                                       "on if prompts are followed weakly. Saved in the same file "
                                       "(lora_te1_ keys: apply with LoraLoader's strength_clip). In-training "
                                       "previews, eval loss and SampleCheckpoint / CompareCheckpoints show the "
                                       "transformer part only; sample with LoraLoader to see both.")
    train_t5: bool = setting(False, "With train_text_encoder, also train a LoRA on T5-XXL (kohya "
                             "train_t5xxl; Flux.1 only), same rank, at text_encoder_lr: "
                             "the T5 context is then encoded from the captions in every step instead of the "
                             "cache. T5-XXL is 4.7B parameters (9.5 GB in bf16) and its activations for the "
                             "backward come on top, which the memory estimate does not count: for big GPUs "
                             "only. Saved in the same file as lora_te3_ keys (kohya's; LoraLoader's "
                             "strength_clip applies them).")
    text_encoder_lr: float = setting(5e-5, "Learning rate of the text LoRAs, CLIP-L and T5 (kohya text_encoder_lr), used "
                                     "with train_text_encoder; usually half the transformer's or less.",
                                     gt=0.0, le=10.0)

    def _check(self) -> None:
        for name in ("blocks", "exclude_blocks"):
            try:
                parse_blocks(getattr(self, name), setting=name)
            except ValueError as err:
                self._fail(name, str(err).removeprefix(f"{name}: "))
        if self.lokr_factor == 0:
            self._fail("lokr_factor", "0 splits nothing; use -1 (the most even split) or a factor such as 4, 8, 16")
        if self.network == "lokr" and self.init != "default":
            self._fail("init", f"{self.init!r} is a LoRA initialisation; LoKr starts as LyCORIS does (w2 zero, "
                       "w1 Kaiming-uniform): set lora.init to 'default' or lora.network to 'lora'")

    @property
    def effective_alpha(self) -> float:
        """The alpha to build and save the LoRA with: `alpha`, or `rank` when alpha is None.

        None is kept (not resolved at construction) so that overriding only the rank of a preset
        keeps alpha = rank, as users of ai-toolkit's `linear_alpha: <same as linear>` expect."""
        return float(self.rank) if self.alpha is None else self.alpha

    @property
    def scale(self) -> float:
        """The factor the LoRA update is multiplied by (effective_alpha / rank)."""
        return self.effective_alpha / self.rank
