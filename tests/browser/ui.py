"""`UiPage`: one ComfyUI page in the browser, with the few actions the tests share (open the
panel, wait for a condition, screenshot) and a record of everything that went wrong in it."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.comfy_server import PACK_DIRNAME

# Debian's chromium, headless, nothing that reaches outside the machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OURS = re.compile(rf"fluxlab|{re.escape(PACK_DIRNAME)}", re.IGNORECASE)
WAIT_MS = 60_000


def _external(where: str, server_url: str) -> bool:
    return where.startswith(("http://", "https://")) and not where.startswith(server_url)


class UiPage:
    def __init__(self, page, url: str, artifacts: Path):
        self.page = page
        self.url = url
        self.artifacts = artifacts
        self.console: list[str] = []  # "type: text (url)" of every console message
        self.problems: list[str] = []  # errors that are ours
        self.allowed: list[re.Pattern] = []  # known, accepted problems (see allow())
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._note(f"page error: {error}\n{error.stack or ''}"))
        page.on("response", self._on_response)
        page.on("requestfailed", lambda req: self._note(f"request failed: {req.method} {req.url}: {req.failure}", req.url))

    # -- problems --------------------------------------------------------------------------------
    def _note(self, text: str, where: str = "") -> None:
        if _external(where, self.url) or "Content Security Policy" in text:
            return  # the frontend's own look-ups on the internet (node registry), blocked here: not ours
        if OURS.search(text) or OURS.search(where):
            self.problems.append(text)

    def _on_console(self, message) -> None:
        where = (message.location or {}).get("url", "")
        line = f"{message.type}: {message.text} ({where})"
        self.console.append(line)
        # Errors that mention us, and warnings raised in our own files.
        if message.type == "error" or (message.type == "warning" and PACK_DIRNAME in where):
            self._note(line, where)

    def _on_response(self, response) -> None:
        if response.status >= 400:
            self._note(f"HTTP {response.status} {response.request.method} {response.url}", response.url)

    def allow(self, pattern: str) -> None:
        """Accept problems matching `pattern` (a regex) in this page: say why where you call it."""
        self.allowed.append(re.compile(pattern))

    def own_problems(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]

    # -- actions ---------------------------------------------------------------------------------
    def open(self) -> "UiPage":
        self.page.goto(self.url)
        self.page.wait_for_selector(".fluxlab-tab-button", timeout=WAIT_MS)  # our extension's tab is registered
        self.page.wait_for_function("() => window.app?.graph && window.app.extensionManager", timeout=WAIT_MS)
        return self

    def open_panel(self):
        """Open the Flux LoRA Lab sidebar tab (if it is not open) and return the panel locator."""
        panel = self.page.locator("[data-testid=fluxlab-panel]")
        if not panel.is_visible():
            self.page.click(".fluxlab-tab-button")
        panel.wait_for(state="visible", timeout=WAIT_MS)
        return panel

    def wait_for(self, expression: str, arg=None, timeout_ms: int = WAIT_MS):
        """Poll a JS predicate (a function source) until it is truthy; returns its value."""
        return self.page.wait_for_function(expression, arg=arg, timeout=timeout_ms, polling=100).json_value()

    def text(self, test_id: str) -> str:
        return self.page.locator(f"[data-testid={test_id}]").inner_text()

    def badge(self) -> str:
        return self.page.locator(".fluxlab-tab-button").inner_text().strip()

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def wait_toast(self, text: str, timeout_ms: int = WAIT_MS) -> str:
        """Wait for a toast containing `text`, done fading in (so a screenshot shows it); its text."""
        return self.wait_for("""(text) => [...document.querySelectorAll('.p-toast-message')]
            .find((t) => t.innerText.includes(text) && getComputedStyle(t).opacity === '1')?.innerText""",
                             arg=text, timeout_ms=timeout_ms)

    def toasts(self) -> list[str]:
        return self.page.locator(".p-toast-message").all_inner_texts()

    def evaluate(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)
