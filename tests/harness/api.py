"""A small client for a running ComfyUI: HTTP (queue, history, object_info, /view) plus one
websocket that records every event the server sends to this client (and every broadcast).

The websocket is opened before anything is queued, so no event of our prompts can be missed;
`run()` queues a graph and waits for its terminal event. Failures carry the node errors or the
execution error, and (when a log reader is given) the tail of the server log.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import websocket  # websocket-client

TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


class ComfyAPIError(RuntimeError):
    pass


@dataclass
class PromptResult:
    """What one queued graph did: its events (in order), its /history entry and how it ended."""

    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    events: list[dict] = field(default_factory=list)
    history: dict = field(default_factory=dict)
    seconds: float = 0.0

    def outputs(self, node_id: str) -> dict:
        return self.history.get("outputs", {}).get(str(node_id), {})

    def images(self) -> list[dict]:
        """Every image an output node reported: dicts with filename, subfolder, type."""
        return [image for out in self.history.get("outputs", {}).values() for image in out.get("images", [])]

    def error(self) -> dict | None:
        for event in self.events:
            if event["type"] == "execution_error":
                return event["data"]
        return None


class EventStream:
    """Background reader of the websocket. Text frames are JSON events kept as dicts; binary
    frames (latent previews) are counted, not kept."""

    def __init__(self, ws_url: str):
        self._ws = websocket.create_connection(ws_url, timeout=30)
        self._ws.settimeout(None)
        self._cond = threading.Condition()
        self.events: list[dict] = []
        self.binary_frames = 0
        self.closed_reason: str | None = None
        self._thread = threading.Thread(target=self._read, name="comfy-ws", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self._ws.recv_data()
                with self._cond:
                    if opcode == websocket.ABNF.OPCODE_TEXT:
                        self.events.append(json.loads(data.decode("utf-8")))
                    elif opcode == websocket.ABNF.OPCODE_BINARY:
                        self.binary_frames += 1
                    elif opcode == websocket.ABNF.OPCODE_CLOSE:
                        self.closed_reason = "closed by server"
                        break
                    self._cond.notify_all()
        except (websocket.WebSocketException, OSError) as exc:
            with self._cond:
                self.closed_reason = f"{type(exc).__name__}: {exc}"
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float, start: int = 0) -> dict | None:
        """First event at index >= start satisfying predicate(event), waiting up to timeout s."""
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                for event in self.events[index:]:
                    if predicate(event):
                        return event
                index = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed_reason:
                    return None
                self._cond.wait(remaining)

    def of_type(self, *types: str) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e.get("type") in types]

    def close(self) -> None:
        try:
            self._ws.close()
        except (websocket.WebSocketException, OSError):
            pass
        self._thread.join(timeout=5)


class ComfyClient:
    """HTTP + websocket access to one server. `log_tail` (optional) is called to enrich errors."""

    def __init__(self, base_url: str, client_id: str | None = None, log_tail=None):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self._log_tail = log_tail or (lambda: "")
        ws_url = self.base_url.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}"
        self.stream = EventStream(ws_url)

    # --- HTTP -----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ComfyAPIError(f"{method} {path} -> HTTP {exc.code}: {detail}\n{self._log_tail()}") from None

    def get_json(self, path: str, timeout: float = 60.0):
        return json.loads(self.request("GET", path, timeout=timeout))

    def post_json(self, path: str, body: dict, timeout: float = 60.0):
        raw = self.request("POST", path, body, timeout=timeout)
        return json.loads(raw) if raw else None

    def object_info(self, node_class: str | None = None) -> dict:
        return self.get_json("/object_info" + (f"/{node_class}" if node_class else ""))

    def history(self, prompt_id: str) -> dict:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id, {})

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        return self.request("GET", f"/view?{query}")

    def interrupt(self) -> None:
        self.request("POST", "/interrupt", {})

    # --- prompts --------------------------------------------------------------------------------
    def queue(self, graph: dict) -> str:
        """POST /prompt (API-format graph); returns the prompt id. Validation errors raise."""
        try:
            answer = self.post_json("/prompt", {"prompt": graph, "client_id": self.client_id})
        except ComfyAPIError as exc:  # HTTP 400: validation failed, the body names the nodes
            raise ComfyAPIError(f"graph rejected: {exc}") from None
        if answer.get("node_errors"):
            raise ComfyAPIError(f"graph rejected: {json.dumps(answer['node_errors'], indent=1)}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0, start: int = 0) -> PromptResult:
        """Wait until the prompt is finished and its history stored, i.e. for the `executing`
        event with node None that main.py sends after `task_done` (execution_success comes
        earlier, before /history has the entry). Status comes from the execution_* event."""
        t0 = time.monotonic()

        def finished(event):
            data = event.get("data") or {}
            return event.get("type") == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id

        last = self.stream.wait_for(finished, timeout, start=start)
        if last is None:
            reason = self.stream.closed_reason or f"not finished within {timeout:.0f} s"
            raise TimeoutError(f"prompt {prompt_id}: {reason}\n{self._log_tail()}")
        events = self.stream.events[start:]
        events = events[: next(i for i, e in enumerate(events) if e is last) + 1]
        ends = [e["type"] for e in events if e.get("type") in TERMINAL_EVENTS and (e.get("data") or {}).get("prompt_id") == prompt_id]
        status = ends[-1].removeprefix("execution_") if ends else "unknown"
        return PromptResult(prompt_id, status, events, self.history(prompt_id), time.monotonic() - t0)

    def run(self, graph: dict, timeout: float = 120.0, expect_success: bool = True) -> PromptResult:
        """Queue a graph and wait for it. With expect_success, an error or interrupt raises with
        the exception message, traceback and server log tail."""
        start = len(self.stream.events)
        result = self.wait(self.queue(graph), timeout=timeout, start=start)
        if expect_success and result.status != "success":
            error = result.error() or {}
            raise ComfyAPIError(
                f"prompt {result.prompt_id} ended with {result.status}: {error.get('node_type')} "
                f"(node {error.get('node_id')}): {error.get('exception_message')}\n"
                + "".join(error.get("traceback", [])) + "\n" + self._log_tail()
            )
        return result

    def refusal(self, graph: dict, timeout: float = 120.0) -> tuple[str, str]:
        """How the server refuses a bad graph: ("queue", the HTTP 400 body) when it validates the
        value before running (V3 combo values since ComfyUI 0.8), or ("node", the exception message)
        when the node raises. A graph that runs to success fails the calling test."""
        try:
            result = self.run(graph, timeout=timeout, expect_success=False)
        except ComfyAPIError as exc:
            if "graph rejected" not in str(exc):
                raise
            return "queue", str(exc)
        assert result.status == "error", f"the graph was not refused: {result.status}"
        return "node", result.error()["exception_message"]

    def close(self) -> None:
        self.stream.close()
