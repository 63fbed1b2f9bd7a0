"""The panel's views of a run in a real browser against the real server, on run folders as TrainLoRA
leaves them (events.jsonl written by core/run/event_log.EventLog, preview PNGs on disk): the loss
chart (ticks, grid, log scale, smoothing slider, resized by its corner), the gallery of every preview
step with its prompts (trigger / no-trigger side by side, full size on click, the same after a page
reload), the run's config by section, and GPU memory only for a run that had a GPU.
"""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

GALLERY_RUN = "gallery_run"
GPU_RUN = "gpu_run"
EVAL_RUN = "eval_run"
NO_EVAL_RUN = "no_eval_run"
# step -> the held-out set's eval loss TrainLoRA scores there (0: the base model, before step 1).
EVAL_LOSSES = {0: 1.8, 20: 0.9, 40: 0.2, 60: 0.35}
STEPS = 60
PROMPTS = ("a photo of ohwx cat", "a photo of cat", "a red fox")
# step -> the folder TrainLoRA renders that step's previews into (baseline, checkpoints, samples).
PREVIEW_FOLDERS = {0: "baseline", 20: "checkpoint_000020", 40: "samples/step_000040", 60: "checkpoint_000060"}
CHART = "document.querySelector('[data-testid=fluxlab-chart]')"


def _config(trigger: str, class_word: str) -> dict:
    from flux_lora_lab.core.config import TrainConfig

    return TrainConfig().with_overrides({"run": {"trigger": trigger, "save_every": 20, "sample_every": 20},
                                         "dop": {"enabled": True, "class_word": class_word},
                                         "lora": {"rank": 16}}).to_dict()


def write_run(server, run_id: str, *, memory: dict, previews: bool, evals: dict | None = None) -> None:
    """A finished run: a loss falling over two decades (log scale has something to show), noisy
    (smoothing has something to smooth), previews of three prompts at four steps, and the eval
    loss `evals` ({step: loss}) where given."""
    from flux_lora_lab.core.run import events as ev
    from flux_lora_lab.core.run.event_log import EventLog

    folder = server.base_dir / "output" / "fluxlab" / run_id
    folder.mkdir(parents=True)
    log = EventLog(folder / "events.jsonl")
    log.append(ev.Started(run_id=run_id, total_steps=STEPS, config=_config("ohwx", "cat")))

    def preview(step: int) -> None:
        images = []
        for i in range(len(PROMPTS)):
            path = f"{PREVIEW_FOLDERS[step]}/prompt_{i}_64x64.png"
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            picture = Image.new("RGB", (64, 64), (40 + 60 * i, 40 + 3 * step, 200 - 3 * step))
            ImageDraw.Draw(picture).text((4, 4), f"{step}/{i}", fill=(255, 255, 255))
            picture.save(folder / path)
            images.append(path)
        log.append(ev.Preview(step=step, images=tuple(images), prompts=PROMPTS))

    if previews:
        preview(0)
    if evals and 0 in evals:
        log.append(ev.EvalLoss(step=0, loss=evals[0]))
    for step in range(1, STEPS + 1):
        loss = 2.0 * math.exp(-step / 12) + 0.01 + 0.3 * math.exp(-step / 12) * math.sin(step * 2.3)
        log.append(ev.Step(step=step, total=STEPS, loss=loss, lr=1e-4, its=4.0, eta_s=(STEPS - step) / 4, memory=memory))
        if previews and step in PREVIEW_FOLDERS:
            preview(step)
        if evals and step in evals:
            log.append(ev.EvalLoss(step=step, loss=evals[step]))
    log.append(ev.Finished(step=STEPS, lora_path=str(folder / "lora_final.safetensors")))
    log.close()


def select(ui, run_id: str):
    panel = ui.open_panel()
    panel.locator(f".fluxlab-run[data-run-id={run_id}]").click()
    ui.wait_for(f"() => document.querySelector('[data-testid=fluxlab-detail]')?.dataset.runId === '{run_id}'"
                f" && {CHART}.dataset.points === '{STEPS}'")
    return panel


def test_loss_chart_ticks_log_scale_smoothing_and_resize(open_ui, browser_server):
    write_run(browser_server, GALLERY_RUN, memory={"ram_mb": 812.0}, previews=True)
    ui = open_ui()
    panel = select(ui, GALLERY_RUN)
    chart = ui.evaluate(f"""() => ({{ y: {CHART}.dataset.yTicks.split(','), x: {CHART}.dataset.xTicks.split(','),
        grid: {CHART}.querySelectorAll('.fluxlab-chart-grid').length, width: {CHART}.getBoundingClientRect().width,
        height: Number({CHART}.getAttribute('height')), smooth: {CHART}.querySelector('.fluxlab-chart-smooth').getAttribute('points') }})""")
    assert len(chart["y"]) >= 3 and len(chart["x"]) >= 3, chart
    assert chart["grid"] == len(chart["y"]) + len(chart["x"]), "a grid line at every tick"
    box_width = panel.locator("[data-testid=fluxlab-chart-box]").bounding_box()["width"]
    assert abs(chart["width"] - box_width) < 2 and chart["width"] > 200, "the chart fills the panel's width"
    ui.shot("30_chart_linear_ticks_grid")

    panel.locator("[data-testid=fluxlab-chart-log]").check()
    ui.wait_for(f"() => {CHART}.dataset.log === 'true'")
    log_ticks = ui.evaluate(f"() => {CHART}.dataset.yTicks.split(',')")
    assert log_ticks != chart["y"] and {"0.1", "1"} <= set(log_ticks), log_ticks
    ui.shot("31_chart_log_scale")

    slider = panel.locator("[data-testid=fluxlab-chart-smoothing]")
    assert ui.text("fluxlab-chart-smoothing-value").startswith("auto")
    slider.fill("0")
    ui.wait_for(f"() => {CHART}.dataset.smoothing === '0.000'")
    raw = ui.evaluate(f"() => [{CHART}.querySelector('.fluxlab-chart-raw').getAttribute('points'),"
                      f" {CHART}.querySelector('.fluxlab-chart-smooth').getAttribute('points')]")
    assert raw[0] == raw[1], "smoothing 0 draws the raw loss"
    slider.fill("0.95")
    ui.wait_for(f"() => {CHART}.dataset.smoothing === '0.950'")
    assert ui.text("fluxlab-chart-smoothing-value") == "0.95"
    assert ui.evaluate(f"() => {CHART}.querySelector('.fluxlab-chart-smooth').getAttribute('points')") != raw[1]

    box = panel.locator("[data-testid=fluxlab-chart-box]")
    box.scroll_into_view_if_needed()
    before = box.bounding_box()
    # The box's own resize handle, bottom-right, dragged down as a user would.
    ui.page.mouse.move(before["x"] + before["width"] - 3, before["y"] + before["height"] - 3)
    ui.page.mouse.down()
    ui.page.mouse.move(before["x"] + before["width"] - 3, before["y"] + before["height"] + 160, steps=8)
    ui.page.mouse.up()
    ui.wait_for(f"() => Number({CHART}.getAttribute('height')) > {chart['height'] + 100}")
    assert len(ui.evaluate(f"() => {CHART}.dataset.yTicks.split(',')")) >= len(log_ticks), "a taller chart keeps its ticks"
    box.scroll_into_view_if_needed()
    ui.shot("32_chart_resized_smoothing_095")


def test_eval_loss_drawn_on_the_training_loss_axes(open_ui, browser_server):
    """SimpleTuner's stable eval loss, plotted with the training loss: one dot per scored step on
    the same axes (step 0, the base model, included), joined, unsmoothed; a run without eval data
    draws none and hides its legend entry."""
    write_run(browser_server, EVAL_RUN, memory={"ram_mb": 812.0}, previews=False, evals=EVAL_LOSSES)
    write_run(browser_server, NO_EVAL_RUN, memory={"ram_mb": 812.0}, previews=False)
    ui = open_ui()
    select(ui, EVAL_RUN)
    ui.wait_for(f"() => {CHART}.dataset.evalPoints === '{len(EVAL_LOSSES)}'")
    drawn = ui.evaluate(f"""() => ({{
        dots: [...{CHART}.querySelectorAll('.fluxlab-chart-eval-dot')].map((c) => [Number(c.getAttribute('cx')),
            Number(c.getAttribute('cy')), c.querySelector('title').textContent]),
        line: {CHART}.querySelector('.fluxlab-chart-eval').getAttribute('points').split(' ').length,
        raw: {CHART}.querySelector('.fluxlab-chart-raw').getAttribute('points').split(' ').map((p) => p.split(',').map(Number)),
        legend: getComputedStyle(document.querySelector('.legend-eval').parentElement).display }})""")
    assert drawn["line"] == len(EVAL_LOSSES) and drawn["legend"] != "none", drawn
    xs, ys, titles = zip(*drawn["dots"])
    assert list(xs) == sorted(xs) and len(set(xs)) == len(xs), "one dot per step, in step order"
    # Screen y grows downward: a higher loss is drawn higher up, in the order of EVAL_LOSSES.
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    assert order == sorted(range(len(ys)), key=lambda i: -list(EVAL_LOSSES.values())[i]), (ys, EVAL_LOSSES)
    # Shared axes: the raw training loss at step 20 (index 19) sits at the eval dot of step 20's x.
    assert abs(drawn["raw"][19][0] - xs[1]) < 0.2, (drawn["raw"][19], xs[1])
    assert "at step 40" in titles[2] and "0.2" in titles[2], titles
    ui.shot("32b_chart_eval_loss_with_training_loss")

    select(ui, NO_EVAL_RUN)
    assert ui.evaluate(f"() => [{CHART}.dataset.evalPoints, {CHART}.querySelectorAll('.fluxlab-chart-eval-dot').length,"
                       " getComputedStyle(document.querySelector('.legend-eval').parentElement).display]") == ["0", 0, "none"]


def test_gallery_every_step_with_prompts_pairs_and_full_size(open_ui, browser_server):
    ui = open_ui()
    panel = select(ui, GALLERY_RUN)
    gallery = panel.locator("[data-testid=fluxlab-gallery]")
    ui.wait_for("() => document.querySelector('[data-testid=fluxlab-gallery]').dataset.steps === '0,20,40,60'")
    assert gallery.locator("img").count() == 12
    gallery.scroll_into_view_if_needed()
    # Tiles load lazily (a long run has hundreds): the newest step's, on screen, have loaded.
    ui.wait_for("() => [...document.querySelectorAll('[data-testid=fluxlab-gallery] .fluxlab-gallery-step:first-child img')]"
                ".every((img) => img.complete && img.naturalWidth === 64)")
    assert gallery.locator(".fluxlab-gallery-step h5").all_inner_texts() == [
        "Step 60", "Step 40", "Step 20", "Baseline (before training)"]
    newest = gallery.locator(".fluxlab-gallery-step").first
    pair = newest.locator(".fluxlab-gallery-pair")
    assert pair.count() == 1
    assert [t.lower() for t in pair.locator(".fluxlab-gallery-tag").all_inner_texts()] == ["with ohwx", "without ohwx"]
    assert pair.locator("figcaption").all_inner_texts() == ["a photo of ohwx cat", "a photo of cat"]
    assert newest.locator("figcaption").all_inner_texts()[-1] == "a red fox"
    # Side by side: the two halves of a pair on one row.
    boxes = [pair.locator("figure").nth(i).bounding_box() for i in range(2)]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 1 and boxes[1]["x"] > boxes[0]["x"] + boxes[0]["width"] / 2
    gallery.scroll_into_view_if_needed()
    ui.shot("33_gallery_steps_trigger_vs_no_trigger")

    newest.locator("img").first.click()
    lightbox = ui.page.locator("[data-testid=fluxlab-lightbox]")
    lightbox.wait_for(state="visible")
    ui.wait_for("() => { const img = document.querySelector('[data-testid=fluxlab-lightbox] img');"
                " return img.complete && img.naturalWidth === 64 && img.getBoundingClientRect().width >= 400; }")
    assert "a photo of ohwx cat" in lightbox.inner_text() and "checkpoint_000060/prompt_0_64x64.png" in lightbox.inner_text()
    ui.shot("34_gallery_image_full_size")
    ui.page.keyboard.press("Escape")
    lightbox.wait_for(state="detached")

    # A reloaded page has the same gallery: it comes from the run folder, not from the page. The
    # reload cancels the old page's requests in flight (the panel polls its run list, tiles load
    # lazily): aborted GETs are not errors.
    ui.allow(r"^request failed: GET \S+: net::ERR_ABORTED$")
    ui.page.reload()
    ui.open()
    panel = select(ui, GALLERY_RUN)
    ui.wait_for("() => document.querySelector('[data-testid=fluxlab-gallery]')?.dataset.steps === '0,20,40,60'")


def test_config_by_section(open_ui, browser_server):
    ui = open_ui()
    panel = select(ui, GALLERY_RUN)
    box = panel.locator("[data-testid=fluxlab-config-box]")
    box.locator("summary").click()
    ui.wait_for("() => document.querySelectorAll('[data-testid=fluxlab-config] section').length > 0")
    sections = box.locator("section h5").all_inner_texts()
    assert sections == ["model", "lora", "optim", "flow", "dop", "train", "run"], sections
    rank = box.locator("tr[data-key='lora.rank']")
    assert rank.locator("td").inner_text() == "16" and "rank" in (rank.get_attribute("title") or "").lower()
    assert box.locator("tr[data-key='run.trigger'] td").inner_text() == "ohwx"
    assert box.locator("tr[data-key='dop.class_word'] td").inner_text() == "cat"
    box.scroll_into_view_if_needed()
    ui.shot("35_run_config_by_section")


def test_gpu_memory_only_where_there_is_a_gpu(open_ui, browser_server):
    write_run(browser_server, GPU_RUN, memory={"ram_mb": 2100.0, "gpu_mb": 3174.4, "gpu_peak_mb": 3481.6}, previews=False)
    ui = open_ui()
    panel = select(ui, GPU_RUN)
    gpu = panel.locator("[data-testid=fluxlab-gpu]")
    assert gpu.is_visible() and gpu.inner_text() == "3.1 GB (peak 3.4 GB)"
    assert ui.text("fluxlab-memory") == "2.1 GB"
    ui.shot("36_gpu_memory_of_a_gpu_run")
    # The CPU run (no gpu_mb in its step records) shows no GPU row at all, not "0".
    select(ui, GALLERY_RUN)
    assert not gpu.is_visible() and not panel.get_by_text("GPU memory").is_visible()
    assert ui.text("fluxlab-memory") == "812 MB"
