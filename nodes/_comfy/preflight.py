"""Pre-flight for a prompt that uses the pack: model files its stock loaders name but that are missing.

ComfyUI refuses such a prompt at queue time with "'flux1-dev.safetensors' not in []", before any
node of ours runs, and that message says neither where the file goes nor where to get it. ComfyUI
calls every on-prompt handler with the prompt *before* it validates it, so this one names each
missing file, its folder under models/ and its usual source (nodes/_comfy/model_files.py): in the server
log, and as the websocket event `fluxlab.missing_models` ({"messages": [str]}) to the client that
queued it, for the panel. It only reads the prompt: ComfyUI's own refusal follows as before.
"""

from __future__ import annotations

import logging
import threading

from . import host
from .model_files import LOADER_WIDGETS, missing_file_message

log = logging.getLogger(__name__)

PACK_NODES = {"LoadFluxForTraining", "DatasetFromFolder", "TrainLoRA", "SampleCheckpoint", "CompareCheckpoints"}
EVENT = "fluxlab.missing_models"
_registered = threading.Event()


def missing_model_messages(prompt: dict) -> list[str]:
    """One message per missing file a loader of `prompt` (API format) names; [] unless the prompt uses the pack."""
    import folder_paths

    nodes = [node for node in prompt.values() if isinstance(node, dict)]
    if not any(node.get("class_type") in PACK_NODES for node in nodes):
        return []
    messages = []
    for node in nodes:
        for widget, folder in LOADER_WIDGETS.get(node.get("class_type"), ()):
            name = (node.get("inputs") or {}).get(widget)
            if isinstance(name, str) and name and folder_paths.get_full_path(folder, name) is None:
                message = missing_file_message(name, folder, node["class_type"])
                if message not in messages:
                    messages.append(message)
    return messages


def on_prompt(json_data: dict) -> dict:
    """ComfyUI's on-prompt hook: report, never change the prompt."""
    messages = missing_model_messages(json_data.get("prompt") or {})
    for message in messages:
        log.warning(message)
    if messages:
        host.prompt_server().send_sync(EVENT, {"messages": messages}, json_data.get("client_id"))
    return json_data


def register_preflight() -> None:
    """Add the hook once (get_node_list may be called more than once)."""
    if _registered.is_set():
        return
    instance = host.prompt_server()
    if instance is None:  # in-process tests: no server, no prompts
        return
    instance.add_on_prompt_handler(on_prompt)
    _registered.set()
