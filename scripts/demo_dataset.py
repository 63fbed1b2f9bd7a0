"""A small captioned image set for the demo and the browser tests (generated, so nothing is shipped).

Eight 64-96 px pictures of a coloured "toy" shape on plain backgrounds, each with a `.txt` caption
that mentions the trigger `ohwx` and the class word `toy`, the way a user's character folder would.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

COLORS = [("red", (200, 40, 40)), ("blue", (40, 80, 200)), ("green", (40, 160, 70)), ("yellow", (220, 200, 40))]
BACKGROUNDS = [("white", (245, 245, 245)), ("grey", (120, 120, 120))]


def write_demo_dataset(folder: Path) -> Path:
    """Write the images and captions into `folder` (created; existing files are replaced)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    for color_name, color in COLORS:
        for background_name, background in BACKGROUNDS:
            size = (96, 64) if index % 2 else (64, 64)
            image = Image.new("RGB", size, background)
            draw = ImageDraw.Draw(image)
            w, h = size
            draw.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=color)
            draw.rectangle((w // 2 - 4, h // 8, w // 2 + 4, h // 4), fill=color)
            image.save(folder / f"toy_{index:02d}.png")
            (folder / f"toy_{index:02d}.txt").write_text(f"ohwx toy, a {color_name} toy on a {background_name} background\n")
            index += 1
    return folder
