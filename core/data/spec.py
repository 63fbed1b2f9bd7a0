"""What a training set is made of: frozen settings, checked once, extended by chaining nodes.

A `DatasetSpec` holds one `FolderSource` per folder (seed 000 §8/§13: each folder has its own
resolution(s) and repeats) plus the options that apply to the whole set. A second DatasetFromFolder
node chained after the first gives `spec.chained_after(previous)`; the combined set is then built again,
which costs nothing for the first folder because its encodings are already in the disk cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .errors import DatasetError

MISSING_CAPTION_POLICIES = ("error", "trigger_only", "folder_name")
FILE_POLICIES = ("error", "skip")
CROP_MODES = ("center", "random", "none")
CAPTION_STRATEGIES = ("textfile", "filename", "instanceprompt")
ROLES = ("train", "regularisation")
BUCKET_STEP = 16


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DatasetError(f"{name}={value!r} is not supported; use one of {', '.join(allowed)}.")


@dataclass(frozen=True)
class FolderSource:
    """One folder of images and its per-folder options."""

    folder: Path
    """Folder holding images and same-stem caption files."""
    resolutions: tuple[int, ...] = (1024,)
    """Target resolutions (side of the square of equal area); each image is trained at every one."""
    repeats: int | None = None
    """Times each image is seen per epoch. None: the kohya prefix of the image's folder (`40_maya_char`
    -> 40), else 1. An explicit number overrides folder names."""
    recursive: bool = False
    """Also take images from sub-folders (each sub-folder may carry its own kohya prefix)."""
    caption_ext: str = "txt"
    """Extension of the caption file next to each image (`photo.png` -> `photo.txt`)."""
    missing_caption: str = "error"
    """Image without caption file: "error" (refuse), "trigger_only", or "folder_name" (kohya class
    of the folder, `40_maya_char` -> "maya char")."""
    crop: str = "center"
    """Crop after resizing to cover the bucket: "center" or "random" (offset fixed per seed and image);
    "none" resizes the whole image to the bucket instead, stretching it slightly (at most the step
    between neighbouring bucket shapes, a few percent) rather than cutting anything off."""
    no_upscale: bool = False
    """Images smaller than their bucket go to a smaller bucket of the same shape instead of being upscaled."""
    square_only: bool = False
    """Only square buckets (res x res); every image is cropped square."""
    alpha_as_mask: bool = False
    """Use an image's alpha channel as a loss mask (pixels are still flattened on white)."""
    min_size: int = 0
    """Images whose shorter side is below this many pixels are refused or skipped (see DatasetSpec.on_small)."""
    caption_strategy: str = "textfile"
    """Where captions come from (SimpleTuner's names): "textfile" (the caption file, else
    `missing_caption`), "filename" (the image's file name, underscores as spaces), "instanceprompt"
    (`instance_prompt` for every image)."""
    instance_prompt: str = ""
    """The one caption of every image under caption_strategy="instanceprompt"."""
    caption_dropout: float | None = None
    """This folder's caption dropout; None: the set's (DatasetSpec.caption_dropout)."""
    role: str = "train"
    """"train", or "regularisation" (kohya's reg images, SimpleTuner's is_regularisation_data): the
    images mix into every epoch at `reg_ratio`, their captions get no trigger, their loss `loss_weight`."""
    reg_ratio: float = 0.5
    """Regularisation folders only: the fraction of each epoch's samples drawn from this folder. 0.5 is
    kohya's balance (as many reg samples as training samples per epoch); see core/data/schedule.py."""
    loss_weight: float = 1.0
    """Each of this folder's samples' loss is multiplied by this (kohya's prior_loss_weight for reg folders)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        resolutions = (self.resolutions,) if isinstance(self.resolutions, int) else self.resolutions
        object.__setattr__(self, "resolutions", tuple(int(r) for r in resolutions))
        if not self.resolutions:
            raise DatasetError(f"resolutions of {self.folder} is empty; give at least one, e.g. (1024,).")
        for res in self.resolutions:
            if res < BUCKET_STEP or res % BUCKET_STEP:
                raise DatasetError(f"resolution {res} of {self.folder} must be a positive multiple of {BUCKET_STEP}.")
        if self.repeats is not None and self.repeats < 1:
            raise DatasetError(f"repeats={self.repeats} of {self.folder} must be >= 1 (or None for folder names).")
        if not self.caption_ext or "/" in self.caption_ext:
            raise DatasetError(f"caption_ext={self.caption_ext!r} must be a bare extension such as 'txt'.")
        object.__setattr__(self, "caption_ext", self.caption_ext.lstrip("."))
        _choice("missing_caption", self.missing_caption, MISSING_CAPTION_POLICIES)
        _choice("crop", self.crop, CROP_MODES)
        if self.min_size < 0:
            raise DatasetError(f"min_size={self.min_size} of {self.folder} must be >= 0.")
        _choice("caption_strategy", self.caption_strategy, CAPTION_STRATEGIES)
        object.__setattr__(self, "instance_prompt", " ".join(self.instance_prompt.split()))
        if self.caption_strategy == "instanceprompt" and not self.instance_prompt:
            raise DatasetError(f"caption_strategy='instanceprompt' for {self.folder} needs an instance_prompt; "
                               "type the caption every image of the folder should train with.")
        if self.caption_dropout is not None and not 0.0 <= self.caption_dropout < 1.0:
            raise DatasetError(f"caption_dropout={self.caption_dropout} of {self.folder} must be in [0, 1) "
                               "(or unset for the set's).")
        _choice("role", self.role, ROLES)
        if self.regularisation and not 0.0 < self.reg_ratio < 1.0:
            raise DatasetError(f"reg_ratio={self.reg_ratio} of regularisation folder {self.folder} must be "
                               "between 0 and 1 (0.5 = as many reg samples as training samples).")
        if not 0.0 <= self.loss_weight <= 100.0:
            raise DatasetError(f"loss_weight={self.loss_weight} of {self.folder} must be in [0, 100].")

    @property
    def regularisation(self) -> bool:
        return self.role == "regularisation"


@dataclass(frozen=True)
class DatasetSpec:
    """The whole training set: its folders and the options shared by all of them."""

    sources: tuple[FolderSource, ...]
    """Folders combined into one training set."""
    cache_dir: Path
    """Encodings go to `<cache_dir>/.latent_cache/`; nothing else is written."""
    trigger: str = ""
    """Trigger word: replaces `{trigger}` in captions, else is prefixed ("trigger, caption")."""
    class_word: str = ""
    """Class word for DOP: the trigger replaced by it gives the prior-preservation caption."""
    caption_dropout: float = 0.0
    """Probability that a sample trains with the empty caption."""
    shuffle_tokens: bool = False
    """Shuffle comma-separated tags of each caption (after the first `keep_tokens`)."""
    keep_tokens: int = 0
    """Leading tags kept in place when shuffling."""
    shuffle_variants: int = 8
    """Token shuffle draws from this many precomputed orders per caption (see captions.py for why)."""
    on_bad_file: str = "error"
    """Corrupt / truncated / unreadable image: "error" (refuse, naming the file) or "skip" (report it)."""
    on_small: str = "skip"
    """Image under its folder's min_size: "skip" (report it) or "error"."""
    seed: int = 0
    """Seeds what is decided when the set is built: random crop offsets and the precomputed
    token-shuffle orders. A run's data order, caption dropout and shuffle pick come from its own
    train.seed (`Dataset.batch`), as does its batch size."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if not self.sources:
            raise DatasetError("A dataset needs at least one folder.")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise DatasetError(f"caption_dropout={self.caption_dropout} must be in [0, 1).")
        if self.keep_tokens < 0:
            raise DatasetError(f"keep_tokens={self.keep_tokens} must be >= 0.")
        if self.shuffle_variants < 1:
            raise DatasetError(f"shuffle_variants={self.shuffle_variants} must be >= 1.")
        if self.class_word and not self.trigger:
            raise DatasetError("class_word is set but trigger is empty; DOP replaces the trigger, so set both.")
        _choice("on_bad_file", self.on_bad_file, FILE_POLICIES)
        _choice("on_small", self.on_small, FILE_POLICIES[::-1])

    def check_roles(self) -> None:
        """A set that is built needs training images. Not checked in __post_init__: a regularisation
        node's own spec holds only its folder until it is chained after the training folders."""
        if all(s.regularisation for s in self.sources):
            raise DatasetError("Every folder is a regularisation folder; connect the DatasetFromFolder of the "
                               "training images (role 'train') to the regularisation node's dataset input.")
        reg_share = sum(s.reg_ratio for s in self.sources if s.regularisation)
        if reg_share >= 1.0:
            raise DatasetError(f"The reg_ratio of the regularisation folders add up to {reg_share:g}; together "
                               "they must stay below 1 so that training images remain in every epoch.")

    def caption_dropout_of(self, source_index: int) -> float:
        """A folder's own caption dropout, else the set's."""
        own = self.sources[source_index].caption_dropout
        return self.caption_dropout if own is None else own

    def chained_after(self, previous: "DatasetSpec") -> "DatasetSpec":
        """This set chained after a previous DatasetFromFolder's: its folders first, then these, with
        this node's options (what a chained node builds)."""
        return replace(self, sources=previous.sources + self.sources)
