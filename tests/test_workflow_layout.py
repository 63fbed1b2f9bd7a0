"""The bundled workflows open tidy: no node covers another (title bars included, with the sizes the
files record; tests/browser/test_templates.py checks both frontends draw exactly those), the note
is in view below the menu bar, every file has a thumbnail beside it, and the template browser's
words find them (it searches the file names)."""

import itertools
import json

import pytest
from PIL import Image

from scripts.build_workflows import TITLE_HEIGHT
from scripts.comfy_server import REPO_ROOT

WORKFLOW_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
WINDOW = (1400, 900)  # the browser tests' window
MENU_BAR, SIDE_BAR = 130, 48  # px the frontend's chrome covers at the top and the left (1.32's is the taller)


def _rect(node) -> tuple[float, float, float, float]:
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_HEIGHT, x + w, y + h  # the title bar is drawn above `pos`


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_there_are_bundled_workflows():
    assert len(WORKFLOW_FILES) >= 5


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_no_node_covers_another(path):
    nodes = json.loads(path.read_text())["nodes"]
    covered = [(a["type"], b["type"]) for a, b in itertools.combinations(nodes, 2) if _overlap(_rect(a), _rect(b))]
    assert not covered, f"{path.name}: overlapping nodes {covered}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_the_note_opens_in_view_below_the_menu_bar(path):
    workflow = json.loads(path.read_text())
    view = workflow["extra"]["ds"]
    notes = [n for n in workflow["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes, f"{path.name} has no note"
    for note in notes:
        left, top, right, bottom = ((v + view["offset"][i % 2]) * view["scale"] for i, v in enumerate(_rect(note)))
        assert SIDE_BAR <= left and right <= WINDOW[0] and MENU_BAR <= top and bottom <= WINDOW[1], (path.name, left, top, right, bottom)
    lefts = [(n["pos"][0] + view["offset"][0]) * view["scale"] for n in workflow["nodes"]]
    assert max(lefts) < WINDOW[0] - 100, f"{path.name}: a column starts off screen"
    assert view["scale"] >= 0.6, "below 0.6 the canvas draws nodes without their text"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.stem)
def test_every_workflow_has_a_small_thumbnail(path):
    """The template browser asks for `<name>.jpg` beside each custom node template (1.32 and 1.58)."""
    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.is_file(), f"no {thumbnail.name}: run scripts/render_thumbnails.py"
    assert thumbnail.stat().st_size < 60_000
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and min(image.size) >= 256


@pytest.mark.parametrize("word", ["train", "lora", "flux"])
def test_the_words_people_search_for_find_the_workflows(word):
    found = [p.stem for p in WORKFLOW_FILES if word in p.stem.lower()]
    assert len(found) >= 4, (word, found)
