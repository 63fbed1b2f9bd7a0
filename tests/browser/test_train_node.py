"""TrainLoRA as a user meets it in the browser (web/train_settings.js, web/node_text.js): a fresh node is short and
shows real values, choosing a preset fills them (and they stay editable), alpha follows rank while it equals it,
workflows saved with the first layout (the bundled workflows as they were, tests/fixtures/old_workflows/) load with
their values where they belong, and after a run the node shows its settings and memory plan, DatasetFromFolder its
report. Expected values are written out here, as the README documents the presets."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.e2e.test_training import make_dataset
from tests.harness.graphs import training_graph

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

OLD_WORKFLOWS = Path(__file__).resolve().parent.parent / "fixtures" / "old_workflows"
# Workflows as later stops shipped them (the bundled demo of stop 18: TrainLoRAAdvanced before the
# text-encoder settings, 36 widgets).
SHIPPED_WORKFLOWS = OLD_WORKFLOWS.parent / "shipped_workflows"
TRAIN_WIDGETS = 22  # 21 values + preview_prompts' text: preset .. on_existing_run (nodes/train.py)
MAX_HEIGHT = 800  # px at zoom 1; the first layout's TrainLoRA was 1,334 px tall

VALUES = """(type) => {
    const node = window.app.graph.nodes.find((n) => n.type === type);
    return node && Object.fromEntries(node.widgets.filter((w) => w.serialize !== false).map((w) => [w.name, w.value]));
}"""
ADD_TRAIN_NODE = """() => {
    const node = globalThis.LiteGraph.createNode("TrainLoRA");
    window.app.graph.add(node);
    node.pos = [120, 100];
    window.app.canvas.ds.offset = [0, 0];
    window.app.canvas.ds.scale = 1;
    const advanced = globalThis.LiteGraph.createNode("TrainLoRAAdvanced");
    window.app.graph.add(advanced);
    advanced.pos = [560, 100];
    window.app.graph.setDirtyCanvas(true, true);
    const count = (n) => n.widgets.filter((w) => w.serialize !== false).length;
    return { widgets: count(node), height: node.size[1], advanced_widgets: count(advanced), advanced_height: advanced.size[1] };
}"""
# A user's edit: the widget's value, then its callback (what the canvas does on a click or a typed value).
EDIT = """([name, value]) => {
    const node = window.app.graph.nodes.find((n) => n.type === "TrainLoRA");
    const widget = node.widgets.find((w) => w.name === name);
    widget.value = value;
    widget.callback?.(value, window.app.canvas, node);
}"""
LOAD = "async (workflow) => { await window.app.loadGraphData(workflow); }"


def old_workflow(name: str) -> dict:
    return json.loads((OLD_WORKFLOWS / f"{name}.json").read_text())


def test_a_fresh_trainlora_is_short_shows_real_values_and_a_preset_fills_them(open_ui, artifacts_dir):
    ui = open_ui()
    ui.evaluate("() => window.app.graph.clear()")
    shape = ui.evaluate(ADD_TRAIN_NODE)
    (artifacts_dir / "21_trainlora_fresh.json").write_text(json.dumps(shape))  # the measured widget count and height
    assert shape["widgets"] == TRAIN_WIDGETS and shape["height"] < MAX_HEIGHT, shape
    fresh = ui.evaluate(VALUES, "TrainLoRA")
    assert {k: fresh[k] for k in ("preset", "train_steps", "lora_rank", "lora_alpha", "optim_learning_rate",
                                  "flow_timestep_sampling", "dop_enabled")} == \
        {"preset": "concept", "train_steps": 0, "lora_rank": 32, "lora_alpha": 32, "optim_learning_rate": 0.0001,
         "flow_timestep_sampling": "balanced", "dop_enabled": False}
    assert not [k for k, v in fresh.items() if v in (-1, "preset")], fresh
    assert ui.evaluate("() => window.app.graph.nodes.find((n) => n.type === 'TrainLoRA').widgets"
                       ".find((w) => w.name === 'train_steps').label") == "train_steps (0 = preset's rule)"
    ui.shot("21_trainlora_fresh")

    ui.evaluate(EDIT, ["preset", "style"])
    style = ui.evaluate(VALUES, "TrainLoRA")
    assert {k: style[k] for k in ("lora_rank", "lora_alpha", "optim_learning_rate", "flow_timestep_sampling",
                                  "dop_enabled")} == {"lora_rank": 64, "lora_alpha": 64, "optim_learning_rate": 0.00015,
                                                      "flow_timestep_sampling": "style", "dop_enabled": False}
    ui.shot("22_trainlora_style_preset")
    ui.evaluate(EDIT, ["lora_rank", 16])  # alpha equalled the rank: it follows
    ui.evaluate(EDIT, ["optim_learning_rate", 0.0003])  # and the filled values stay editable
    edited = ui.evaluate(VALUES, "TrainLoRA")
    assert (edited["lora_rank"], edited["lora_alpha"], edited["optim_learning_rate"]) == (16, 16, 0.0003), edited
    ui.evaluate(EDIT, ["lora_alpha", 8])
    ui.evaluate(EDIT, ["lora_rank", 32])  # an alpha set apart from the rank stays
    assert ui.evaluate(VALUES, "TrainLoRA")["lora_alpha"] == 8
    ui.evaluate(EDIT, ["preset", "character"])
    character = ui.evaluate(VALUES, "TrainLoRA")
    assert (character["dop_enabled"], character["flow_timestep_sampling"], character["lora_rank"]) == (True, "content", 32)


@pytest.mark.parametrize("name, train, dataset", [
    ("fluxlab_demo_tiny_cpu",
     {"preset": "character", "run_name": "demo", "train_steps": 40, "lora_rank": 8, "lora_alpha": 8,
      "optim_learning_rate": 0.001, "flow_timestep_sampling": "content", "dop_enabled": True, "run_save_every": 10,
      "run_sample_every": 10, "preview_width": 64, "preview_steps": 4, "on_existing_run": "resume"},
     {"folder": "fluxlab_demo", "resolutions": "64", "trigger": "ohwx", "class_word": "toy", "seed": 0}),
    ("flux2_subject_lora",
     {"preset": "character", "mode": "background", "train_steps": 250, "lora_rank": 32, "lora_alpha": 32,
      "lora_targets": "attention", "flow_timestep_sampling": "balanced", "dop_enabled": True, "dop_every_n_steps": 2,
      "run_save_every": 125},
     {"folder": "cat_toy", "trigger": "sks", "class_word": "cat"}),
])
def test_a_workflow_of_the_first_layout_loads_with_its_values_migrated(open_ui, name, train, dataset):
    ui = open_ui()
    ui.evaluate(LOAD, old_workflow(name))
    loaded = ui.evaluate(VALUES, "TrainLoRA")
    assert {k: loaded[k] for k in train} == train, loaded
    data = ui.evaluate(VALUES, "DatasetFromFolder")
    assert {k: data[k] for k in dataset} == dataset and "preset" not in data, data
    assert ui.evaluate("() => window.app.graph.nodes.find((n) => n.type === 'TrainLoRA').size[1]") < MAX_HEIGHT
    assert not ui.evaluate("() => window.app.graph.nodes.some((n) => n.type === 'TrainLoRAAdvanced')"), \
        "nothing advanced was changed in it"
    saved = ui.evaluate("() => window.app.graph.serialize().nodes.find((n) => n.type === 'TrainLoRA').widgets_values")
    assert len(saved) == TRAIN_WIDGETS, "saved again, it is the current layout"
    ui.shot(f"23_migrated_{name}")


def test_changed_advanced_settings_of_the_first_layout_move_to_a_connected_advanced_node(open_ui):
    workflow = old_workflow("fluxlab_demo_tiny_cpu")
    node = next(n for n in workflow["nodes"] if n["type"] == "TrainLoRA")
    old_names = [name for name, _ in json.loads((OLD_WORKFLOWS.parent / "old_trainlora_widgets.json").read_text())]
    changed = {"optim_beta2": 0.99, "flow_shift": 2.0, "train_ema": "off", "preview_guidance": 5.0}
    values = copy.deepcopy(node["widgets_values"])
    for key, value in changed.items():
        values[old_names.index(key)] = value
    node["widgets_values"] = values
    ui = open_ui()
    ui.evaluate(LOAD, workflow)
    ui.wait_for("() => window.app.graph.nodes.some((n) => n.type === 'TrainLoRAAdvanced')")
    advanced = ui.evaluate(VALUES, "TrainLoRAAdvanced")
    assert {k: advanced[k] for k in changed} == {**changed, "train_ema": False}, advanced
    assert (advanced["optim_beta1"], advanced["train_ema_decay"]) == (0.9, 0.999), "the rest shows the presets' values"
    link = ui.evaluate("""() => {
        const train = window.app.graph.nodes.find((n) => n.type === 'TrainLoRA');
        const input = train.inputs.find((i) => i.name === 'advanced');
        const link = window.app.graph.links[input.link] ?? window.app.graph.links.get?.(input.link);
        return link && window.app.graph.getNodeById(link.origin_id).type;
    }""")
    assert link == "TrainLoRAAdvanced"
    assert "Migrated an old TrainLoRA" in ui.wait_toast("Migrated an old TrainLoRA")
    ui.shot("24_migrated_with_advanced_node")


def test_an_advanced_node_saved_before_a_widget_was_added_keeps_its_values_by_name(open_ui):
    """The frontend restores widgets by position: without web/train_settings.js' SHIPPED_LAYOUTS the
    stop-18 demo's values would land one to three slots off (its 'lora' network in lora_train_text_encoder)."""
    workflow = json.loads((SHIPPED_WORKFLOWS / "demo_tiny_cpu_stop18.json").read_text())
    node = next(n for n in workflow["nodes"] if n["type"] == "TrainLoRAAdvanced")
    values = node["widgets_values"]
    assert len(values) == 36
    # Values a user changed in the old layout, at the positions that layout saved them.
    values[11], values[16], values[30], values[35] = 8, 0.99, "bf16", "768x1024"
    ui = open_ui()
    ui.evaluate(LOAD, workflow)
    loaded = ui.evaluate(VALUES, "TrainLoRAAdvanced")
    assert {k: loaded[k] for k in ("lora_network", "lora_lokr_factor", "optim_beta2", "run_save_dtype",
                                   "preview_more_sizes", "train_ema_decay", "optim_lr_scheduler")} == {
        "lora_network": "lora", "lora_lokr_factor": 8, "optim_beta2": 0.99, "run_save_dtype": "bf16",
        "preview_more_sizes": "768x1024", "train_ema_decay": 0.999, "optim_lr_scheduler": "cosine"}, loaded
    assert (loaded["lora_train_text_encoder"], loaded["lora_train_t5"]) == (False, False), "the new settings' defaults"
    assert loaded["lora_text_encoder_lr"] == 5e-5, loaded
    saved = ui.evaluate("() => window.app.graph.serialize().nodes.find((n) => n.type === 'TrainLoRAAdvanced').widgets_values")
    assert len(saved) == len(loaded), "saved again, it is the current layout"


def test_after_a_run_the_nodes_show_the_settings_memory_plan_and_dataset_report(open_ui, browser_server, browser_client):
    folder = make_dataset(browser_server, "browser_node_texts", count=3)
    graph = training_graph(browser_client, "browser_node_texts", steps=2, dataset=folder, run_save_every=0)
    numbered = {str(i): node for i, node in enumerate(graph.values(), start=1)}
    ids = {name: str(i) for i, name in enumerate(graph, start=1)}
    for node in numbered.values():
        node["inputs"] = {k: [ids[v[0]], v[1]] if isinstance(v, list) and len(v) == 2 and v[0] in ids else v
                          for k, v in node["inputs"].items()}
    ui = open_ui()
    ui.evaluate("async (graph) => { await window.app.loadApiJson(graph, 'texts.json'); await window.app.queuePrompt(0, 1); }",
                numbered)
    texts = ui.page.locator("[data-testid=fluxlab-node-text]")
    ui.wait_for("() => document.querySelectorAll('[data-testid=fluxlab-node-text]').length === 2", timeout_ms=180_000)
    shown = "\n".join(texts.all_inner_texts())
    for words in ("Run 'browser_node_texts', preset custom", "LoRA rank 4, alpha 4", "Memory plan for these settings",
                  "Dataset: 3 images", "Suggested steps: character 75, concept 300, style 300"):
        assert words in shown, shown
    ui.evaluate("() => { const n = window.app.graph.nodes.find((n) => n.type === 'TrainLoRA');"
                " window.app.canvas.ds.offset = [-n.pos[0] + 160, -n.pos[1] + 120]; window.app.canvas.ds.scale = 1;"
                " window.app.graph.setDirtyCanvas(true, true); }")
    ui.shot("25_trainlora_after_a_run")
    saved = ui.evaluate("() => JSON.stringify(window.app.graph.serialize())")
    assert "Memory plan" not in saved, "the text is display-only"
