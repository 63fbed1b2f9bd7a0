"""API prompts written for TrainLoRA's first layout: every setting on TrainLoRA, -1 / 'preset' meaning
"the preset's value". ComfyUI drops inputs a node does not declare, so without this check such a prompt
would train with its advanced settings silently gone. The browser migrates saved workflows itself
(web/train_migration.js); a prompt is refused here with what to change.
"""

from __future__ import annotations

from .setting_widgets import ADVANCED_NODE, ESSENTIALS, setting_widget_map, widget_names

OLD_UNSET = ("preset",)  # numbers held -1, which ComfyUI's own minimum check refuses when queued
MOVED = ("preview_seed", "preview_guidance", "preview_negative_prompt", "preview_real_cfg", "preview_more_sizes")


def legacy_problem(inputs: dict) -> str | None:
    """What to change in an API prompt's TrainLoRA inputs of the first layout, or None for a current one."""
    moved = sorted(set(inputs) & (set(widget_names(ADVANCED_NODE)) | set(MOVED)))
    table = setting_widget_map()
    unset = [name for key in ESSENTIALS for name in table[key].names if inputs.get(name) in OLD_UNSET]
    if not moved and not unset:
        return None
    parts = ["TrainLoRA: this prompt was written for TrainLoRA's first layout."]
    if moved:
        parts.append(f"Inputs {', '.join(moved)} are now widgets of the {ADVANCED_NODE} node (TrainLoRAAdvanced, "
                     "same names): add one and connect its output to TrainLoRA's 'advanced' input.")
    if unset:
        parts.append(f"{', '.join(unset)}: 'preset' no longer means the preset's value; give the value itself "
                     "(each widget's tooltip lists the presets' values).")
    parts.append("A saved workflow opened in ComfyUI's browser is migrated automatically.")
    return " ".join(parts)


def refuse_first_layout(inputs: dict) -> None:
    """Raise ValueError with `legacy_problem`'s words for a prompt of the first layout."""
    problem = legacy_problem(inputs)
    if problem:
        raise ValueError(problem)
