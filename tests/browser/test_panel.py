"""The Flux LoRA Lab sidebar panel in a real browser against the real server.

In file order (one server per browser session): the empty state before any run exists; a past run
(an events.jsonl written by core/run/event_log.EventLog, as a run from an earlier server leaves it) drawn
from its history; an event that reaches the page the moment its websocket opens (before ComfyUI
calls any extension hook) is not dropped; a live TrainLoRA run on the tiny model, queued over HTTP,
watched as the chart gains points and the step count rises, picked up by a page opened mid-run,
paused, resumed and stopped from the panel's buttons, with the badge and the toast; then a second
browser shows the whole history.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.e2e.test_training import make_dataset, training_graph

from .ui import DROPPED_MESSAGE

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

PAST_RUN = "past_run"
PAST_STEPS = 40
LIVE_RUN = "live_run"

POINTS = "() => Number(document.querySelector('[data-testid=fluxlab-detail] .fluxlab-chart')?.dataset.points ?? 0)"
STEP = "() => Number(document.querySelector('[data-testid=fluxlab-step]')?.dataset.step ?? 0)"


def test_empty_state_says_how_to_start(open_ui, browser_client):
    assert browser_client.get_json("/fluxlab/runs")["runs"] == [], "needs a server without runs (conftest runs it first)"
    ui = open_ui()
    panel = ui.open_panel()
    empty = panel.locator("[data-testid=fluxlab-empty]")
    empty.wait_for(state="visible")
    text = empty.inner_text()
    assert "No training runs yet" in text and "press Run" in text and "Templates" in text
    assert not panel.locator("[data-testid=fluxlab-detail]").is_visible()
    assert ui.badge() == ""
    ui.shot("01_empty_panel")


# DatasetReport.data of a small folder with one caption missing and one broken file.
REPORT = {
    "images": 3, "samples_per_epoch": 3, "folders": [], "buckets": {"64px 1x1": 3},
    "captions": {"from_file": 2, "missing": [{"image": "c.png", "used": "trigger_only", "caption": "ohwx"}],
                 "with_trigger": 3, "empty": []},
    "duplicates": [], "rejected": [{"file": "broken.png", "reason": "cannot be decoded"}], "ignored_files": [],
    "cache": {"latents_encoded": 3, "latents_reused": 0, "texts_encoded": 3, "texts_reused": 0, "damaged_rebuilt": []},
    "batch_size": 1, "steps_per_epoch": 3, "suggested_steps": 300, "suggested_epochs": 100.0, "preset": "concept"}


def write_past_run(server) -> None:
    """A finished run's folder as TrainLoRA leaves it: events.jsonl (+ previews on disk)."""
    from flux_lora_lab.core.run import events as ev
    from flux_lora_lab.core.run.event_log import EventLog

    folder = server.base_dir / "output" / "fluxlab" / PAST_RUN
    checkpoint = folder / f"checkpoint_{PAST_STEPS:06d}"
    checkpoint.mkdir(parents=True)
    for i, colour in enumerate([(200, 60, 40), (40, 90, 200)]):
        Image.new("RGB", (64, 64), colour).save(checkpoint / f"preview_{i}.png")
    log = EventLog(folder / "events.jsonl")
    log.append(ev.DatasetReport(report=REPORT))
    log.append(ev.Started(run_id=PAST_RUN, total_steps=PAST_STEPS))
    for step in range(1, PAST_STEPS + 1):
        log.append(ev.Step(step=step, total=PAST_STEPS, loss=0.5 / step + 0.1, lr=1e-4, its=5.0,
                           eta_s=(PAST_STEPS - step) / 5, memory={"ram_mb": 812.0}))
    log.append(ev.Checkpoint(step=PAST_STEPS, path=str(checkpoint)))
    log.append(ev.Preview(step=PAST_STEPS, images=(f"{checkpoint.name}/preview_0.png", f"{checkpoint.name}/preview_1.png")))
    log.append(ev.Finished(step=PAST_STEPS, lora_path=str(folder / "lora_final.safetensors")))
    log.close()


def test_past_run_history(open_ui, browser_server):
    write_past_run(browser_server)
    ui = open_ui()
    panel = ui.open_panel()
    item = panel.locator(f".fluxlab-run[data-run-id={PAST_RUN}]")
    item.wait_for()
    assert item.get_attribute("data-status") == "finished"
    item.click()
    ui.wait_for(f"() => ({POINTS})() === {PAST_STEPS}")
    assert ui.text("fluxlab-step") == f"{PAST_STEPS} / {PAST_STEPS}"
    assert ui.text("fluxlab-status") == "finished"
    assert "lora_final.safetensors" in ui.text("fluxlab-message")
    # Previews come through the run's file route and really load (a record without prompts: the
    # gallery captions them by their file).
    panel.locator("[data-testid=fluxlab-gallery]").scroll_into_view_if_needed()  # tiles load lazily
    ui.wait_for("() => [...document.querySelectorAll('[data-testid=fluxlab-gallery] img')]"
                ".filter(img => img.complete && img.naturalWidth === 64).length === 2")
    assert panel.locator("[data-testid=fluxlab-gallery] figcaption").all_inner_texts() == [
        f"checkpoint_{PAST_STEPS:06d}/preview_0.png", f"checkpoint_{PAST_STEPS:06d}/preview_1.png"]
    panel.locator("[data-testid=fluxlab-detail] summary", has_text="Dataset report").click()
    report = ui.text("fluxlab-dataset")
    assert "3 images" in report and "Rejected broken.png" in report and "No caption file for c.png" in report
    # A finished run offers no controls.
    assert all(panel.locator(f"[data-action={a}]").is_disabled() for a in ("pause", "resume", "checkpoint", "stop"))
    ui.shot("02_past_run_history")


# Runs in the page before any of its scripts (Playwright init script). ComfyUI's socket to /ws gets,
# right after the server's first message (its status), `message` as if the server had sent it:
# dispatched in the page, in order, with no round trip through the test: the earliest moment a
# server event can arrive. The frontend calls the extensions' `setup` only after it has fetched
# /object_info, so holding that request until the message is in makes the order certain (without
# it, on a loaded machine, the socket may open after setup and the test would prove nothing).
# `window.__fluxlabInjected` records the moment: the first server message's type, and whether our
# tab was already on screen (it must not be: that would mean our setup had run).
INJECT_AT_SOCKET_OPEN = """(message) => {
    const NativeSocket = window.WebSocket;
    const nativeFetch = window.fetch;
    const pathOf = (url) => new URL(url, location.href).pathname;
    let socketCreated = false;
    let release;
    const injected = new Promise((resolve) => { release = resolve; });
    setTimeout(() => release(), 30000); // no message ever: let the page load, the test says why it failed
    window.__fluxlabInjected = null;
    window.fetch = function (input, init) {
        const url = typeof input === "string" || input instanceof URL ? String(input) : input.url;
        if (socketCreated && /\\/object_info$/.test(pathOf(url))) return injected.then(() => nativeFetch.call(this, input, init));
        return nativeFetch.call(this, input, init);
    };
    window.WebSocket = class extends NativeSocket {
        constructor(url, protocols) {
            super(url, protocols);
            if (!/\\/ws$/.test(pathOf(url)) || socketCreated) return;
            socketCreated = true;
            this.addEventListener("message", (first) => {
                const tabShown = [...document.querySelectorAll("button[aria-label]")]
                    .some((b) => b.getAttribute("aria-label").startsWith("Flux LoRA Lab"));
                let firstType = null;
                try { firstType = JSON.parse(first.data).type; } catch { firstType = "<not JSON>"; }
                window.__fluxlabInjected = { firstType, tabShown };
                // After every listener of the first message (ComfyUI's included) has run.
                queueMicrotask(() => {
                    this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(message) }));
                    release();
                });
            }, { once: true });
        }
    };
}"""


def test_event_at_socket_open_is_not_dropped(open_ui):
    """DatasetFromFolder's report (a `fluxlab.dataset_report` with run_id null, as
    nodes/_comfy/encoders.py broadcasts it) arriving the moment the socket opens reaches the panel,
    and the frontend does not drop it ("Unknown message type fluxlab.dataset_report": 1.58 logs an
    error, 1.32 a warning; the teardown fails the test on either)."""
    event = {"type": "fluxlab.dataset_report", "data": {"run_id": None, "report": REPORT, "text": "3 images"}}
    ui = open_ui(before_open=lambda page: page.add_init_script(
        script=f"({INJECT_AT_SOCKET_OPEN})({json.dumps(event)})"))
    injected = ui.evaluate("() => window.__fluxlabInjected")
    assert injected, "the page's websocket got no message: nothing was injected"
    assert injected == {"firstType": "status", "tabShown": False}, \
        f"injected too late to test anything (after our setup) or not after the status: {injected}"
    dropped = [line for line in ui.console if DROPPED_MESSAGE.search(line)]
    assert not dropped, f"the frontend dropped our event: {dropped}"
    panel = ui.open_panel()
    box = panel.locator("[data-testid=fluxlab-loose-report]")
    box.wait_for(state="visible")
    box.locator("summary").click()
    report = box.inner_text()
    assert "3 images" in report and "Rejected broken.png" in report and "No caption file for c.png" in report
    ui.shot("02b_report_sent_at_socket_open")


def test_live_run_pause_resume_stop(open_ui, browser_server, browser_client):
    make_dataset(browser_server)
    ui = open_ui()
    panel = ui.open_panel()
    # Long enough never to end by itself within the test; the panel's Stop ends it.
    graph = training_graph(browser_client, LIVE_RUN, mode="background", steps=100000, run_save_every=1000,
                           previews=True, run_sample_every=10)
    # A trigger prompt and its no-trigger twin (the gallery shows them side by side), and one more.
    graph["train"]["inputs"]["preview_prompts"] = "a photo of ohwx\na photo of\na red fox"
    prompt_id = browser_client.queue(graph)
    browser_client.wait(prompt_id, timeout=120)  # background mode: the prompt ends once training is under way
    panel.locator(f".fluxlab-run[data-run-id={LIVE_RUN}]").wait_for()
    panel.locator(f".fluxlab-run[data-run-id={LIVE_RUN}]").click()

    ui.wait_for(f"() => ({STEP})() >= 3 && ({POINTS})() >= 3")
    first_step, first_points = ui.evaluate(STEP), ui.evaluate(POINTS)
    ui.wait_for(f"() => ({STEP})() >= {first_step + 5} && ({POINTS})() >= {first_points + 5}")
    assert ui.text("fluxlab-status") == "running"
    assert "it/s" in ui.text("fluxlab-its") and ui.text("fluxlab-eta") != "–" and ui.text("fluxlab-memory").endswith("B")
    assert ui.text("fluxlab-step").endswith("/ 100000")
    # This machine trains on the CPU: the step records carry no GPU memory, so no GPU row shows.
    assert not panel.locator("[data-testid=fluxlab-gpu]").is_visible()
    ui.wait_badge(r"^\d+%$")  # the tab's badge shows the live run's progress
    # The gallery follows the run: baseline, then the steps it renders (sample_every 10).
    ui.wait_for("() => (document.querySelector('[data-testid=fluxlab-gallery]').dataset.steps ?? '').split(',').length >= 2")
    captions = panel.locator("[data-testid=fluxlab-gallery] .fluxlab-gallery-step").first.locator("figcaption").all_inner_texts()
    assert captions == ["a photo of ohwx", "a photo of", "a red fox"], captions
    assert panel.locator("[data-testid=fluxlab-gallery] .fluxlab-gallery-step").first.locator(".fluxlab-gallery-pair").count() == 1
    assert panel.locator("[data-action=pause]").is_enabled() and panel.locator("[data-action=resume]").is_disabled()
    ui.shot("03_live_training")

    # "Save now": a toast once the requested checkpoint is on disk, naming its step and folder.
    panel.locator("[data-action=checkpoint]").click()
    saved = ui.wait_toast("Checkpoint saved")
    step = int(saved.split("step ")[1].split()[0])
    assert (browser_server.base_dir / "output" / "fluxlab" / LIVE_RUN / f"checkpoint_{step:06d}" / "lora.safetensors").is_file()
    assert f"checkpoint_{step:06d}" in saved
    ui.shot("03b_save_now_checkpoint_saved_toast")

    # A page opened while the run broadcasts its steps: step events reach it before ComfyUI calls
    # our setup. None may be dropped (the teardown fails the test on "Unknown message type
    # fluxlab.step"), and the page picks the live run up, badge and panel, and follows it.
    watcher = open_ui()
    watcher.wait_badge(r"^\d+%$")
    watcher.open_panel()
    watcher.wait_for(f"() => document.querySelector('[data-testid=fluxlab-detail]')?.dataset.runId === '{LIVE_RUN}'")
    seen_step = watcher.evaluate(STEP)
    watcher.wait_for(f"() => ({STEP})() > {seen_step}")
    assert watcher.text("fluxlab-status") == "running"

    panel.locator("[data-action=pause]").click()
    ui.wait_for("() => document.querySelector('[data-testid=fluxlab-detail]').dataset.status === 'paused'")
    paused_at = ui.evaluate(STEP)
    assert panel.locator("[data-action=resume]").is_enabled() and panel.locator("[data-action=pause]").is_disabled()
    ui.shot("04_paused")
    panel.locator("[data-action=resume]").click()
    ui.wait_for(f"() => ({STEP})() > {paused_at}")

    panel.locator("[data-action=stop]").click()
    ui.wait_for("() => document.querySelector('[data-testid=fluxlab-detail]').dataset.status === 'stopped'", timeout_ms=60_000)
    assert LIVE_RUN in ui.wait_toast("Training stopped")
    assert ui.badge() == ""
    assert all(panel.locator(f"[data-action={a}]").is_disabled() for a in ("pause", "resume", "checkpoint", "stop"))
    summary = next(r for r in browser_client.get_json("/fluxlab/runs")["runs"] if r["run_id"] == LIVE_RUN)
    assert summary["status"] == "stopped" and not summary["live"]
    ui.shot("05_stopped_with_toast")

    # A second browser (fresh profile) shows the whole history: every step event of the run.
    steps = [e for e in browser_client.get_json(f"/fluxlab/runs/{LIVE_RUN}")["events"] if e["kind"] == "step"]
    other = open_ui()
    other_panel = other.open_panel()
    other_panel.locator(f".fluxlab-run[data-run-id={LIVE_RUN}]").click()
    other.wait_for(f"() => ({POINTS})() === {len(steps)}")
    assert other.text("fluxlab-step").startswith(f"{steps[-1]['step']} /")
    assert other.text("fluxlab-status") == "stopped"
    other.shot("06_second_browser_history")


CONTINUED_RUN = "continued_run"
LOAD_AND_QUEUE = """async (graph) => {
    await window.app.loadApiJson(graph, "continue.json");
    await window.app.queuePrompt(0, 1);
}"""
DETAIL = "document.querySelector('[data-testid=fluxlab-detail]')"


def _numbered(graph: dict) -> dict:
    """The API graph with numeric node ids, as the frontend's loadApiJson expects."""
    number = {name: str(i) for i, name in enumerate(graph, start=1)}
    relink = lambda v: [number[v[0]], v[1]] if isinstance(v, list) and len(v) == 2 and v[0] in number else v  # noqa: E731
    return {number[name]: {**node, "inputs": {k: relink(v) for k, v in node["inputs"].items()}} for name, node in graph.items()}


def test_a_finished_run_goes_on_from_the_panel(open_ui, browser_server, browser_client):
    """Measured before: a finished run only said "raise train_steps and queue it again". The panel
    offers "train on for N more steps": it sets the open workflow's TrainLoRA of that run and queues it."""
    make_dataset(browser_server)
    ui = open_ui()
    panel = ui.open_panel()
    ui.evaluate(LOAD_AND_QUEUE, _numbered(training_graph(browser_client, CONTINUED_RUN, steps=2, run_save_every=2)))
    panel.locator(f".fluxlab-run[data-run-id={CONTINUED_RUN}]").wait_for()
    panel.locator(f".fluxlab-run[data-run-id={CONTINUED_RUN}]").click()
    ui.wait_for(f"() => {DETAIL}.dataset.runId === '{CONTINUED_RUN}' && {DETAIL}.dataset.status === 'finished'", timeout_ms=120_000)
    offer = panel.locator("[data-testid=fluxlab-continue]")
    offer.wait_for(state="visible")
    ui.wait_for("() => document.querySelector('[data-testid=fluxlab-continue]').innerText.includes('Finished at step 2')")
    ui.shot("07_finished_run_offers_more_steps")

    panel.locator("[data-testid=fluxlab-continue-steps]").fill("3")
    panel.locator("[data-action=continue]").click()
    assert "train_steps 5" in ui.wait_toast(f"Continuing {CONTINUED_RUN}")
    ui.wait_for(f"() => {DETAIL}.dataset.status === 'finished' && ({STEP})() === 5", timeout_ms=120_000)
    started = [(e["start_step"], e["total_steps"]) for e in browser_client.get_json(f"/fluxlab/runs/{CONTINUED_RUN}")["events"]
               if e["kind"] == "started"]
    assert started == [(0, 2), (2, 5)], started
    assert ui.evaluate("() => window.app.graph.nodes.find((n) => n.type === 'TrainLoRA').widgets"
                       ".find((w) => w.name === 'train_steps').value") == 5
    ui.shot("08_continued_to_step_5")

    # Without that run's TrainLoRA on the canvas the offer says what to open instead of queueing.
    ui.evaluate("() => window.app.graph.clear()")
    panel.locator("[data-action=continue]").click()
    assert "no TrainLoRA node in the open workflow has run_name 'continued_run'" in ui.wait_toast(f"Cannot continue {CONTINUED_RUN}")
