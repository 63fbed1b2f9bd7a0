"""Write the bundled example workflows (workflows/*.json, ComfyUI's UI format) from short descriptions.

Why generated: widget values in the UI format are positional, so a hand-written file silently shifts
when a node gains a widget. Here each node is described by widget *name*; the running server's
`/object_info` (the real node schemas) puts them in order and fills every unnamed widget with its
default. Run it after changing a node's inputs and commit the result:

    .venv-0.33.0/bin/python scripts/build_workflows.py        # starts a headless server for the schemas
The workflow test (tests/e2e/test_workflows.py) checks the committed files against the live server.
"""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from scripts.workflow_descriptions import WORKFLOWS  # noqa: E402
from scripts.workflow_prompt import FRONTEND_ONLY, _input_specs, has_seed_control, is_widget  # noqa: E402

NODE_WIDTH = 320
NOTE_SIZE = [420, 560]
COLUMN_GAP, ROW_GAP = 50, 40
# The frontend's measures (LiteGraph): the title bar is drawn above a node's `pos`, each slot row
# and each one-line widget take a fixed height, a multi-line text box takes about three rows.
TITLE_HEIGHT, SLOT_HEIGHT, WIDGET_HEIGHT, TEXT_BOX_HEIGHT = 30, 20, 24, 80
# LiteGraph never draws a node narrower than its title: computeSize() gives the title's text width
# + 40 px, and the frontend grows a saved size to that on load. Measured in the browser tests'
# Chromium (14 px sans): "Advanced LoRA training settings (Flux LoRA Lab)", 47 characters, is 341 px
# on frontend 1.32.9 and 325 px on 1.58.1, so at 320 px that node opened 381 / 364 px wide and
# covered the next column on 1.32. 8 px a character (7.3 measured) leaves room for a wider font.
TITLE_CHAR_WIDTH, TITLE_PADDING = 8, 40
# Widgets the pack's own front end adds to a node (web/fluxlab.js: the A/B view's getMinHeight).
FRONTEND_WIDGETS_HEIGHT = {"CompareCheckpoints": 520}
# Where the graph's top-left corner lands on screen when the workflow opens (px): right of the
# side bar, below the menu bar, tabs and workflow name box (frontend 1.32 stacks a banner, tabs and
# that box over the top 130 px). The scale fits the graph into a 1400 x 900 window but stays at
# least MIN_SCALE: below 0.6 the canvas draws nodes without their text.
SCREEN_MARGIN = (70, 150)
MIN_SCALE = 0.66
SCREEN_SIZE = (1400, 900)


def _default(spec: list):
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else ""
    if kind == "COMBO":
        return (options.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def _widget_height(spec: list) -> int:
    options = (spec[1] if len(spec) > 1 else {}) or {}
    return TEXT_BOX_HEIGHT if spec[0] == "STRING" and options.get("multiline") else WIDGET_HEIGHT


def _node_width(title: str) -> int:
    return max(NODE_WIDTH, len(title) * TITLE_CHAR_WIDTH + TITLE_PADDING)


def _preset_values(info: dict, preset: str | None) -> dict:
    """The widget values a node's preset fills in (TrainLoRA's table, as the browser applies it when the preset
    is chosen); a description names only what differs from them."""
    spec = info.get("input", {}).get("required", {}).get("preset")
    table = spec[1].get("fluxlab_preset_values", {}) if spec and len(spec) > 1 else {}
    return dict(table.get(preset, {}))


class Graph:
    """Nodes and links of one workflow. `column` / `row` place a node: columns left to right, rows
    stacked top to bottom inside a column with a gap, so no two nodes overlap (tested)."""

    def __init__(self, object_info: dict):
        self.info = object_info
        self.nodes: list[dict] = []
        self.links: list[list] = []
        self.places: dict[int, tuple[int, int]] = {}  # node id -> (column, row)

    def _append(self, node: dict, column: int, row: int) -> dict:
        self.nodes.append(node)
        self.places[node["id"]] = (column, row)
        return node

    def note(self, text: str, column: int = 0, row: int = 0, title: str = "Note") -> dict:
        node = {"id": len(self.nodes) + 1, "type": "MarkdownNote", "pos": [0, 0], "size": list(NOTE_SIZE),
                "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {},
                "widgets_values": [text], "title": title, "color": "#432", "bgcolor": "#653"}
        return self._append(node, column, row)

    def add(self, kind: str, column: int, row: int = 0, title: str | None = None, **values) -> dict:
        if kind not in self.info:
            raise KeyError(f"node type {kind!r} is not registered in the server")
        info = self.info[kind]
        values = {**_preset_values(info, values.get("preset")), **values}
        widgets, inputs = [], []
        names, height = set(), 0
        for name, spec in _input_specs(info):
            names.add(name)
            if is_widget(spec):
                widgets.append(values.get(name, _default(spec)))
                height += _widget_height(spec)
                if has_seed_control(name, spec):
                    widgets.append("fixed")  # bundled workflows reproduce: never "randomize"
                    height += WIDGET_HEIGHT
            else:
                inputs.append({"name": name, "type": spec[0], "link": None})
        unknown = set(values) - names
        if unknown:
            raise KeyError(f"{kind} has no inputs {sorted(unknown)}; it has {sorted(names)}")
        outputs = [{"name": name, "type": kind_, "links": [], "slot_index": i}
                   for i, (kind_, name) in enumerate(zip(info["output"], info["output_name"]))]
        slots = max(len(inputs), len(outputs))
        height += FRONTEND_WIDGETS_HEIGHT.get(kind, 0)
        width = _node_width(title or info.get("display_name") or kind)
        node = {"id": len(self.nodes) + 1, "type": kind, "pos": [0, 0],
                "size": [width, slots * SLOT_HEIGHT + height + 16], "flags": {},
                "order": len(self.nodes), "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind}, "widgets_values": widgets}
        if title:
            node["title"] = title
        return self._append(node, column, row)

    def link(self, source: dict, output: str, target: dict, input_name: str) -> None:
        """`input_name` is an input socket, or a widget (its value then comes from the link)."""
        out_slot = next(i for i, o in enumerate(source["outputs"]) if o["name"] == output)
        kind = source["outputs"][out_slot]["type"]
        in_slot = next((i for i, s in enumerate(target["inputs"]) if s["name"] == input_name), None)
        if in_slot is None:  # a widget turned into an input, as the frontend saves it
            target["inputs"].append({"name": input_name, "type": kind, "widget": {"name": input_name}, "link": None})
            in_slot = len(target["inputs"]) - 1
        link_id = len(self.links) + 1
        self.links.append([link_id, source["id"], out_slot, target["id"], in_slot, kind])
        source["outputs"][out_slot]["links"].append(link_id)
        target["inputs"][in_slot]["link"] = link_id

    def layout(self) -> dict:
        """Place every node (columns of the widest node's width, rows stacked below one another,
        title bars included) and return the view (`extra.ds`) that frames the graph on open."""
        columns = sorted({column for column, _ in self.places.values()})
        by_id = {node["id"]: node for node in self.nodes}
        x, bottom = 0, 0
        for column in columns:
            members = sorted((row, node_id) for node_id, (c, row) in self.places.items() if c == column)
            y = TITLE_HEIGHT
            for _, node_id in members:
                node = by_id[node_id]
                node["pos"] = [x, y]
                bottom = max(bottom, y + node["size"][1])
                y += node["size"][1] + TITLE_HEIGHT + ROW_GAP
            x += max(by_id[node_id]["size"][0] for _, node_id in members) + COLUMN_GAP
        fit = min((SCREEN_SIZE[0] - 2 * SCREEN_MARGIN[0]) / (x - COLUMN_GAP), (SCREEN_SIZE[1] - SCREEN_MARGIN[1] - 20) / bottom)
        scale = round(max(MIN_SCALE, min(1.0, fit)), 2)
        return {"scale": scale, "offset": [round(SCREEN_MARGIN[0] / scale), round(SCREEN_MARGIN[1] / scale)]}

    def to_json(self) -> dict:
        view = self.layout()
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": view}, "version": 0.4}


def fetch_object_info() -> dict:
    from scripts.comfy_server import ComfyServer

    with ComfyServer(Path(tempfile.mkdtemp(prefix="fluxlab-schemas-"))) as server:
        with urllib.request.urlopen(server.url + "/object_info", timeout=60) as response:
            return json.load(response)


def main() -> None:
    object_info = fetch_object_info()
    out_dir = REPO_ROOT / "workflows"
    out_dir.mkdir(exist_ok=True)
    for name, build in WORKFLOWS.items():
        graph = Graph(object_info)
        build(graph)
        assert all(n["type"] in object_info or n["type"] in FRONTEND_ONLY for n in graph.nodes)
        (out_dir / f"{name}.json").write_text(json.dumps(graph.to_json(), indent=1) + "\n")
        print(f"wrote workflows/{name}.json ({len(graph.nodes)} nodes)")


if __name__ == "__main__":
    main()
