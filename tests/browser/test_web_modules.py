"""The panel's pure modules (web/runs.js, web/chart.js, web/ab_widget.js) imported as ES modules
in chromium, on cases the end-to-end tests do not reach: records arriving twice or with a gap,
a resumed session overwriting steps, a control answer that arrives after the run ended, smoothing
that starts where the raw curve starts, and the compare-grid shapes ComfyUI can deliver."""

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
