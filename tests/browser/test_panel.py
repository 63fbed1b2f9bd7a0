"""The Flux LoRA Lab sidebar panel in a real browser against the real server.

In file order (one server per browser session): the empty state before any run exists; a past run
(an events.jsonl written by core.events.EventLog, as a run from an earlier server leaves it) drawn
from its history; a live TrainLoRA run on the tiny model, queued over HTTP, watched as the chart
gains points and the step count rises, paused, resumed and stopped from the panel's buttons, with
the badge and the toast; then a second browser shows the whole history.
"""

from __future__ import annotations

import pytest
from PIL import Image

from tests.e2e.test_training import make_dataset, training_graph

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


def write_past_run(server) -> None:
    """A finished run's folder as TrainLoRA leaves it: events.jsonl (+ previews on disk)."""
    from flux_lora_lab.core import events as ev

    folder = server.base_dir / "output" / "fluxlab" / PAST_RUN
    checkpoint = folder / f"checkpoint_{PAST_STEPS:06d}"
    checkpoint.mkdir(parents=True)
    for i, colour in enumerate([(200, 60, 40), (40, 90, 200)]):
        Image.new("RGB", (64, 64), colour).save(checkpoint / f"preview_{i}.png")
    log = ev.EventLog(folder / "events.jsonl")
    log.append(ev.DatasetReport(report={
        "images": 3, "samples_per_epoch": 3, "folders": [], "buckets": {"64px 1x1": 3},
        "captions": {"from_file": 2, "missing": [{"image": "c.png", "used": "trigger_only", "caption": "ohwx"}],
                     "with_trigger": 3, "empty": []},
        "duplicates": [], "rejected": [{"file": "broken.png", "reason": "cannot be decoded"}], "ignored_files": [],
        "cache": {"latents_encoded": 3, "latents_reused": 0, "texts_encoded": 3, "texts_reused": 0, "damaged_rebuilt": []},
        "batch_size": 1, "steps_per_epoch": 3, "suggested_steps": 300, "suggested_epochs": 100.0, "preset": "concept"}))
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
    # Previews come through the run's file route and really load.
    ui.wait_for("() => [...document.querySelectorAll('[data-testid=fluxlab-previews] img')]"
                ".filter(img => img.complete && img.naturalWidth === 64).length === 2")
    panel.locator("[data-testid=fluxlab-detail] .fluxlab-report-box summary").click()
    report = ui.text("fluxlab-dataset")
    assert "3 images" in report and "Rejected broken.png" in report and "No caption file for c.png" in report
    # A finished run offers no controls.
    assert all(panel.locator(f"[data-action={a}]").is_disabled() for a in ("pause", "resume", "checkpoint", "stop"))
    ui.shot("02_past_run_history")


def test_live_run_pause_resume_stop(open_ui, browser_server, browser_client):
    make_dataset(browser_server)
    ui = open_ui()
    panel = ui.open_panel()
    # Long enough never to end by itself within the test; the panel's Stop ends it.
    prompt_id = browser_client.queue(training_graph(browser_client, LIVE_RUN, mode="background", steps=100000,
                                                    run_save_every=10, previews=True, run_sample_every=10))
    browser_client.wait(prompt_id, timeout=120)  # background mode: the prompt ends once training is under way
    panel.locator(f".fluxlab-run[data-run-id={LIVE_RUN}]").wait_for()
    panel.locator(f".fluxlab-run[data-run-id={LIVE_RUN}]").click()

    ui.wait_for(f"() => ({STEP})() >= 3 && ({POINTS})() >= 3")
    first_step, first_points = ui.evaluate(STEP), ui.evaluate(POINTS)
    ui.wait_for(f"() => ({STEP})() >= {first_step + 5} && ({POINTS})() >= {first_points + 5}")
    assert ui.text("fluxlab-status") == "running"
    assert "it/s" in ui.text("fluxlab-its") and ui.text("fluxlab-eta") != "–" and "RAM" in ui.text("fluxlab-memory")
    assert ui.text("fluxlab-step").endswith("/ 100000")
    ui.wait_for("() => /^\\d+%$/.test(document.querySelector('.fluxlab-tab-button')?.innerText.trim())")
    ui.wait_for("() => document.querySelectorAll('[data-testid=fluxlab-previews] img').length > 0")
    assert panel.locator("[data-action=pause]").is_enabled() and panel.locator("[data-action=resume]").is_disabled()
    ui.shot("03_live_training")

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
