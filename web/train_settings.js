// TrainLoRA's widgets in the browser: choosing a preset fills the essentials with that preset's values
// (the table rides in the node's schema: nodes/train.py `preset_input`, one source in core/presets.py),
// alpha follows rank while it equals it, and workflows saved with the first layouts are migrated:
// TrainLoRA's 48 widgets of "-1 / 'preset' = the preset's value" become real values, its changed
// advanced settings move to a new TrainLoRAAdvanced node, and DatasetFromFolder loses its `preset`.
// Workflows saved with a later shipped layout (SHIPPED_LAYOUTS) get their values back by name.
// Pure functions over plain node-like objects ({ widgets: [{ name, value }] }), so a test can run them.

export const PRESET_VALUES_KEY = "fluxlab_preset_values";

// The first layouts' widget names, in their saved order (frozen: they describe files on users' disks).
export const LEGACY_LAYOUTS = {
    TrainLoRA: ["preset", "run_name", "mode", "train_steps", "train_batch_size", "train_seed", "train_blocks_to_swap",
        "train_ema", "train_ema_decay", "lora_rank", "lora_alpha", "lora_dropout", "lora_init", "lora_targets",
        "lora_train_modulation", "lora_blocks", "lora_exclude_blocks", "lora_init_lora", "optim_optimizer",
        "optim_learning_rate", "optim_weight_decay", "optim_beta1", "optim_beta2", "optim_eps", "optim_lr_scheduler",
        "optim_warmup_steps", "optim_gradient_accumulation", "optim_max_grad_norm", "flow_timestep_sampling",
        "flow_sigmoid_scale", "flow_shift", "flow_content_style_bias", "flow_loss_weighting", "flow_guidance",
        "dop_enabled", "dop_multiplier", "dop_every_n_steps", "run_save_every", "run_max_step_saves_to_keep",
        "run_sample_every", "run_lora_format", "preview_prompts", "preview_width", "preview_height", "preview_steps",
        "preview_seed", "preview_guidance", "on_existing_run"],
    DatasetFromFolder: ["folder", "resolutions", "repeats", "recursive", "caption_ext", "missing_caption", "trigger",
        "class_word", "caption_dropout", "shuffle_tokens", "keep_tokens", "crop", "no_upscale", "square_only",
        "alpha_as_mask", "min_size", "small_images", "bad_files", "preset", "seed"],
};
// Every later layout that has shipped, by node type, each in its saved order (frozen, as above). The
// frontend restores widgets_values by position, so a node that gained a widget in the middle would
// read its old values one slot off; a saved array of one of these lengths is put back by name.
export const SHIPPED_LAYOUTS = {
    TrainLoRAAdvanced: [
        // stop 18 (2026-12-03): before the text-encoder settings.
        ["train_blocks_to_swap", "train_ema", "train_ema_decay", "train_epochs", "lora_dropout", "lora_init",
            "lora_train_modulation", "lora_blocks", "lora_exclude_blocks", "lora_init_lora", "lora_network",
            "lora_lokr_factor", "lora_lokr_full_matrix", "lora_lokr_decompose_both", "optim_weight_decay", "optim_beta1",
            "optim_beta2", "optim_eps", "optim_lr_scheduler", "optim_warmup_steps", "optim_max_grad_norm",
            "flow_sigmoid_scale", "flow_shift", "flow_content_style_bias", "flow_loss_weighting", "flow_guidance",
            "dop_multiplier", "run_max_step_saves_to_keep", "run_eval_timesteps", "run_lora_format", "run_save_dtype",
            "preview_seed", "preview_guidance", "preview_negative_prompt", "preview_real_cfg", "preview_more_sizes"],
    ],
};
const LEGACY_UNSET = new Set([-1, "preset"]); // the first TrainLoRA's "use the preset's value"

/** The preset table from a node definition (/object_info's entry), or null. */
export function presetTable(nodeData) {
    const spec = nodeData?.input?.required?.preset;
    return (Array.isArray(spec) && spec[1]?.[PRESET_VALUES_KEY]) || null;
}

/** {widget name: default} of a node definition's widgets (inputs with a default). */
export function widgetDefaults(nodeData) {
    const out = {};
    for (const section of ["required", "optional"]) {
        for (const [name, spec] of Object.entries(nodeData?.input?.[section] ?? {})) {
            if (Array.isArray(spec) && spec[1] && "default" in spec[1]) out[name] = spec[1].default;
        }
    }
    return out;
}

const widget = (node, name) => node.widgets?.find((w) => w.name === name);

/** The names of the node's saved widgets, in widgets_values' order. */
export const savedWidgetNames = (node) => (node.widgets ?? []).filter((w) => w.serialize !== false).map((w) => w.name);

/** Put `values` ({name: value}) into the node's widgets of those names; returns the names set. */
export function setWidgets(node, values) {
    const set = [];
    for (const [name, value] of Object.entries(values)) {
        const w = widget(node, name);
        if (!w) continue;
        w.value = value;
        set.push(name);
    }
    return set;
}

/** Fill TrainLoRA's essentials with `preset`'s values from `table`. */
export function applyPreset(node, table, preset) {
    return table?.[preset] ? setWidgets(node, table[preset]) : [];
}

/** Whether `values` is a saved widgets_values array of the first layout of `type`. */
export function isLegacy(type, values) {
    const names = LEGACY_LAYOUTS[type];
    if (!names || !Array.isArray(values) || values.length !== names.length) return false;
    const at = (name) => values[names.indexOf(name)];
    return type === "TrainLoRA" ? typeof at("run_name") === "string" && typeof at("preview_width") === "number"
        : ["character", "concept", "style"].includes(at("preset"));
}

/**
 * The first layout's `values` of `type`, sorted into what the current nodes take:
 * { widgets: {name: value} for the node itself, advanced: {name: value} for a new TrainLoRAAdvanced
 * node (only settings the old workflow changed; empty: none needed) }.
 * `current`: the node's current widget names; `table`: the preset table; `advancedDefaults`: the
 * TrainLoRAAdvanced widgets' defaults.
 */
export function migrateLegacy(type, values, current, table, advancedDefaults) {
    const names = LEGACY_LAYOUTS[type];
    const old = Object.fromEntries(names.map((name, i) => [name, values[i]]));
    const widgets = {};
    const advanced = {};
    const presetRow = table?.[old.preset] ?? {};
    for (const [name, value] of Object.entries(old)) {
        const unset = LEGACY_UNSET.has(value) || (name === "lora_alpha" && value === 0);
        const real = value === "on" ? true : value === "off" ? false : value;
        if (current.includes(name)) {
            if (!unset) widgets[name] = real;
            else if (name === "train_steps") widgets[name] = 0; // the preset's rule, as before
            else if (name in presetRow) widgets[name] = presetRow[name];
        } else if (name in (advancedDefaults ?? {}) && !unset && real !== advancedDefaults[name]) {
            advanced[name] = real;
        }
    }
    if (type === "TrainLoRA" && (old.lora_alpha === -1 || old.lora_alpha === 0) && "lora_rank" in widgets) {
        widgets.lora_alpha = widgets.lora_rank; // an unset alpha was "same as rank"
    }
    return { widgets, advanced };
}

/**
 * The shipped layout `values` (a saved widgets_values array of `type`) was saved with, as
 * {name: value}, or null when it is the current layout (`current`: the node's widget names) or none.
 */
export function shippedValues(type, values, current) {
    if (!Array.isArray(values) || values.length === current.length) return null;
    const names = (SHIPPED_LAYOUTS[type] ?? []).find((layout) => layout.length === values.length);
    return names ? Object.fromEntries(names.map((name, i) => [name, values[i]])) : null;
}

/** While lora_alpha equals the old rank, a new rank takes alpha with it (scale 1, as ai-toolkit's
 * `linear_alpha: <same as linear>`); an alpha the user set differently stays. */
export function followRank(node, oldRank, newRank) {
    const alpha = widget(node, "lora_alpha");
    if (alpha && Number(alpha.value) === Number(oldRank)) alpha.value = newRank;
}
