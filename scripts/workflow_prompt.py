"""Turn a saved ComfyUI workflow (the UI format in workflows/) into the API prompt the server runs.

The browser does this when you press Queue; `make demo` and the workflow tests do it without one, the
same way: widget values are matched to the node's widget inputs in the order `/object_info` gives,
links become `[node_id, output_slot]` inputs, and frontend-only nodes (notes) are dropped. A value
the server would reject is reported with the node and widget it belongs to. Standard library only.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
SEED_CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


class WorkflowError(ValueError):
    """A workflow that does not fit the running server (unknown node type, bad widget value)."""


def _input_specs(info: dict) -> list[tuple[str, list]]:
    """(name, spec) for every input of a node type, in the server's declared order."""
    order = info.get("input_order") or {k: list(v) for k, v in info.get("input", {}).items()}
    specs = []
    for section in ("required", "optional"):
        declared = info.get("input", {}).get(section, {})
        specs += [(name, declared[name]) for name in order.get(section, []) if name in declared]
    return specs


def is_widget(spec: list) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _check_value(node: dict, name: str, spec: list, value) -> None:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    where = f"node {node['id']} ({node['type']}) widget {name!r}"
    choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    if choices is not None and choices and value not in choices:
        raise WorkflowError(f"{where}: {value!r} is not one of {choices}")
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WorkflowError(f"{where}: expected a number, got {value!r}")
        if "min" in options and value < options["min"] or "max" in options and value > options["max"]:
            raise WorkflowError(f"{where}: {value} is outside [{options.get('min')}, {options.get('max')}]")
    if kind == "BOOLEAN" and not isinstance(value, bool):
        raise WorkflowError(f"{where}: expected true/false, got {value!r}")
    if kind == "STRING" and not isinstance(value, str):
        raise WorkflowError(f"{where}: expected text, got {value!r}")


def widget_inputs(node: dict, info: dict, check: bool = True) -> dict:
    """{widget name: value} for one UI node, from its widgets_values in declared order."""
    values = list(node.get("widgets_values") or [])
    if isinstance(node.get("widgets_values"), dict):  # some nodes save widgets by name
        return dict(node["widgets_values"])
    out = {}
    for name, spec in _input_specs(info):
        if not is_widget(spec):
            continue
        if not values:
            raise WorkflowError(f"node {node['id']} ({node['type']}) has no saved value for widget {name!r}")
        value = values.pop(0)
        if check:
            _check_value(node, name, spec, value)
        out[name] = value
        if has_seed_control(name, spec) and values and values[0] in SEED_CONTROL_VALUES:
            values.pop(0)
    return out


def has_seed_control(name: str, spec) -> bool:
    """Whether the frontend puts a "control after generate" widget after this one: when the input
    asks for it, and (unless it says false) for every INT named `seed` or `noise_seed`, whose control
    then starts at 'randomize' (ComfyUI frontend 1.x `widgetConstructor`)."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    asked = options.get("control_after_generate")
    if asked is not None:
        return bool(asked)
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def ui_to_prompt(workflow: dict, object_info: dict, check: bool = True) -> dict:
    """The API prompt {node_id: {"class_type", "inputs"}} for a UI-format workflow."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY:
            continue
        if kind not in object_info:
            raise WorkflowError(f"node {node['id']}: type {kind!r} is not known to this server (is its pack installed?)")
        inputs = widget_inputs(node, object_info[kind], check)
        for slot in node.get("inputs", []):
            link_id = slot.get("link")
            if link_id is None:
                continue
            _, from_node, from_slot, *_ = links[link_id]
            inputs[slot["name"]] = [str(from_node), from_slot]
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return prompt
