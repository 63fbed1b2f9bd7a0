"""The A/B widget on CompareCheckpoints in a real browser: a tiny run trained over HTTP, a compare
graph loaded into the canvas and queued from the page, then toggle (click, keyboard), swap, the
slider with both halves labelled and B really on screen right of the divider at 90 % (measured
before: past ~78 % only A showed), the grid at the node's width and full size on click, "use this
one" (the LoRA lands in the loras folder and a toast names it), and the saved workflow and the
queued prompt carry no trace of the widget.
"""

from __future__ import annotations

import pytest

from PIL import Image

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
    node.setSize([420, Math.max(node.size[1], 1000)]);
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


# The source pixel, of a column range of the picture, where A and B differ most, and where it is on
# screen: each image read back through a canvas (same origin: ComfyUI's /view).
PIXEL = """([lo, hi]) => {
    const widget = document.querySelector('[data-testid=fluxlab-ab]');
    const read = (img) => {
        const canvas = Object.assign(document.createElement('canvas'), { width: img.naturalWidth, height: img.naturalHeight });
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        return context.getImageData(0, 0, canvas.width, canvas.height);
    };
    const a = read(widget.querySelector('.side-a'));
    const b = read(widget.querySelector('.side-b'));
    let best = null;
    for (let y = 0; y < a.height; y++) {
        for (let x = Math.ceil(lo * a.width); x < Math.floor(hi * a.width); x++) {
            const i = (y * a.width + x) * 4;
            const d = [0, 1, 2].reduce((sum, c) => sum + Math.abs(a.data[i + c] - b.data[i + c]), 0);
            if (!best || d > best.d) best = { x, y, d, a: [...a.data.slice(i, i + 3)], b: [...b.data.slice(i, i + 3)] };
        }
    }
    const frame = widget.querySelector('[data-testid=fluxlab-ab-frame]').getBoundingClientRect();
    best.px = frame.left + (best.x + 0.5) * frame.width / a.width;
    best.py = frame.top + (best.y + 0.5) * frame.height / a.height;
    return best;
}"""


def label(ui) -> str:
    return ui.page.locator("[data-testid=fluxlab-ab-label]").inner_text()


def on_screen(ui, x: float, y: float) -> tuple:
    """The colour the page shows at (x, y)."""
    path = ui.artifacts / "_pixel.png"
    ui.page.screenshot(path=str(path), clip={"x": int(x), "y": int(y), "width": 1, "height": 1})
    colour = Image.open(path).convert("RGB").getpixel((0, 0))
    path.unlink()
    return colour


def close(colour, expected, tolerance=12) -> bool:
    return all(abs(c - e) <= tolerance for c, e in zip(colour, expected))


LOADED = f"() => [...document.querySelectorAll('{AB} .fluxlab-ab-img')].every(img => img.complete && img.naturalWidth === 64)"


def test_ab_widget_toggle_swap_slide_grid_use_and_not_saved(open_ui, browser_server, browser_client):
    make_dataset(browser_server)
    # A learning rate that moves the tiny model's pictures visibly in 8 steps, so A and B differ.
    browser_client.run(training_graph(browser_client, RUN, mode="wait", steps=8, run_save_every=4,
                                      optim_learning_rate=0.02), timeout=180)

    ui = open_ui()
    ui.evaluate(LOAD_AND_QUEUE, compare_graph(browser_client))
    widget = ui.page.locator(AB)
    widget.locator(".fluxlab-ab-body").wait_for(state="visible", timeout=120_000)
    ui.wait_for(LOADED)
    options = widget.locator("select[data-role=a] option").all_inner_texts()
    assert options == ["base", "step 4", "step 8", "final"], options
    assert label(ui).startswith("A: base") and "seed 7" in label(ui)
    assert widget.locator("[data-testid=fluxlab-ab-use]").is_disabled()  # base has no LoRA to use
    src_a = widget.locator(".side-a").get_attribute("src")
    src_b = widget.locator(".side-b").get_attribute("src")
    assert src_a != src_b and "type=temp" in src_a
    # The mode switch and the swap have names of their own.
    modes = widget.get_by_role("radiogroup", name="Compare mode")
    assert modes.get_by_role("radio").all_inner_texts() == ["Toggle", "Slider"]
    assert modes.get_by_role("radio", name="Toggle").get_attribute("aria-checked") == "true"
    swap = widget.get_by_role("button", name="Swap A ⇄ B")
    assert swap.is_visible()
    assert widget.locator("[data-testid=fluxlab-ab-tag-a]").inner_text() == "A · base"
    ui.shot("07_ab_widget_showing_A_base")

    widget.locator("[data-testid=fluxlab-ab-stage]").click()  # toggle mode: a click shows the other
    assert label(ui).startswith("B: final")
    assert widget.locator(".side-b").is_visible() and not widget.locator(".side-a").is_visible()
    assert widget.locator("[data-testid=fluxlab-ab-tag-b]").inner_text() == "B · final"
    assert not widget.locator("[data-testid=fluxlab-ab-tag-a]").is_visible()
    ui.shot("08_ab_widget_toggled_to_B_final")
    widget.focus()
    ui.page.keyboard.press("Space")  # the keyboard toggles back
    assert label(ui).startswith("A: base")

    swap.click()  # the picks change places: A is now final
    assert label(ui).startswith("A: final")
    assert widget.locator("select[data-role=a]").input_value() == "3" and widget.locator("select[data-role=b]").input_value() == "0"
    assert widget.locator(".side-a").get_attribute("src") == src_b
    swap.click()
    ui.wait_for(LOADED)  # each change loads its pictures before the next (a change mid-load aborts it)

    widget.locator("select[data-role=a]").select_option(label="step 4")
    ui.wait_for(LOADED)
    widget.locator("select[data-role=prompt]").select_option(index=1)
    ui.wait_for(LOADED)
    assert label(ui).startswith("A: step 4")
    assert "fluxlab_compare_cell" in widget.locator(".side-a").get_attribute("src")
    modes.get_by_role("radio", name="Slider").click()
    assert widget.locator(".side-a").is_visible() and widget.locator(".side-b").is_visible()
    assert widget.locator(".fluxlab-ab-divider").is_visible()
    assert widget.locator("[data-testid=fluxlab-ab-tag-a]").inner_text() == "A · step 4"
    assert widget.locator("[data-testid=fluxlab-ab-tag-b]").inner_text() == "B · final"
    frame = widget.locator("[data-testid=fluxlab-ab-frame]").bounding_box()
    stage = widget.locator("[data-testid=fluxlab-ab-stage]").bounding_box()
    assert abs(frame["width"] - frame["height"]) < 2, "the frame is the picture's own (square) box, not the stage"
    assert frame["x"] >= stage["x"] - 1 and frame["x"] + frame["width"] <= stage["x"] + stage["width"] + 1
    ui.shot("09_ab_widget_slider_labelled_halves_step4_vs_final")

    # Drag the divider to 90 % of the picture: right of it the screen shows B, left of it A (base
    # against final on the trigger prompt: the pair that differs most after 8 steps).
    widget.locator("select[data-role=a]").select_option(label="base")
    ui.wait_for(LOADED)
    widget.locator("select[data-role=prompt]").select_option(index=0)
    ui.wait_for(LOADED)
    ui.page.mouse.move(frame["x"] + frame["width"] * 0.5, frame["y"] + frame["height"] / 2)
    ui.page.mouse.down()
    ui.page.mouse.move(frame["x"] + frame["width"] * 0.9, frame["y"] + frame["height"] / 2, steps=5)
    ui.page.mouse.up()
    split = float(widget.locator("[data-testid=fluxlab-ab-frame]").get_attribute("data-split"))
    assert 89 <= split <= 91, split
    right = ui.evaluate(PIXEL, [0.92, 1.0])
    left = ui.evaluate(PIXEL, [0.0, 0.85])
    assert right["d"] > 30 and left["d"] > 30, ("A and B must differ there for the check to mean anything", right, left)
    assert close(on_screen(ui, right["px"], right["py"]), right["b"]), (on_screen(ui, right["px"], right["py"]), right)
    assert close(on_screen(ui, left["px"], left["py"]), left["a"]), (on_screen(ui, left["px"], left["py"]), left)
    ui.shot("09b_ab_widget_slider_at_90_percent_B_still_shown")

    # The grid under the picture spans the node's width (it was ~35 px) and opens full size.
    grid = widget.locator("[data-testid=fluxlab-ab-grid]")
    ui.wait_for(f"() => document.querySelector('{AB} [data-testid=fluxlab-ab-grid]').naturalWidth > 0")
    node_width = widget.bounding_box()["width"]
    assert grid.bounding_box()["width"] >= node_width - 12 and node_width > 300, (grid.bounding_box(), node_width)
    ui.evaluate("() => { window.app.canvas.ds.offset = [0, -380]; window.app.canvas.setDirty(true, true); }")
    ui.wait_for(f"() => document.querySelector('{AB} .fluxlab-ab-grid').getBoundingClientRect().bottom < 900")
    ui.shot("09c_ab_widget_grid_at_node_width")
    grid.click(position={"x": 40, "y": 20})  # its top: the grid scrolls inside its box
    lightbox = ui.page.locator("[data-testid=fluxlab-lightbox]")
    lightbox.wait_for(state="visible")
    natural = ui.evaluate("() => document.querySelector('[data-testid=fluxlab-lightbox] img').naturalWidth")
    assert natural == ui.evaluate(f"() => document.querySelector('{AB} [data-testid=fluxlab-ab-grid]').naturalWidth")
    shown = lightbox.locator("img").bounding_box()
    viewport = ui.page.viewport_size
    assert shown["y"] >= 0 and shown["y"] + shown["height"] <= viewport["height"], "the whole grid at once"
    assert shown["height"] > widget.locator(".fluxlab-ab-grid").bounding_box()["height"] * 2
    ui.shot("09d_ab_widget_grid_full_size")
    ui.page.keyboard.press("Escape")
    lightbox.wait_for(state="detached")

    modes.get_by_role("radio", name="Toggle").click()
    widget.locator("select[data-role=a]").select_option(label="step 4")
    ui.wait_for(LOADED)
    assert label(ui).startswith("A: step 4")
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
