"""The panel's pure modules (web/runs.js, web/chart.js, web/chart_scale.js, web/gallery_pairs.js,
web/ab_stage.js, web/ab_widget.js, web/config_view.js) imported as ES modules in chromium, on cases
the end-to-end tests do not reach: records arriving twice or with a gap, a resumed session
overwriting steps, a control answer that arrives after the run ended, smoothing that starts where
the raw curve starts, axis ticks on linear and log scales, which preview prompts pair up as
trigger / no-trigger, the A/B picture's fitted box and divider, and the compare-grid shapes ComfyUI
can deliver."""

from __future__ import annotations

import pytest

from scripts.comfy_server import PACK_DIRNAME

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CASES = """async (base) => {
    const runs = await import(`${base}/runs.js`);
    const chart = await import(`${base}/chart.js`);
    const ab = await import(`${base}/ab_widget.js`);
    const out = {};
    const run = new runs.RunState({ run_id: "r", status: "running", live: true, step: null, total_steps: null });
    run.loading = true; // the panel asked for the history: live records wait for it
    out.beforeHistory = run.apply([{ seq: 5, kind: "step", step: 3, total: 10, loss: 1 }]);
    out.summaryStep = run.step;
    run.applyDetail({ run_id: "r", status: "running", live: true, events: [
        { seq: 0, kind: "started", total_steps: 10, start_step: 0 },
        { seq: 1, kind: "step", step: 1, total: 10, loss: 3 },
        { seq: 2, kind: "step", step: 2, total: 10, loss: 2 },
    ] });
    out.afterDetail = [run.lastSeq, run.losses.length];          // seq 5 waits: 3 and 4 are missing
    out.duplicate = run.apply([{ seq: 2, kind: "step", step: 2, total: 10, loss: 2 }]);
    out.gap = run.apply([{ seq: 4, kind: "step", step: 4, total: 10, loss: 1 }]);
    out.resume = run.apply([
        { seq: 3, kind: "paused", step: 2 },
        { seq: 4, kind: "started", total_steps: 10, start_step: 1 },  // resumed from step 1
        { seq: 5, kind: "step", step: 2, total: 10, loss: 0.5 },
    ]);
    out.losses = run.losses.map((p) => [p.step, p.loss]);
    out.percent = run.percent;
    out.actions = [...runs.allowedActions(run)].sort();
    out.finished = run.apply([{ seq: 6, kind: "finished", step: 2, stopped_early: true, lora_path: null }]);
    out.status = [run.status, run.live, [...runs.allowedActions(run)]];
    // The stop request's answer ("stopping") arriving after the run's own `finished` record.
    run.setServerSummary({ status: "stopping" });
    out.staleAnswer = [run.status, run.live];
    run.apply([{ seq: 7, kind: "started", total_steps: 20, start_step: 2 }]);  // queued again: live again
    run.setServerSummary({ status: "paused", live: true });
    out.resumedAgain = [run.status, run.live];
    out.smooth = chart.smooth([2, 2, 2, null, 4], 0.9);
    const grid = { fluxlab_compare: [{ run_id: "r1", rows: [{ label: "base", checkpoint: "base", step: null, lora_path: null },
        { label: "step 4", checkpoint: "checkpoint_000004", step: 4, lora_path: "/o/fluxlab/r1/checkpoint_000004/lora.safetensors" }],
        columns: [{ prompt: "p" }], seed: 7, cells: [[{ filename: "a.png" }], [{ filename: "b.png" }]] }],
        images: [{ filename: "grid.png" }] };
    const parsed = ab.parseCompareOutput(grid);
    out.parsed = [parsed.rows.length, parsed.seed, parsed.runId];
    out.runIdFromPath = ab.runIdOf({ lora_path: "C:\\\\out\\\\fluxlab\\\\r2\\\\checkpoint_000010\\\\lora.safetensors" }, { runId: null });
    out.runIdFinal = ab.runIdOf({ lora_path: "/out/fluxlab/r3/lora_final.safetensors" }, { runId: null });
    out.notAGrid = ab.parseCompareOutput({ images: [{ filename: "x.png" }] });
    out.grid = parsed.grid;
    return out;
}"""


def test_pure_modules(chromium, browser_server):
    page = chromium.new_page()
    try:
        page.goto(f"{browser_server.url}/extensions/{PACK_DIRNAME}/icon.svg")  # same origin for the imports
        out = page.evaluate(CASES, f"{browser_server.url}/extensions/{PACK_DIRNAME}")
    finally:
        page.close()
    assert out["beforeHistory"] == "history" and out["summaryStep"] == 3
    assert out["afterDetail"] == [2, 2]
    assert out["duplicate"] == 0 and out["gap"] == "gap"
    assert out["resume"] == 3
    assert out["losses"] == [[1, 3], [2, 0.5]], "a resumed session replaces the steps after its start"
    assert out["percent"] == 20 and out["actions"] == ["checkpoint", "pause", "stop"]
    assert out["finished"] == 1 and out["status"] == ["stopped", False, []]
    assert out["staleAnswer"] == ["stopped", False], "a late control answer must not undo the end the records showed"
    assert out["resumedAgain"] == ["paused", True]
    assert out["smooth"][:3] == pytest.approx([2, 2, 2]) and out["smooth"][3] is None
    assert 2 < out["smooth"][4] < 4
    assert out["parsed"] == [2, 7, "r1"]
    assert out["runIdFromPath"] == "r2" and out["runIdFinal"] == "r3"
    assert out["notAGrid"] is None
    assert out["grid"] == {"filename": "grid.png"}, "the grid image comes with the compare data"


MORE_CASES = """async (base) => {
    const scale = await import(`${base}/chart_scale.js`);
    const pairs = await import(`${base}/gallery_pairs.js`);
    const stage = await import(`${base}/ab_stage.js`);
    const config = await import(`${base}/config_view.js`);
    const runs = await import(`${base}/runs.js`);
    const out = {};
    out.linear = scale.niceTicks(0.13, 0.61, 5);
    out.steps = scale.niceTicks(1, 1000, 5);
    out.single = scale.niceTicks(3, 3);
    out.logWide = scale.logTicks(0.004, 2.5);
    out.logTwo = scale.logTicks(0.05, 0.9);
    out.logNarrow = scale.logTicks(0.18, 0.31, 4);
    out.labels = [0.3, 0.00012, 250000, 2].map(scale.tickLabel);
    const lin = scale.makeScale(0, 10, 0, 100);
    const log = scale.makeScale(0.01, 1, 100, 0, true);
    out.maps = [lin.map(5), log.map(0.1), log.map(1), log.map(0), log.map(-1), log.map(null)];
    const flat = scale.makeScale(2, 2, 0, 100);
    out.flat = [flat.map(2), flat.domain];
    const img = (prompt, path = prompt) => ({ path, prompt });
    const show = (rows) => rows.map((r) => (r.single ? [r.single.prompt] : [r.trigger.prompt, r.plain.prompt]));
    out.pairDropped = show(pairs.pairPrompts([img("a photo of ohwx"), img("a photo of"), img("a red fox")], "ohwx"));
    out.pairClass = show(pairs.pairPrompts([img("ohwx cat on a sofa"), img("cat on a sofa")], "ohwx", "cat"));
    out.pairPlainFirst = show(pairs.pairPrompts([img("a red fox"), img("ohwx, in the snow"), img("a red fox, ohwx")], "ohwx"));
    out.pairNoTrigger = show(pairs.pairPrompts([img("a photo of ohwx"), img("a photo of")], null));
    out.pairNoPrompt = show(pairs.pairPrompts([{ path: "x.png", prompt: null }, img("ohwx")], "ohwx"));
    out.notAWord = [pairs.hasTrigger("ohwxy dog", "ohwx"), pairs.hasTrigger("(ohwx) dog", "ohwx"), pairs.hasTrigger("x", "")];
    out.fitWide = stage.fitBox(400, 200, 64, 64);
    out.fitTall = stage.fitBox(100, 300, 64, 32);
    out.fitNoImage = stage.fitBox(100, 80, 0, 0);
    out.split = [stage.splitAt(150, 100, 200), stage.splitAt(90, 100, 200), stage.splitAt(390, 100, 200), stage.splitAt(5, 0, 0)];
    out.values = [config.configValue([0.9, 0.999]), config.configValue(""), config.configValue(null), config.configValue(false), config.configValue([])];
    out.gpu = [runs.formatGpuMemory({ ram_mb: 800 }), runs.formatGpuMemory({ gpu_mb: 3174.4, gpu_peak_mb: 3481.6 }), runs.formatGpuMemory(null),
               runs.formatGpuMemory({ gpu_mb: 0 })];
    out.ram = [runs.formatRam({ ram_mb: 812.2 }), runs.formatRam({}), runs.formatRam(undefined)];
    return out;
}"""


def test_chart_gallery_and_ab_maths(chromium, browser_server):
    page = chromium.new_page()
    try:
        page.goto(f"{browser_server.url}/extensions/{PACK_DIRNAME}/icon.svg")
        out = page.evaluate(MORE_CASES, f"{browser_server.url}/extensions/{PACK_DIRNAME}")
    finally:
        page.close()
    assert out["linear"] == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert out["steps"] == [200, 400, 600, 800, 1000]
    assert out["single"] == [3]
    assert out["logWide"] == [0.01, 0.1, 1], "a log axis over 3 decades ticks its powers of ten"
    assert out["logTwo"] == [0.05, 0.1, 0.2, 0.5], "under two decades: 1, 2, 5 x 10^k"
    assert out["logNarrow"] and all(0.18 <= t <= 0.31 for t in out["logNarrow"]), "under a decade: linear ticks inside"
    assert out["labels"] == ["0.3", "1e-4", "3e5", "2"]
    assert out["maps"][:3] == pytest.approx([50, 50, 0]) and out["maps"][3:] == [None, None, None]
    assert out["flat"][0] == pytest.approx(50) and out["flat"][1] == [1, 3], "one value still gets an axis around it"
    assert out["pairDropped"] == [["a photo of ohwx", "a photo of"], ["a red fox"]]
    assert out["pairClass"] == [["ohwx cat on a sofa", "cat on a sofa"]]
    assert out["pairPlainFirst"] == [["a red fox, ohwx", "a red fox"], ["ohwx, in the snow"]]
    assert out["pairNoTrigger"] == [["a photo of ohwx"], ["a photo of"]], "no trigger known: nothing pairs"
    assert out["pairNoPrompt"] == [[None], ["ohwx"]]
    assert out["notAWord"] == [False, True, False]
    assert out["fitWide"] == {"left": 100, "top": 0, "width": 200, "height": 200}
    assert out["fitTall"] == {"left": 0, "top": 125, "width": 100, "height": 50}
    assert out["fitNoImage"] == {"left": 0, "top": 0, "width": 100, "height": 80}
    assert out["split"] == [25, 0, 100, 50], "the divider follows the picture, clamped at its edges"
    assert out["values"] == ["0.9, 0.999", '""', "none", "false", "[]"]
    assert out["gpu"] == [None, "3.1 GB (peak 3.4 GB)", None, "0 MB"], "no GPU: nothing (a real GPU at 0 MB still shows)"
    assert out["ram"] == ["812 MB", "–", "–"]
