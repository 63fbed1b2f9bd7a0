"""The `/fluxlab/runs...` HTTP routes of docs/api.md, on ComfyUI's own aiohttp server.

Every answer is JSON; every refusal is a 4xx `{"error": "<what is wrong and what to do>"}`, never a
traceback. Files are served only from inside a run folder: `..` parts and absolute paths are refused
before touching the disk, and what is left must still resolve inside the folder (so a symlink that
points out of it is refused too). `RunRoutes` takes its lookups as arguments so tests can mount it on
a bare aiohttp app; `register_routes()` mounts it on the running ComfyUI once.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Optional

from aiohttp import web

from ...core.config import TrainConfig
from ...core.model.lora_format import saved_step
from ...core.run.gallery import preview_steps, saved_config, trigger_words
from ...core.run.runner import RunError, RunHandle, check_run_id
from . import host, runs

log = logging.getLogger(__name__)

ACTIONS = ("pause", "resume", "checkpoint", "stop")
FindRun = Callable[[str], Optional[RunHandle]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _json_errors(handler):
    """Unexpected failures answer 500 with a JSON message (the traceback goes to the server log)."""

    @functools.wraps(handler)
    async def wrapped(self, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except Exception as exc:  # the route's last word: logged with traceback, answered as JSON
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    return wrapped


def relative_path_problem(path: str) -> Optional[str]:
    """Why `path` is not an acceptable run-folder-relative path, or None when it is."""
    if not path:
        return "missing ?path=<file inside the run folder>, e.g. path=learning_curve.svg"
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() or PureWindowsPath(path).drive:
        return f"path {path!r} is absolute; give a path relative to the run folder"
    if ".." in path.replace("\\", "/").split("/"):
        return f"path {path!r} contains '..'; only files inside the run folder are served"
    return None


class RunRoutes:
    """Handlers for the run list, run detail, control actions, run files and `use`."""

    def __init__(self, find_run: FindRun, list_runs: Callable[[], list[RunHandle]],
                 publish: Callable[[Path, str], str]):
        self.find_run = find_run
        self.list_runs = list_runs
        self.publish = publish

    def add_to(self, routes: web.RouteTableDef) -> None:
        routes.get("/fluxlab/runs")(self.list)
        routes.get("/fluxlab/runs/{run_id}")(self.detail)
        routes.get("/fluxlab/runs/{run_id}/{what}")(self.get_sub)
        routes.post("/fluxlab/runs/{run_id}/{action}")(self.post_action)

    # -- lookups ---------------------------------------------------------------------------------
    def _run(self, request: web.Request) -> RunHandle | web.Response:
        run_id = request.match_info["run_id"]
        try:
            check_run_id(run_id)
        except ValueError as exc:
            return _error(400, str(exc))
        handle = self.find_run(run_id)
        if handle is None:
            return _error(404, f"unknown run {run_id!r}; GET /fluxlab/runs lists the runs")
        return handle

    # -- handlers --------------------------------------------------------------------------------
    @_json_errors
    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"runs": [handle.summary() for handle in self.list_runs()]})

    @_json_errors
    async def detail(self, request: web.Request) -> web.Response:
        handle = self._run(request)
        if isinstance(handle, web.Response):
            return handle
        since = request.query.get("since", "-1")
        try:
            since_seq = int(since)
        except ValueError:
            return _error(400, f"since={since!r} is not an integer (the last event seq you have)")
        return web.json_response(handle.detail(since_seq))

    @_json_errors
    async def get_sub(self, request: web.Request) -> web.StreamResponse:
        what = request.match_info["what"]
        readers = {"file": self._file, "previews": self._previews, "config": self._config}
        if what not in readers:
            verb = "POST" if what in (*ACTIONS, "use") else "GET .../file?path=, .../previews or .../config"
            return _error(405 if what in (*ACTIONS, "use") else 404, f"no GET route {what!r}; use {verb}")
        handle = self._run(request)
        if isinstance(handle, web.Response):
            return handle
        return readers[what](request, handle)

    def _previews(self, request: web.Request, handle: RunHandle) -> web.Response:
        """The gallery: every preview step on disk with its prompts, and the words that pair them."""
        records = handle.events.history()
        trigger, class_word = trigger_words(saved_config(records))
        return web.json_response({"run_id": handle.run_id, "trigger": trigger, "class_word": class_word,
                                  "steps": preview_steps(handle.run_dir, records)})

    def _config(self, request: web.Request, handle: RunHandle) -> web.Response:
        """The latest session's config by section, with each setting's doc for the tooltips."""
        docs = {key: info.get("doc", "") for key, info in TrainConfig.describe().items()}
        return web.json_response({"run_id": handle.run_id, "config": saved_config(handle.events.history()), "docs": docs})

    def _file(self, request: web.Request, handle: RunHandle) -> web.StreamResponse:
        relative = request.query.get("path", "")
        problem = relative_path_problem(relative)
        if problem:
            return _error(400, problem)
        try:
            target = handle.run_dir.resolve_inside(relative)
            found = target.is_file()
        except ValueError:
            return _error(403, f"path {relative!r} leads outside the run folder (a link?); refused")
        except OSError as exc:  # e.g. a name over the file system's 255 bytes (ENAMETOOLONG)
            return _error(400, f"path {relative[:80]!r}... is not a usable file name here ({exc.strerror})")
        if not found:
            return _error(404, f"run {handle.run_id!r} has no file {relative!r}")
        return web.FileResponse(target)

    @_json_errors
    async def post_action(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in (*ACTIONS, "use"):
            return _error(400, f"unknown action {action!r}; use one of {[*ACTIONS, 'use']}")
        handle = self._run(request)
        if isinstance(handle, web.Response):
            return handle
        if action == "use":
            return await self._use(request, handle)
        control = {"pause": handle.pause, "resume": handle.resume,
                   "checkpoint": handle.request_checkpoint, "stop": handle.stop}[action]
        try:
            control()
        except RunError as exc:
            return _error(409, str(exc))
        return web.json_response({"ok": True, "status": handle.status})

    async def _use(self, request: web.Request, handle: RunHandle) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            return _error(400, 'body must be JSON: {"checkpoint": "checkpoint_000010" or "final"}')
        which = body.get("checkpoint") if isinstance(body, dict) else None
        if not isinstance(which, str) or not which:
            return _error(400, 'body needs "checkpoint": a checkpoint folder name '
                               '(e.g. "checkpoint_000010") or "final"')
        if which == "final":
            source = handle.run_dir.final_lora_path
            if not source.is_file():
                return _error(404, f"run {handle.run_id!r} has no final LoRA yet; use a checkpoint")
            step = saved_step(source)
        else:
            checkpoints = {info.path.name: info for info in handle.run_dir.list_checkpoints()}
            if which not in checkpoints:
                return _error(404, f"run {handle.run_id!r} has no complete checkpoint {which!r}; "
                               f"it has {sorted(checkpoints) or 'none'} and maybe 'final'")
            source, step = checkpoints[which].file("lora.safetensors"), checkpoints[which].step
        suffix = "final" if step is None else str(step)
        try:
            name = self.publish(source, f"{handle.run_id}_{suffix}")
        except FileNotFoundError:
            return _error(409, f"{which} of run {handle.run_id!r} was removed while copying; pick another")
        return web.json_response({"ok": True, "lora_name": name})


_registered = False


def register_routes() -> None:
    """Add the routes to ComfyUI's route table, once. Must run before the server app starts
    (ComfyUI copies `PromptServer.instance.routes` into the app in `add_routes`, after loading nodes)."""
    global _registered
    if _registered:
        return
    instance = host.prompt_server()
    if instance is None:
        log.debug("no PromptServer running: /fluxlab routes not registered")
        return
    RunRoutes(runs.find_run, runs.list_runs, runs.publish_lora).add_to(instance.routes)
    _registered = True
