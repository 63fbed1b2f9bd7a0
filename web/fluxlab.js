// Flux LoRA Lab front-end entry: the ONE file that touches ComfyUI's `app` and `api`. It wires the
// feature modules (client, panel, A/B widget, TrainLoRA's settings, node texts) into ComfyUI: the
// sidebar tab with its progress badge, toasts, the websocket subscription, the A/B widget on
// CompareCheckpoints nodes, the preset fill and old-workflow migration of TrainLoRA, and the text
// TrainLoRA / DatasetFromFolder show after they run.
// ComfyUI imports every .js file of this folder; only this one registers anything.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { FluxLabClient } from "./client.js";
import { FluxLabPanel } from "./panel.js";
import { ABCompare } from "./ab_widget.js";
import { outputText, showText } from "./node_text.js";
import { applyPreset, followRank, isLegacy, migrateLegacy, presetTable, savedWidgetNames, setWidgets, SHIPPED_LAYOUTS,
    shippedValues, widgetDefaults } from "./train_settings.js";

const TAB_ID = "fluxlab";
const COMPARE_NODE = "CompareCheckpoints";
const TRAIN_NODE = "TrainLoRA";
const ADVANCED_NODE = "TrainLoRAAdvanced";
const DATASET_NODE = "DatasetFromFolder";
const AB_WIDGET = "fluxlab_ab"; // display-only: never serialized into the workflow or the prompt

function toast(severity, summary, detail) {
    const life = severity === "error" ? 12000 : 6000;
    app.extensionManager?.toast?.add({ severity, summary: `Flux LoRA Lab: ${summary}`, detail, life });
}

/** The live tab object: ComfyUI keeps tabs in a reactive store, so a badge set on the stored tab
 * (not on the object we registered) re-renders the icon. */
function setBadge(text) {
    const tab = app.extensionManager?.getSidebarTabs?.().find((t) => t.id === TAB_ID);
    if (tab && tab.iconBadge !== text) tab.iconBadge = text;
}

/** The badge shows the progress of the most recently active live run ("42%", also while paused),
 * none when no run is live. */
function progressBadge(runs) {
    const live = runs.filter((run) => run.live).sort((a, b) => (b.summary.updated_at ?? 0) - (a.summary.updated_at ?? 0));
    if (!live.length) return "";
    const run = live[0];
    return run.percent === null ? "…" : `${run.percent}%`;
}

function loadStyle() {
    const href = new URL("./style.css", import.meta.url).href;
    if (document.querySelector(`link[href="${href}"]`)) return;
    document.head.append(Object.assign(document.createElement("link"), { rel: "stylesheet", href }));
}

function widgetOf(node, name) {
    return node.widgets?.find((w) => w.name === name);
}

function setWidget(node, name, value) {
    const widget = widgetOf(node, name);
    widget.value = value;
    widget.callback?.(value);
}

/** Queue the open workflow's TrainLoRA of `runId` again (the panel's Continue / Resume): to
 * `totalSteps` train_steps (null: as it is), resuming the run's folder. */
async function continueRun(runId, totalSteps) {
    const nodes = (app.graph?.nodes ?? []).filter((n) => n.type === TRAIN_NODE
        && String(widgetOf(n, "run_name")?.value ?? "").trim() === runId);
    if (nodes.length !== 1) {
        const why = nodes.length
            ? `${nodes.length} TrainLoRA nodes in the open workflow have run_name '${runId}'; keep one`
            : `no TrainLoRA node in the open workflow has run_name '${runId}': open the workflow that trained it `
              + `(or set a TrainLoRA's run_name to '${runId}') and press the button again`;
        toast("error", `Cannot continue ${runId}`, why);
        return;
    }
    const [node] = nodes;
    const changes = [];
    if (totalSteps !== null) {
        setWidget(node, "train_steps", totalSteps);
        changes.push(`train_steps ${totalSteps}`);
    }
    if (widgetOf(node, "on_existing_run") && widgetOf(node, "on_existing_run").value !== "resume") {
        setWidget(node, "on_existing_run", "resume");
        changes.push("on_existing_run resume");
    }
    app.graph.setDirtyCanvas(true, true);
    await app.queuePrompt(0, 1);
    toast("info", `Continuing ${runId}`, `queued${changes.length ? ` with ${changes.join(", ")}` : " again"}`);
}

const client = new FluxLabClient(api);
let panel = null;

// Subscribe now, while ComfyUI imports this module: that is the only moment that comes before its
// websocket opens. The frontend imports the extensions, then opens the socket, and only later (after
// fetching every node definition) calls the `init` and `setup` hooks, while runs on the server keep
// broadcasting. Frontend 1.58 drops a message whose type has no listener yet with a console error
// ("Unknown message type fluxlab.step"), 1.32 with a warning. Records that come before the panel
// exists wait here (the newest EARLY_LIMIT; the history fetch covers anything older) and go to the
// panel in `setup`.
const EARLY_LIMIT = 500;
const early = [];
client.subscribe(
    (runId, record) => {
        if (panel) panel.handleRecord(runId, record);
        else if (early.push([runId, record]) > EARLY_LIMIT) early.shift();
    },
    () => panel?.handleReconnect(), // before setup there is nothing to refresh: setup lists the runs
);

let advancedDefaults = {}; // TrainLoRAAdvanced's widget defaults (its node definition)
const pendingAdvanced = []; // [TrainLoRA node, values] from migrated workflows: nodes to add once the graph is loaded

/** Chain `fn` after a node prototype's method. */
function after(proto, method, fn) {
    const original = proto[method];
    proto[method] = function () {
        const result = original?.apply(this, arguments);
        fn.apply(this, arguments);
        return result;
    };
}

/** TrainLoRA / DatasetFromFolder: the text after a run, old-layout migration, TrainLoRA's preset fill. */
function wireSettingsNode(nodeType, nodeData) {
    const table = presetTable(nodeData);
    after(nodeType.prototype, "onExecuted", function (output) {
        const text = outputText(output);
        if (text) showText(this, text);
    });
    after(nodeType.prototype, "onConfigure", function (info) {
        if (!isLegacy(nodeData.name, info?.widgets_values)) return;
        const current = savedWidgetNames(this);
        const { widgets, advanced } = migrateLegacy(nodeData.name, info.widgets_values, current, table, advancedDefaults);
        setWidgets(this, widgets);
        this.setSize([this.size[0], this.computeSize()[1]]); // the old layout's saved height was for 48 widgets
        if (Object.keys(advanced).length) pendingAdvanced.push([this, advanced]);
    });
    if (nodeData.name !== TRAIN_NODE) return;
    after(nodeType.prototype, "onNodeCreated", function () {
        const node = this;
        for (const w of node.widgets ?? []) { // frontend 1.32 does not label widgets with the input's display_name
            const label = nodeData.input?.required?.[w.name]?.[1]?.display_name;
            if (label && (!w.label || w.label === w.name)) w.label = label;
        }
        const preset = widgetOf(node, "preset");
        const rank = widgetOf(node, "lora_rank");
        const presetChanged = preset?.callback;
        if (preset) preset.callback = function (value) {
            applyPreset(node, table, value);
            node.fluxlabRank = widgetOf(node, "lora_rank")?.value;
            app.graph?.setDirtyCanvas(true, true);
            return presetChanged?.apply(this, arguments);
        };
        const rankChanged = rank?.callback;
        if (rank) rank.callback = function (value) {
            followRank(node, node.fluxlabRank ?? value, value);
            node.fluxlabRank = value;
            return rankChanged?.apply(this, arguments);
        };
    });
}

/** A node saved with an earlier shipped layout (the frontend put its values in by position, some one
 * slot off): every widget gets its saved value by name, a widget that layout lacked its default. */
function wireShippedLayouts(nodeType, nodeData) {
    const defaults = widgetDefaults(nodeData);
    after(nodeType.prototype, "onConfigure", function (info) {
        const current = savedWidgetNames(this);
        const saved = shippedValues(nodeData.name, info?.widgets_values, current);
        if (!saved) return;
        setWidgets(this, Object.fromEntries(current.map((name) => [name, name in saved ? saved[name] : defaults[name]])));
        this.setSize([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
    });
}

/** The advanced node a migrated TrainLoRA needs (its old workflow changed advanced settings), below it. */
function addMigratedAdvancedNodes() {
    for (const [train, values] of pendingAdvanced.splice(0)) {
        if (!train.graph) continue;
        const extra = globalThis.LiteGraph.createNode(ADVANCED_NODE);
        train.graph.add(extra);
        setWidgets(extra, values);
        extra.pos = [train.pos[0], train.pos[1] + train.size[1] + 60];
        extra.connect(0, train, train.findInputSlot("advanced"));
        toast("info", "Migrated an old TrainLoRA", `its changed advanced settings (${Object.keys(values).join(", ")}) `
            + `are now on an '${extra.title}' node connected to it`);
    }
}

app.registerExtension({
    name: "FluxLoRALab.Core",

    async afterConfigureGraph() {
        addMigratedAdvancedNodes();
    },

    async setup() {
        loadStyle();
        panel = new FluxLabPanel(client, { toast, continueRun, onProgress: (runs) => setBadge(progressBadge(runs)) });
        for (const [runId, record] of early.splice(0)) panel.handleRecord(runId, record);
        app.extensionManager.registerSidebarTab({
            id: TAB_ID,
            icon: "pi pi-chart-line",
            title: "Flux LoRA Lab",
            tooltip: "Flux LoRA Lab: training runs",
            type: "custom",
            iconBadge: "",
            render: (element) => panel.mount(element),
        });
        panel.refreshRuns(); // the badge and toasts work before the tab is ever opened
    },

    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (nodeData.name === ADVANCED_NODE) advancedDefaults = widgetDefaults(nodeData);
        if (nodeData.name === TRAIN_NODE || nodeData.name === DATASET_NODE) wireSettingsNode(nodeType, nodeData);
        if (nodeData.name in SHIPPED_LAYOUTS) wireShippedLayouts(nodeType, nodeData);
        if (nodeData.name !== COMPARE_NODE) return;
        const onNodeCreated = nodeType.prototype.onNodeCreated;
        nodeType.prototype.onNodeCreated = function () {
            const result = onNodeCreated?.apply(this, arguments);
            const view = new ABCompare(client, { toast });
            const widget = this.addDOMWidget(AB_WIDGET, "fluxlab-ab", view.element, {
                serialize: false, // options.serialize: left out of the API prompt
                hideOnZoom: false,
                getValue: () => undefined,
                setValue: () => {},
                getMinHeight: () => 520, // pickers, the picture and the grid under it
            });
            widget.serialize = false; // widget.serialize: left out of the workflow's widgets_values
            this.fluxlabAB = view;
            view.render();
            return result;
        };
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (output) {
            onExecuted?.apply(this, arguments);
            this.fluxlabAB?.update(output);
        };
    },
});
