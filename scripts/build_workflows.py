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


def _default(spec: list):
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else ""
    if kind == "COMBO":
        return (options.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def _preset_values(info: dict, preset: str | None) -> dict:
    """The widget values a node's preset fills in (TrainLoRA's table, as the browser applies it when the preset
    is chosen); a description names only what differs from them."""
    spec = info.get("input", {}).get("required", {}).get("preset")
    table = spec[1].get("fluxlab_preset_values", {}) if spec and len(spec) > 1 else {}
    return dict(table.get(preset, {}))


class Graph:
    """Nodes and links of one workflow, laid out left to right in columns."""

    def __init__(self, object_info: dict):
        self.info = object_info
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def note(self, text: str, column: int, row: int = 0, title: str = "Note") -> dict:
        node = {"id": len(self.nodes) + 1, "type": "MarkdownNote", "pos": [column * 360, row * 420],
                "size": [NODE_WIDTH, 380], "flags": {}, "order": len(self.nodes), "mode": 0,
                "inputs": [], "outputs": [], "properties": {}, "widgets_values": [text], "title": title,
                "color": "#432", "bgcolor": "#653"}
        self.nodes.append(node)
        return node

    def add(self, kind: str, column: int, row: int = 0, title: str | None = None, **values) -> dict:
        if kind not in self.info:
            raise KeyError(f"node type {kind!r} is not registered in the server")
        info = self.info[kind]
        values = {**_preset_values(info, values.get("preset")), **values}
        widgets, inputs = [], []
        names = set()
        for name, spec in _input_specs(info):
            names.add(name)
            if is_widget(spec):
                widgets.append(values.get(name, _default(spec)))
                if has_seed_control(name, spec):
                    widgets.append("fixed")  # bundled workflows reproduce: never "randomize"
            else:
                inputs.append({"name": name, "type": spec[0], "link": None})
        unknown = set(values) - names
        if unknown:
            raise KeyError(f"{kind} has no inputs {sorted(unknown)}; it has {sorted(names)}")
        outputs = [{"name": name, "type": kind_, "links": [], "slot_index": i}
                   for i, (kind_, name) in enumerate(zip(info["output"], info["output_name"]))]
        node = {"id": len(self.nodes) + 1, "type": kind, "pos": [column * 360, row * 300],
                "size": [NODE_WIDTH, 60 + 26 * (len(widgets) + len(inputs))], "flags": {},
                "order": len(self.nodes), "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind}, "widgets_values": widgets}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def link(self, source: dict, output: str, target: dict, input_name: str) -> None:
        out_slot = next(i for i, o in enumerate(source["outputs"]) if o["name"] == output)
        in_slot = next(i for i, s in enumerate(target["inputs"]) if s["name"] == input_name)
        link_id = len(self.links) + 1
        kind = source["outputs"][out_slot]["type"]
        self.links.append([link_id, source["id"], out_slot, target["id"], in_slot, kind])
        source["outputs"][out_slot]["links"].append(link_id)
        target["inputs"][in_slot]["link"] = link_id

    def to_json(self) -> dict:
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}},
                "version": 0.4}


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
