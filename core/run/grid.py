"""A labelled image grid (rows = checkpoints, columns = prompts) drawn with PIL's default font.

Layout, top to bottom: one header strip holding each column's label, then per row a strip holding
the row's label followed by that row's cells. Width is exactly `cols * cell_width` and height is
`rows * cell_height + (rows + 1) * label_height(cell_width)`, so a cell sits at a fixed, computable box.

Why the cells are placed as float arrays and only the label strips go through PIL: the cell
pixels in the grid stay the very values the sampler's VAE decode produced, so a crop of the grid
saved by ComfyUI is byte-for-byte the image a stock graph saves (a uint8 round trip through PIL
would shift values by one wherever 255 * x / 255 * 255 lands below an integer).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

LABEL_PADDING = 3  # pixels around the text in a label strip
ELLIPSIS = "..."  # ASCII: PIL's bitmap fallback font has no "…"


def font_size(cell_width: int) -> int:
    """Text grows with the cells (10 px up to 400 px wide cells, 25 px at 1024) so labels stay legible."""
    return max(10, cell_width // 40)


@lru_cache(maxsize=8)
def label_font(size: int = 10) -> ImageFont.ImageFont:
    """PIL's default font at `size` (FreeType where Pillow has it; else its fixed-size bitmap font)."""
    if features.check("freetype2"):
        return ImageFont.load_default(size=size)
    return ImageFont.load_default()


def label_height(cell_width: int) -> int:
    """Height of one label strip for cells `cell_width` wide: the font's line height plus padding."""
    left, top, right, bottom = label_font(font_size(cell_width)).getbbox("Ag|")
    return bottom + 2 * LABEL_PADDING


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes in a grid of `rows` x `cols` cells of cell_width x cell_height."""

    rows: int
    cols: int
    cell_width: int
    cell_height: int
    label_height: int

    def __post_init__(self):
        for name in ("rows", "cols", "cell_width", "cell_height"):
            if getattr(self, name) < 1:
                raise ValueError(f"a grid needs {name} >= 1, got {getattr(self, name)}")
        if self.label_height < 0:
            raise ValueError(f"label_height must be >= 0, got {self.label_height}")

    @property
    def width(self) -> int:
        return self.cols * self.cell_width

    @property
    def height(self) -> int:
        return self.rows * self.cell_height + (self.rows + 1) * self.label_height

    def column_label_box(self, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of column `col`'s label in the header strip."""
        return col * self.cell_width, 0, (col + 1) * self.cell_width, self.label_height

    def row_label_box(self, row: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the strip above row `row` holding its label."""
        top = self.label_height + row * (self.label_height + self.cell_height)
        return 0, top, self.width, top + self.label_height

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of cell (row, col)."""
        top = self.row_label_box(row)[3]
        left = col * self.cell_width
        return left, top, left + self.cell_width, top + self.cell_height


def fit_text(text: str, max_width: int, font: ImageFont.ImageFont) -> str:
    """`text` on one line, cut with an ellipsis so it fits `max_width` pixels in `font` (may become empty)."""
    text = " ".join(text.split())
    if font.getlength(text) <= max_width:
        return text
    while text and font.getlength(text + ELLIPSIS) > max_width:
        text = text[:-1]
    return text + ELLIPSIS if text else ""


def compose_grid(cells: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str], column_labels: Sequence[str]) -> np.ndarray:
    """The labelled grid as a float32 (H, W, 3) array in [0, 1] (ComfyUI's IMAGE layout, no batch).

    `cells[r][c]` are float (h, w, 3) arrays, all the same size; they are copied in unchanged.
    Label strips are white with black text.
    """
    rows, cols = len(cells), len(cells[0]) if cells else 0
    if rows == 0 or cols == 0:
        raise ValueError("a grid needs at least one row and one column of images")
    if len(row_labels) != rows or len(column_labels) != cols or any(len(r) != cols for r in cells):
        raise ValueError(f"grid of {rows} rows x {cols} columns needs {rows} row labels and {cols} column labels, "
                         f"got {len(row_labels)} and {len(column_labels)} (row lengths {[len(r) for r in cells]})")
    shape = np.shape(cells[0][0])
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"grid cells must be (height, width, 3) RGB arrays, got shape {shape}")
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            if np.shape(cell) != shape:
                raise ValueError(f"grid cell ({r}, {c}) has shape {np.shape(cell)}, the others {shape}")
    layout = GridLayout(rows, cols, cell_width=shape[1], cell_height=shape[0], label_height=label_height(shape[1]))
    canvas = np.asarray(_label_strips(layout, row_labels, column_labels), dtype=np.float32) / 255.0
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            left, top, right, bottom = layout.cell_box(r, c)
            canvas[top:bottom, left:right] = cell
    return canvas


def _label_strips(layout: GridLayout, row_labels: Sequence[str], column_labels: Sequence[str]) -> Image.Image:
    """A white canvas of the grid's size with every label drawn (cells are pasted over it later)."""
    image = Image.new("RGB", (layout.width, layout.height), "white")
    draw = ImageDraw.Draw(image)
    font = label_font(font_size(layout.cell_width))
    boxes = [(layout.column_label_box(c), text) for c, text in enumerate(column_labels)]
    boxes += [(layout.row_label_box(r), text) for r, text in enumerate(row_labels)]
    for (left, top, right, _), text in boxes:
        fitted = fit_text(str(text), right - left - 2 * LABEL_PADDING, font)
        draw.text((left + LABEL_PADDING, top + LABEL_PADDING), fitted, fill="black", font=font)
    return image


def wrap_text(text: str, max_width: int, font: ImageFont.ImageFont) -> list[str]:
    """`text` broken at spaces into lines that fit `max_width` pixels (a single too-long word is cut)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= max_width:
            lines[-1] = candidate
        else:
            lines.append(fit_text(word, max_width, font))
    return lines


def note_strip(text: str, width: int, cell_width: int) -> np.ndarray:
    """A pale yellow strip `width` px wide holding `text`, wrapped, in the grid's label font, as a
    float32 (h, width, 3) array to stack under a grid (CompareCheckpoints' "training - N of M")."""
    font = label_font(font_size(cell_width))
    lines = wrap_text(text, width - 2 * LABEL_PADDING, font) or [""]
    line_height = label_height(cell_width)
    image = Image.new("RGB", (width, line_height * len(lines) + 2 * LABEL_PADDING), (255, 244, 200))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((LABEL_PADDING, LABEL_PADDING + i * line_height), line, fill="black", font=font)
    return np.asarray(image, dtype=np.float32) / 255.0
