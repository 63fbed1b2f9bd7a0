"""Aspect buckets: sizes of about equal area per resolution, the nearest one per image, the crop.

A bucket is (width, height), both multiples of 16 px (Flux: VAE /8, then 2x2 patches), with
w*h close to res*res, aspect ratios up to 4:1 either way, the same set for portrait and landscape.
An image goes to the bucket whose aspect ratio is nearest in log space (so 2:1 and 1:2 are equally
far from 1:1), is resized to cover it and cropped. With crop "none" it is resized to the bucket
itself instead: nothing is cut off, and the aspect ratio is stretched by at most half the gap
between neighbouring bucket shapes (a few percent near square, more toward 4:1); an image beyond
4:1 is squeezed to 4:1. For images whose edges matter (text, full-body framing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..seeding import generator
from .spec import BUCKET_STEP

MAX_ASPECT = 4.0


@dataclass(frozen=True)
class Placement:
    """How one image becomes one training sample at one resolution."""

    resolution: int
    bucket: tuple[int, int]
    """(width, height) of the sample in pixels."""
    resized: tuple[int, int]
    """(width, height) the whole image is resized to before cropping (covers the bucket)."""
    crop: tuple[int, int]
    """(left, top) of the bucket-sized crop inside the resized image."""


def bucket_sizes(resolution: int, square_only: bool = False) -> tuple[tuple[int, int], ...]:
    """Portrait sizes stepping the width down from res by res/16 (at least 16 px), heights rounded
    to 16 px for equal area, mirrored for landscape: 17 shapes at 512-1024 px, enough choice
    without splitting a small dataset into many one-image buckets."""
    if square_only:
        return ((resolution, resolution),)
    stride = max(BUCKET_STEP, resolution // 16 // BUCKET_STEP * BUCKET_STEP)
    area = resolution * resolution
    sizes = set()
    width = resolution
    while width * width * MAX_ASPECT >= area:
        height = max(BUCKET_STEP, round(area / width / BUCKET_STEP) * BUCKET_STEP)
        sizes.update({(width, height), (height, width)})
        width -= stride
    return tuple(sorted(sizes))


def nearest_bucket(width: int, height: int, sizes: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    target = math.log(width / height)
    return min(sizes, key=lambda s: (abs(math.log(s[0] / s[1]) - target), -s[0] * s[1]))


def _shrink_to_fit(bucket: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """no_upscale: the same-shape bucket scaled down until the image covers it (multiples of 16)."""
    factor = min(1.0, width / bucket[0], height / bucket[1])
    if factor >= 1.0:
        return bucket
    return (
        max(BUCKET_STEP, int(bucket[0] * factor) // BUCKET_STEP * BUCKET_STEP),
        max(BUCKET_STEP, int(bucket[1] * factor) // BUCKET_STEP * BUCKET_STEP),
    )


def place(
    width: int,
    height: int,
    resolution: int,
    *,
    square_only: bool,
    no_upscale: bool,
    crop: str,
    seed: int,
    image_key: str,
) -> Placement:
    """Bucket, cover size and crop of an image of `width` x `height` (after EXIF orientation).

    The random crop offset depends only on (seed, image content, resolution), so it is stable
    across runs and part of the latent cache key. Crop "none": `resized` is the bucket, no crop.
    """
    bucket = nearest_bucket(width, height, bucket_sizes(resolution, square_only))
    if no_upscale:
        bucket = _shrink_to_fit(bucket, width, height)
    if crop == "none":
        return Placement(resolution, bucket, bucket, (0, 0))
    scale = max(bucket[0] / width, bucket[1] / height)
    resized = (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale)))
    spare_x, spare_y = resized[0] - bucket[0], resized[1] - bucket[1]
    if crop == "random":
        gen = generator(seed, "crop", f"{image_key}:{resolution}")
        rand = torch.rand(2, generator=gen).tolist()
        left, top = int(rand[0] * (spare_x + 1)), int(rand[1] * (spare_y + 1))
    else:
        left, top = spare_x // 2, spare_y // 2
    return Placement(resolution, bucket, resized, (min(left, spare_x), min(top, spare_y)))
