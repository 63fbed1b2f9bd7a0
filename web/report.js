// The dataset report (core/data/report.py `DatasetReport.data`, sent as a dataset_report event)
// rendered as a short summary with the problems first: what a user must fix before training.
import { h } from "./dom.js";

function list(items) {
    const ul = h("ul");
    ul.append(...items.map((item) => h("li", {}, item)));
    return ul;
}

/** A DOM fragment for `report` (null: "not reported yet"). Unknown shapes fall back to JSON. */
export function renderDatasetReport(report) {
    const root = document.createDocumentFragment();
    if (!report) {
        root.append(h("p", { className: "fluxlab-muted" }, "No dataset report for this run."));
        return root;
    }
    if (typeof report.images !== "number") {
        root.append(h("pre", {}, JSON.stringify(report, null, 2)));
        return root;
    }
    const warnings = [];
    const captions = report.captions ?? {};
    for (const item of report.rejected ?? []) warnings.push(`Rejected ${item.file}: ${item.reason}`);
    for (const group of report.duplicates ?? []) warnings.push(`Same picture twice: ${group.join(" = ")}`);
    for (const item of captions.missing ?? []) warnings.push(`No caption file for ${item.image}: used ${item.used} "${item.caption}"`);
    for (const path of captions.empty ?? []) warnings.push(`Empty caption: ${path}`);
    for (const item of report.cache?.damaged_rebuilt ?? []) warnings.push(`Damaged cache entry rebuilt: ${item.file} (${item.reason})`);
    if (warnings.length) {
        root.append(h("p", { className: "fluxlab-warning" }, `${warnings.length} warning${warnings.length > 1 ? "s" : ""}:`), list(warnings));
    }
    const lines = [
        `${report.images} images, ${report.samples_per_epoch} samples per epoch (repeats and resolutions included)`,
        `Captions from files: ${captions.from_file ?? "?"} / ${report.images}`
            + (captions.with_trigger !== null && captions.with_trigger !== undefined ? `; with the trigger: ${captions.with_trigger}` : ""),
        `Buckets: ${Object.entries(report.buckets ?? {}).map(([name, n]) => `${name} ×${n}`).join(", ") || "–"}`,
        `Steps per epoch at batch ${report.batch_size}: ${report.steps_per_epoch}; suggested (${report.preset}): `
            + `${report.suggested_steps} steps (~${report.suggested_epochs} epochs)`,
    ];
    if (typeof report.train_steps === "number") lines.push(`This run trains ${report.train_steps} steps (${report.epochs} epochs)`);
    if (report.cache) {
        lines.push(`Cache: ${report.cache.latents_encoded} latents encoded, ${report.cache.latents_reused} reused`);
    }
    if ((report.ignored_files ?? []).length) lines.push(`Ignored files: ${report.ignored_files.join(", ")}`);
    root.append(list(lines));
    return root;
}
