"""Render the template browser's thumbnails (workflows/<name>.jpg) from a finished `make demo` run.

ComfyUI's template browser (frontend 1.32 and 1.58) shows `/api/workflow_templates/<pack>/<name>.jpg`
for each custom node template and a broken placeholder when it is missing. Each thumbnail is the
workflow's title over what the demo did: the three training pictures, the tiny random model's
samples of their captions before training (the run's `baseline/` previews) and after (its last
checkpoint's). Run `make demo` first, then:

    .venv-0.33.0/bin/python scripts/render_thumbnails.py   # reads .cache/demo-base, writes workflows/*.jpg
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from nodes._demo_images import DEMO_FOLDER, DEMO_IMAGES  # noqa: E402
from scripts.workflow_descriptions import WORKFLOWS  # noqa: E402

SIZE, CELL, LABEL = 400, 88, 76
BACKGROUND, TEXT, MUTED = (31, 36, 48), (240, 240, 240), (160, 170, 190)


def demo_pictures(base: Path) -> list[list[Image.Image]]:
    """Rows of pictures (training pictures, before, after), one column per caption."""
    run = base / "output" / "fluxlab" / "demo"
    checkpoints = sorted(run.glob("checkpoint_*"))
    if not checkpoints:
        raise SystemExit(f"no finished demo run in {run}: run `make demo` first")
    rows = [[Image.open(base / "input" / DEMO_FOLDER / f"{stem}.png") for stem in DEMO_IMAGES]]
    for folder in (run / "baseline", checkpoints[-1]):
        rows.append([Image.open(path) for path in sorted(folder.glob("prompt_*.png"))][:len(DEMO_IMAGES)])
    return rows


def render(title: str, rows: list[list[Image.Image]]) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    # The top-left corner stays empty: frontend 1.58 lays a "Node graph" badge over it.
    draw.text((SIZE - 16, 12), "Flux LoRA Lab", fill=MUTED, font=ImageFont.load_default(size=15), anchor="ra")
    draw.multiline_text((16, 44), "\n".join(textwrap.wrap(title, 28)), fill=TEXT, font=ImageFont.load_default(size=23), spacing=3)
    small = ImageFont.load_default(size=14)
    top = SIZE - len(rows) * (CELL + 4) - 4
    for r, (label, row) in enumerate(zip(("pictures", "before", "after"), rows)):
        y = top + r * (CELL + 4)
        draw.text((12, y + CELL // 2 - 8), label, fill=MUTED, font=small)
        for c, picture in enumerate(row):
            image.paste(picture.convert("RGB").resize((CELL, CELL), Image.NEAREST), (LABEL + c * (CELL + 6), y))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dir", type=Path, default=REPO_ROOT / ".cache" / "demo-base")
    args = parser.parse_args()
    rows = demo_pictures(args.base_dir)
    for name in WORKFLOWS:
        path = REPO_ROOT / "workflows" / f"{name}.jpg"
        render(name, rows).save(path, quality=85, optimize=True)
        print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
