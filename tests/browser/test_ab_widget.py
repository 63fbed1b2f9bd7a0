"""The A/B widget on CompareCheckpoints in a real browser: a tiny run trained over HTTP, a compare
graph loaded into the canvas and queued from the page, then flip (button, keyboard), slide, "use
this one" (the LoRA lands in the loras folder and a toast names it), and the saved workflow and the
queued prompt carry no trace of the widget.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_training import make_dataset, training_graph
from tests.harness.graphs import node_inputs

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

RUN = "ab_run"
WIDGET = "fluxlab_ab"
AB = "[data-testid=fluxlab-ab]"


def compare_graph(client) -> dict:
    """API format: tiny models -> CompareCheckpoints over every checkpoint of RUN (base, 4, 8, final) -> PreviewImage."""
    return {
        "1": {"class_type": "FluxLabTinyModels", "inputs": {"variant": "flux1-dev", "seed": 0}},
        "2": {"class_type": "CompareCheckpoints", "inputs": node_inputs(
            client, "CompareCheckpoints", model=["1", 0], clip=["1", 1], vae=["1", 2],
            prompts="a photo of ohwx\na red fox", checkpoints="all", seed=7, steps=2, width=64, height=64,
            run_name=RUN)},
        # CompareCheckpoints is not an output node: a preview of its grid makes the prompt run it.
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


LOAD_AND_QUEUE = """async (graph) => {
    const app = window.app;
    await app.loadApiJson(graph, "ab_compare.json");
    const node = app.graph.nodes.find((n) => n.type === "CompareCheckpoints");
    node.pos = [380, 110];
    node.setSize([420, Math.max(node.size[1], 640)]);
    app.canvas.ds.scale = 0.9;
    app.canvas.ds.offset = [0, 30];
    app.canvas.setDirty(true, true);
    await app.queuePrompt(0, 1);
    return node.id;
}"""

SERIALIZED = """(widget) => {
    // The saved node must be identical with and without our widget: serialize, take the widget
    // out, serialize again, put it back.
    const app = window.app;
    const node = app.graph.nodes.find((n) => n.type === "CompareCheckpoints");
    const savedNode = () => JSON.stringify(app.graph.serialize().nodes.find((n) => n.id === node.id));
    const index = node.widgets.findIndex((w) => w.name === widget);
    const withWidget = savedNode();
    const [ours] = node.widgets.splice(index, 1);
    const withoutWidget = savedNode();
    node.widgets.splice(index, 0, ours);
    return { index, withWidget, withoutWidget, workflowText: JSON.stringify(app.graph.serialize()) };
}"""


def label(ui) -> str:
    return ui.page.locator("[data-testid=fluxlab-ab-label]").inner_text()


def test_ab_widget_flip_slide_use_and_not_saved(open_ui, browser_server, browser_client):
    make_dataset(browser_server)
    browser_client.run(training_graph(browser_client, RUN, mode="wait", steps=8, run_save_every=4), timeout=180)

    ui = open_ui()
    ui.evaluate(LOAD_AND_QUEUE, compare_graph(browser_client))
    widget = ui.page.locator(AB)
    widget.locator(".fluxlab-ab-body").wait_for(state="visible", timeout=120_000)
    ui.wait_for(f"() => [...document.querySelectorAll('{AB} .fluxlab-ab-img')]"
                ".every(img => img.complete && img.naturalWidth === 64)")
    options = widget.locator("select[data-role=a] option").all_inner_texts()
    assert options == ["base", "step 4", "step 8", "final"], options
    assert label(ui).startswith("A: base") and "seed 7" in label(ui)
    assert widget.locator("[data-testid=fluxlab-ab-use]").is_disabled()  # base has no LoRA to use
    src_a = widget.locator(".side-a").get_attribute("src")
    src_b = widget.locator(".side-b").get_attribute("src")
    assert src_a != src_b and "type=temp" in src_a
    ui.shot("07_ab_widget_showing_A_base")

    widget.locator("[data-testid=fluxlab-ab-flip]").click()
    assert label(ui).startswith("B: final")
    assert widget.locator(".side-b").is_visible() and not widget.locator(".side-a").is_visible()
    ui.shot("08_ab_widget_flipped_to_B_final")
    widget.focus()
    ui.page.keyboard.press("Space")  # the keyboard flips back
    assert label(ui).startswith("A: base")

    widget.locator("select[data-role=a]").select_option(label="step 4")
    widget.locator("select[data-role=prompt]").select_option(index=1)
    assert label(ui).startswith("A: step 4")
    assert "fluxlab_compare_cell" in widget.locator(".side-a").get_attribute("src")
    widget.locator("[data-mode=slide]").click()
    assert widget.locator(".side-a").is_visible() and widget.locator(".side-b").is_visible()
    assert widget.locator(".fluxlab-ab-divider").is_visible()
    ui.shot("09_ab_widget_slide_step4_vs_final")

    widget.locator("[data-mode=flip]").click()
    widget.locator("[data-testid=fluxlab-ab-use]").click()
    ui.wait_toast("fluxlab/ab_run_4.safetensors")
    assert (browser_server.base_dir / "models" / "loras" / "fluxlab" / f"{RUN}_4.safetensors").is_file()
    ui.shot("10_ab_widget_use_this_one_toast")

    state = ui.evaluate(SERIALIZED, WIDGET)
    assert state["index"] >= 0, "the A/B widget is missing from the node"
    assert state["withWidget"] == state["withoutWidget"]
    for trace in (WIDGET, "fluxlab-ab", "fluxlab_compare"):
        assert trace not in state["workflowText"], f"{trace!r} leaked into the saved workflow"
    prompt = ui.evaluate("async () => (await window.app.graphToPrompt()).output")
    compare = next(n for n in prompt.values() if n["class_type"] == "CompareCheckpoints")
    assert WIDGET not in compare["inputs"]
