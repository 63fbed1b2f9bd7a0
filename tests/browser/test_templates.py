"""The bundled workflows as a user meets them in ComfyUI's template browser: the pack listed as
"Flux LoRA Lab", a card per workflow with its thumbnail (no 404) and its title in words, found by
"train", "lora" and "flux"; each workflow opens with its note in view and no node covering another;
and the demo, on a server that holds nothing but the pack, queued with the Run button, watched in
the panel until its run finishes, its compare grid shown in the A/B widget."""

from __future__ import annotations

import json
import re

import pytest

import itertools
import urllib.parse

from scripts.build_workflows import TITLE_HEIGHT
from scripts.comfy_server import PACK_DIRNAME, REPO_ROOT
from scripts.workflow_descriptions import DEMO_WORKFLOW, WORKFLOWS

from .ui import NOTICES_JS

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

WORKFLOWS_DIR = REPO_ROOT / "workflows"
STEP = "() => Number(document.querySelector('[data-testid=fluxlab-step]')?.dataset.step ?? 0)"


PACK_TITLE = "Flux LoRA Lab"  # locales/en/main.json names the pack's template category


def open_templates(ui):
    """The workflow templates dialog on the pack's entry; the dialog. It is the one that lists the
    pack as a button (its title differs between frontends: "Templates" / "Get Started With A Template")."""
    ui.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    entry = ui.page.get_by_role("button", name=PACK_TITLE, exact=True)
    dialog = ui.page.get_by_role("dialog").filter(has=entry)
    dialog.wait_for()
    dialog.get_by_role("button", name=PACK_TITLE, exact=True).click()
    return dialog


def card(dialog, name: str):
    """A workflow's card: the frontend's `template-workflow-<name>` test id (1.32 and 1.58)."""
    return dialog.locator(f"[data-testid='template-workflow-{name}']")


def open_template(ui, name: str) -> None:
    dialog = open_templates(ui)
    card(dialog, name).click()
    dialog.wait_for(state="hidden")  # loading the workflow closes it (1.32 removes it, 1.58 may keep it closed)


# A card's picture has loaded (1.58 shows it from a blob: URL, 1.32 from the thumbnail's own URL;
# which file it came from is checked on the network).
THUMBNAIL_LOADED = "(card) => [...card.querySelectorAll('img')].some((img) => img.complete && img.naturalWidth > 0)"


def test_template_cards_show_thumbnails_titles_and_are_found(open_ui, browser_client):
    listed = browser_client.get_json("/api/workflow_templates")
    assert sorted(listed.get(PACK_DIRNAME, [])) == sorted(WORKFLOWS)
    thumbnails: dict[str, int] = {}  # url -> HTTP status; any 404 also fails the page's teardown check

    def watch(page):
        page.on("response", lambda r: thumbnails.__setitem__(urllib.parse.unquote(r.url), r.status)
                if "/workflow_templates/" in r.url and r.url.endswith(".jpg") else None)

    ui = open_ui(before_open=watch)
    dialog = open_templates(ui)
    for name in WORKFLOWS:
        card(dialog, name).wait_for()
        card(dialog, name).scroll_into_view_if_needed()
        ui.page.wait_for_function(THUMBNAIL_LOADED, arg=card(dialog, name).element_handle(), timeout=30_000)
        assert name in card(dialog, name).inner_text(), (name, card(dialog, name).inner_text())
    ui.shot("20_template_cards_with_thumbnails")
    expected = {f"/workflow_templates/{PACK_DIRNAME}/{name}.jpg" for name in WORKFLOWS}
    assert {url.split("/api", 1)[-1] for url, status in thumbnails.items() if status == 200} >= expected, thumbnails
    assert all(status == 200 for status in thumbnails.values()), thumbnails

    search = dialog.get_by_role("textbox").first
    for word in ("train", "lora", "flux"):
        search.fill(word)
        wanted = [name for name in WORKFLOWS if word in name.lower()]
        for name in wanted:
            card(dialog, name).wait_for(timeout=15_000)
        ui.shot(f"21_template_search_{word}")


FRAMING_JS = """() => {
    const canvas = window.app.canvas, ds = canvas.ds, box = canvas.canvas.getBoundingClientRect();
    const screen = (x, y) => [(x + ds.offset[0]) * ds.scale + box.left, (y + ds.offset[1]) * ds.scale + box.top];
    const nodes = window.app.graph.nodes.map((n) => ({type: n.type, id: n.id, rect: [...n.getBounding()]}));
    const note = window.app.graph.nodes.find((n) => n.type === 'MarkdownNote' || n.type === 'Note');
    const [x, y, w, h] = note.getBounding();
    const [left, top] = screen(x, y), [right, bottom] = screen(x + w, y + h);
    const [tx, ty] = screen(x + w / 2, y + 10);  // the note's title bar: drawn on the canvas, so hit-testing
    const hit = document.elementFromPoint(tx, ty);  // there finds the canvas unless a menu covers it
    return {nodes, note: [left, top, right, bottom], titleHit: hit && (hit.tagName === 'CANVAS' ? 'CANVAS' : hit.outerHTML.slice(0, 120)), window: [innerWidth, innerHeight]};
}"""


def close_missing_models(ui, workflow: dict) -> None:
    """A workflow whose loaders declare their files (`properties.models`) opens with them listed as
    missing: 1.32 in a modal "Missing Models" dialog over the canvas, which a user closes first; 1.58
    in a notice ("N issues found") that covers no node."""
    if not any(node.get("properties", {}).get("models") for node in workflow["nodes"]):
        return
    ui.wait_for("() => /Missing Models|issues? found/i.test(document.body.innerText)")
    dialog = ui.page.get_by_role("dialog").filter(has_text="Missing Models")
    if dialog.count():
        dialog.get_by_role("button", name="Close").click()
        dialog.wait_for(state="hidden")


@pytest.mark.parametrize("name", list(WORKFLOWS))
def test_workflow_opens_framed_with_no_node_covering_another(name, open_ui):
    workflow = json.loads((WORKFLOWS_DIR / f"{name}.json").read_text())
    ui = open_ui()
    open_template(ui, name)
    ui.wait_for("(n) => window.app.graph.nodes.length === n", arg=len(workflow["nodes"]))
    close_missing_models(ui, workflow)
    framing = ui.evaluate(FRAMING_JS)
    ui.shot(f"22_opened_{name}")
    left, top, right, bottom = framing["note"]
    width, height = framing["window"]
    assert 0 <= left and right <= width and 0 <= top and bottom <= height, framing["note"]
    assert framing["titleHit"] == "CANVAS", f"the note's title bar is covered by {framing['titleHit']}"
    # The frontend draws each node where and as big as the file says (it grows a node narrower than its
    # title or shorter than its widgets), so tests/test_workflow_layout.py checks what users see.
    saved = {str(node["id"]): [node["pos"][0], node["pos"][1] - TITLE_HEIGHT, node["size"][0], node["size"][1] + TITLE_HEIGHT]
             for node in workflow["nodes"]}
    grown = [(n["type"], saved[str(n["id"])], [round(v) for v in n["rect"]]) for n in framing["nodes"]
             if any(abs(a - b) > 1 for a, b in zip(saved[str(n["id"])], n["rect"]))]
    assert not grown, f"the frontend draws these nodes elsewhere or bigger (file rect, drawn rect): {grown}"
    covered = [(a["type"], b["type"]) for a, b in itertools.combinations(framing["nodes"], 2)
               if a["rect"][0] < b["rect"][0] + b["rect"][2] and b["rect"][0] < a["rect"][0] + a["rect"][2]
               and a["rect"][1] < b["rect"][1] + b["rect"][3] and b["rect"][1] < a["rect"][1] + a["rect"][3]]
    assert not covered, (name, covered)


# Words with which the frontend says a loaded workflow has problems (toasts in 1.32; in 1.58 a
# notice "N issues found / Resolve these issues before running the workflow", "required model is missing").
COMPLAINT = re.compile(r"invalid|missing|issues? found", re.IGNORECASE)

NEW_RUN_OR_ERROR = f"""(before) => {{
    // A failed queue: an error dialog (1.32: "Prompt outputs failed validation"; 1.58: "Prompt
    // Execution Error") or an on-screen notice (1.58 shows node errors as an overlay notice).
    const dialog = [...document.querySelectorAll('[role=dialog], [role=alertdialog]')]
        .find((d) => /failed|error/i.test(d.innerText));
    if (dialog) return 'ERROR: ' + dialog.innerText;
    const notice = ({NOTICES_JS})().find((n) => /failed|error|issues? found/i.test(n.innerText));
    if (notice) return 'ERROR: ' + notice.innerText;
    return [...document.querySelectorAll('.fluxlab-run')].map((li) => li.dataset.runId).find((id) => !before.includes(id));
}}"""


def test_demo_from_template_browser_trains_in_the_panel(open_ui, browser_server, browser_client):
    """Nothing is prepared: the demo's own Demo Images node writes its pictures, as on a Manager install."""
    demo = WORKFLOWS_DIR / f"{DEMO_WORKFLOW}.json"
    listed = browser_client.get_json("/api/workflow_templates")
    assert demo.stem in listed.get(PACK_DIRNAME, []), f"template browser does not list {demo.stem}: {listed}"
    before = {run["run_id"] for run in browser_client.get_json("/fluxlab/runs")["runs"]}

    ui = open_ui()
    # What the frontend already complains about belongs to its default workflow (1.58 flags its
    # missing models): those notices must go when the demo replaces it, and no new one may come.
    default_complaints = [t for t in ui.toasts() if COMPLAINT.search(t)]
    open_template(ui, demo.stem)
    ui.wait_for("() => window.app.graph.nodes.some((n) => n.type === 'TrainLoRA')")
    if default_complaints:  # a notice still there after this is named by the assertion below
        ui.wait_until(f"(old) => !({NOTICES_JS})().some((n) => old.includes(n.innerText))",
                      arg=default_complaints, timeout_ms=15_000)
    complaints = [t for t in ui.toasts() if COMPLAINT.search(t)]
    assert not complaints, f"the frontend rejects parts of {demo.name}: {complaints}"
    # Every widget holds the saved value (a seed control the file did not account for would shift
    # the rest), and no seed is left to 'randomize': the same workflow trains the same run.
    loaded = ui.evaluate("() => Object.fromEntries(window.app.graph.nodes.map((n) => "
                         "[String(n.id), (n.widgets || []).map((w) => [w.name, w.value])]))")
    for node in json.loads(demo.read_text())["nodes"]:
        widgets, saved = loaded[str(node["id"])], node.get("widgets_values", [])
        # (after them: widgets of the pack's own front end, such as CompareCheckpoints' A/B view)
        assert [value for _, value in widgets][:len(saved)] == saved, (node["type"], widgets)
        assert all(value == "fixed" for name, value in widgets if "control" in name), (node["type"], widgets)
    ui.shot("11_demo_workflow_loaded")
    panel = ui.open_panel()
    ui.page.get_by_role("button", name="Run", exact=True).first.click()

    # The demo's run appears in the panel, selected (the newest live run), and trains.
    new_run = ui.wait_for(NEW_RUN_OR_ERROR, arg=sorted(before), timeout_ms=180_000)
    assert not new_run.startswith("ERROR: "), new_run
    panel.locator(f".fluxlab-run[data-run-id='{new_run}']").click()
    ui.wait_for(f"() => ({STEP})() >= 3", timeout_ms=180_000)
    ui.shot("12_demo_training_in_panel")
    # The demo is short: let it finish (the run's toast), then its compare grid fills the A/B widget.
    ui.wait_for("() => document.querySelector('[data-testid=fluxlab-detail]').dataset.status === 'finished'",
                timeout_ms=480_000)
    assert new_run in ui.wait_toast("Training finished")
    summary = next(r for r in browser_client.get_json("/fluxlab/runs")["runs"] if r["run_id"] == new_run)
    assert summary["status"] == "finished" and summary["step"] == summary["total_steps"]
    ab = ui.page.locator("[data-testid=fluxlab-ab] .fluxlab-ab-body")
    ab.wait_for(state="visible", timeout=180_000)
    assert ui.page.locator("[data-testid=fluxlab-ab] select[data-role=a] option").count() >= 2
    ui.shot("13_demo_finished_with_ab_widget")
