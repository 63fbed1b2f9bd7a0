"""The demo's training pictures, drawn by the pack itself so the demo template needs nothing else.

Three 64 px pictures as different as a tiny model can tell apart, in blocks of 16 px (the colour VAE
of the tiny models averages 8 x 8 pixels into one latent pixel, so finer detail would vanish): a solid
red square, blue and white stripes, a yellow and black checkerboard. Each has a same-name caption
with the trigger `ohwx`, the way a user's folder would. Deterministic: the same bytes every time.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

DEMO_FOLDER = "fluxlab_demo"  # inside ComfyUI's input directory
SIZE = 64
BLOCK = 16
RED, BLUE, WHITE, YELLOW, BLACK = (220, 30, 30), (30, 60, 220), (240, 240, 240), (240, 210, 30), (20, 20, 20)


def _solid(x: int, y: int) -> tuple:
    return RED


def _stripes(x: int, y: int) -> tuple:
    return BLUE if (x // BLOCK) % 2 == 0 else WHITE


def _checker(x: int, y: int) -> tuple:
    return YELLOW if (x // BLOCK + y // BLOCK) % 2 == 0 else BLACK


DEMO_IMAGES = {  # file stem -> (caption, colour at pixel x, y)
    "red": ("ohwx, a solid red square", _solid),
    "stripes": ("ohwx, blue and white stripes", _stripes),
    "checker": ("ohwx, a yellow and black checkerboard", _checker),
}


def demo_captions() -> list[str]:
    """The captions in file order (the demo's compare prompts are the same texts)."""
    return [caption for caption, _ in DEMO_IMAGES.values()]


def _png(paint) -> bytes:
    image = Image.new("RGB", (SIZE, SIZE))
    image.putdata([paint(x, y) for y in range(SIZE) for x in range(SIZE)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_demo_images(folder: Path) -> Path:
    """Write the pictures and captions into `folder` (created). Files that already hold the right
    bytes are left alone, so their modification times (which DatasetFromFolder watches) stay."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (caption, paint) in DEMO_IMAGES.items():
        for path, data in ((folder / f"{stem}.png", _png(paint)), (folder / f"{stem}.txt", f"{caption}\n".encode())):
            if not path.is_file() or path.read_bytes() != data:
                path.write_bytes(data)
    return folder
