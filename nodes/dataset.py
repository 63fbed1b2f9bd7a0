"""DatasetFromFolder: an image folder becomes cached, bucketed training data, with a report before step 1."""

from comfy_api.latest import io, ui

from ..core.data import DatasetError, DatasetSpec, FolderSource
from ..core.data.spec import CAPTION_STRATEGIES, CROP_MODES, FILE_POLICIES, MISSING_CAPTION_POLICIES, ROLES
from ._comfy.encoders import build_dataset_handle, cache_root, folder_signature, resolve_folder
from .types import Dataset


def parse_resolutions(text: str) -> tuple[int, ...]:
    """"512" or "512, 768,1024" -> (512, 768, 1024); an error names the widget and the bad part."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise DatasetError(f"resolutions={text!r}: give one or more sizes in pixels separated by commas, e.g. '1024' or '512,768,1024'.")
    return tuple(int(p) for p in parts)


class DatasetFromFolder(io.ComfyNode):
    """Scans a folder of images and captions, encodes them once with the VAE and CLIP into a disk
    cache, and reports what it found. Chain several to combine folders into one training set."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DatasetFromFolder",
            display_name="Dataset from Folder (Flux LoRA Lab)",
            category="FluxLoRALab",
            description="Images + same-name caption files -> cached latents and text encodings, aspect buckets, a report.",
            inputs=[
                io.String.Input("folder", default="", tooltip="Folder with your images (png, jpg, webp, bmp, tiff) and "
                                "captions: an absolute path, or a folder inside ComfyUI's input directory."),
                io.Vae.Input("vae", tooltip="The VAE of the Flux model you train (encodes the images)."),
                io.Clip.Input("clip", tooltip="The text encoder of the Flux model you train (encodes the captions)."),
                io.String.Input("resolutions", default="1024", tooltip="Training resolution(s), comma separated "
                                "(e.g. '512,768,1024'): each image is trained at every one, in aspect buckets of equal area."),
                io.Int.Input("repeats", default=0, min=0, max=10000, tooltip="Times each image is seen per epoch; "
                             "0 = from kohya folder names ('40_maya_char' -> 40), else 1."),
                io.Boolean.Input("recursive", default=False, tooltip="Also take images from every sub-folder. kohya's "
                                 "repeat folders ('10_sks_toy/') directly inside the folder are always read."),
                io.String.Input("caption_ext", default="txt", tooltip="Extension of the caption file next to each "
                                "image (photo.png -> photo.txt)."),
                io.Combo.Input("missing_caption", options=list(MISSING_CAPTION_POLICIES), default="error",
                               tooltip="Image without caption file: refuse ('error'), train with the trigger only, "
                               "or use the folder's name ('40_maya_char' -> 'maya char')."),
                io.String.Input("trigger", default="", tooltip="Trigger word: replaces {trigger} in captions, "
                                "else is put in front of captions that lack it. Empty = none."),
                io.String.Input("class_word", default="", tooltip="Generic word the trigger stands for (e.g. "
                                "'person'): builds the no-trigger captions DOP trains against. Needs a trigger."),
                io.Float.Input("caption_dropout", default=0.0, min=0.0, max=0.99, step=0.01, tooltip="Probability "
                               "that a sample trains with an empty caption (0.05-0.1 helps styles)."),
                io.Boolean.Input("shuffle_tokens", default=False, tooltip="Shuffle the comma-separated tags of "
                                 "each caption (after the first keep_tokens)."),
                io.Int.Input("keep_tokens", default=1, min=0, max=100, tooltip="Leading tags kept in place when "
                             "shuffling (e.g. 1 keeps the trigger first)."),
                io.Combo.Input("crop", options=list(CROP_MODES), default="center", tooltip="Where to crop after "
                               "resizing to the bucket: center, a random offset fixed per image and seed, or none (the whole "
                               "image resized to the bucket, its aspect stretched by a few percent)."),
                io.Boolean.Input("no_upscale", default=False, tooltip="Never enlarge small images: they go to a "
                                 "smaller bucket of the same shape."),
                io.Boolean.Input("square_only", default=False, tooltip="Only square buckets: every image is "
                                 "cropped square."),
                io.Boolean.Input("alpha_as_mask", default=False, tooltip="Use transparency as a loss mask "
                                 "(transparent pixels do not train). Otherwise it is flattened on white."),
                io.Int.Input("min_size", default=0, min=0, max=16384, tooltip="Images whose shorter side is "
                             "below this many pixels are skipped or refused (see small_images)."),
                io.Combo.Input("small_images", options=list(FILE_POLICIES[::-1]), default="skip",
                               tooltip="Images under min_size: skip them (listed in the report) or stop with an error."),
                io.Combo.Input("bad_files", options=list(FILE_POLICIES), default="error", tooltip="Corrupt or "
                               "truncated images: stop with an error naming the file, or skip them (listed in the report)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False,
                             tooltip="Seeds what is fixed when the set is built: random crop offsets and the "
                             "token-shuffle orders. The data order and caption dropout follow TrainLoRA's seed. "
                             "Part of the dataset a run resumes on, so it never changes by itself."),
                io.Combo.Input("caption_strategy", options=list(CAPTION_STRATEGIES), default="textfile",
                               tooltip="This folder's captions (SimpleTuner's caption_strategy): the caption files "
                               "(textfile, see missing_caption), the image file names (filename, '_' as spaces), "
                               "or instance_prompt for every image (instanceprompt)."),
                io.String.Input("instance_prompt", default="", tooltip="With caption_strategy 'instanceprompt': "
                                "the caption of every image in this folder (may contain {trigger})."),
                io.Float.Input("folder_caption_dropout", default=-1.0, min=-1.0, max=0.99, step=0.01,
                               tooltip="This folder's caption dropout; -1 = the set's caption_dropout."),
                io.Combo.Input("role", options=list(ROLES), default="train", tooltip="'regularisation': kohya's "
                               "reg images / SimpleTuner's is_regularisation_data: class images (e.g. other people) "
                               "mixed into every epoch at reg_ratio with their own loss_weight; their captions "
                               "get no trigger. Chain it with a 'train' folder."),
                io.Float.Input("reg_ratio", default=0.5, min=0.01, max=0.95, step=0.01, tooltip="Regularisation "
                               "folders: the fraction of each epoch's samples drawn from this folder. 0.5 = as "
                               "many reg samples as training samples (kohya's balance)."),
                io.Float.Input("loss_weight", default=1.0, min=0.0, max=100.0, step=0.05, tooltip="Multiplies "
                               "the loss of this folder's samples (kohya's prior_loss_weight for reg folders)."),
                Dataset.Input("dataset", optional=True, tooltip="A previous DatasetFromFolder: its folders are "
                              "combined with this one (each keeps its own resolutions and repeats; the other "
                              "settings of this node apply to the whole set)."),
            ],
            outputs=[
                Dataset.Output(display_name="dataset", tooltip="The training set for TrainLoRA."),
                io.String.Output(display_name="report", tooltip="What was found: images, buckets, captions, "
                                 "rejected files, cache use and a suggested step count."),
            ],
        )

    @classmethod
    def validate_inputs(cls, folder, resolutions):
        try:
            if folder is not None:
                resolve_folder(folder)
            if resolutions is not None:
                parse_resolutions(resolutions)
        except DatasetError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        return folder_signature(folder or "")

    @classmethod
    def execute(cls, folder, vae, clip, resolutions, repeats, recursive, caption_ext, missing_caption, trigger,
                class_word, caption_dropout, shuffle_tokens, keep_tokens, crop, no_upscale, square_only,
                alpha_as_mask, min_size, small_images, bad_files, seed, caption_strategy="textfile",
                instance_prompt="", folder_caption_dropout=-1.0, role="train", reg_ratio=0.5, loss_weight=1.0,
                dataset=None) -> io.NodeOutput:
        source = FolderSource(
            folder=resolve_folder(folder), resolutions=parse_resolutions(resolutions), repeats=repeats or None,
            recursive=recursive, caption_ext=caption_ext, missing_caption=missing_caption, crop=crop,
            no_upscale=no_upscale, square_only=square_only, alpha_as_mask=alpha_as_mask, min_size=min_size,
            caption_strategy=caption_strategy, instance_prompt=instance_prompt,
            caption_dropout=None if folder_caption_dropout < 0 else folder_caption_dropout,
            role=role, reg_ratio=reg_ratio, loss_weight=loss_weight,
        )
        spec = DatasetSpec(
            sources=(source,), cache_dir=cache_root(), trigger=trigger.strip(), class_word=class_word.strip(),
            caption_dropout=caption_dropout, shuffle_tokens=shuffle_tokens, keep_tokens=keep_tokens,
            on_bad_file=bad_files, on_small=small_images, seed=seed,
        )
        handle = build_dataset_handle(spec, vae, clip, previous=dataset)
        return io.NodeOutput(handle, handle.report.text, ui=ui.PreviewText(handle.report.text))
