"""`UiPage`: one ComfyUI page in the browser, with the few actions the tests share (open the
panel, wait for a condition, screenshot) and a record of everything that went wrong in it.

What belongs to ComfyUI's frontend is found the way a user (or a screen reader) finds it, not by the
frontend's CSS classes, which change between its versions (1.32: PrimeVue, `.fluxlab-tab-button`,
`.p-toast-message`, `.p-dialog`; 1.58: reka-ui, none of those): the sidebar tab is the button named
by our tab's tooltip (its aria-label in both), toasts and notices are on-screen `role=alert` /
`role=status` elements, dialogs are `role=dialog`. Our own elements carry `data-testid`s.
"""

from __future__ import annotations

import re
from pathlib import Path

from scripts.comfy_server import PACK_DIRNAME

# Debian's chromium, headless, nothing that reaches outside the machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OURS = re.compile(rf"fluxlab|{re.escape(PACK_DIRNAME)}", re.IGNORECASE)
WAIT_MS = 60_000
# A websocket message of ours that the frontend had no listener for: 1.58 logs an error
# "Unknown message type fluxlab.step", 1.32 a warning "Unhandled message: {...} Error: Unknown ...".
DROPPED_MESSAGE = re.compile(r"Unknown message type|Unhandled message")

TAB_TITLE = "Flux LoRA Lab"  # the tab's title (web/fluxlab.js), shown as its label where the sidebar has labels
TAB_NAME = "Flux LoRA Lab: training runs"  # the tab's tooltip, the button's accessible name (aria-label)
# The tab button in page scripts (an aria-label that starts with the tooltip: a frontend may append a
# key binding to it).
TAB_BUTTON_JS = (f"[...document.querySelectorAll('button[aria-label]')]"
                 f".find((b) => b.getAttribute('aria-label').startsWith({TAB_NAME!r}))")
# The badge on the tab: the button's visible text without its label.
BADGE_JS = f"""() => {{
    const button = {TAB_BUTTON_JS};
    if (!button) return null;
    return button.innerText.split("\\n").map((s) => s.trim()).filter((s) => s && s !== {TAB_TITLE!r}).join(" ");
}}"""
# Toasts and notices on screen: role alert / status with text, not the 1px screen-reader copies
# (frontend 1.58 repeats every toast in a visually hidden live region).
NOTICES_JS = """() => [...document.querySelectorAll('[role=alert], [role=status]')].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 2 && box.height > 2 && el.innerText.trim() !== '';
})"""


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
        # Errors that mention us, warnings raised in our own files, and any message that says the
        # frontend dropped one of our websocket events (1.32 says so in a warning from its own file).
        if (message.type == "error" or (message.type == "warning" and PACK_DIRNAME in where)
                or DROPPED_MESSAGE.search(message.text)):
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
        self.tab_button().wait_for(timeout=WAIT_MS)  # our extension's tab is registered
        self.page.wait_for_function("() => window.app?.graph && window.app.extensionManager", timeout=WAIT_MS)
        return self

    def tab_button(self):
        """The Flux LoRA Lab button in ComfyUI's sidebar, by its accessible name."""
        return self.page.get_by_role("button", name=re.compile(rf"^{re.escape(TAB_NAME)}"))

    def open_panel(self):
        """Open the Flux LoRA Lab sidebar tab (if it is not open) and return the panel locator."""
        panel = self.page.locator("[data-testid=fluxlab-panel]")
        if not panel.is_visible():
            self.tab_button().click()
        panel.wait_for(state="visible", timeout=WAIT_MS)
        return panel

    def wait_for(self, expression: str, arg=None, timeout_ms: int = WAIT_MS):
        """Poll a JS predicate (a function source) until it is truthy; returns its value."""
        return self.page.wait_for_function(expression, arg=arg, timeout=timeout_ms, polling=100).json_value()

    def wait_until(self, expression: str, arg=None, timeout_ms: int = WAIT_MS) -> bool:
        """Like wait_for, but False instead of an error when the predicate stays falsy."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.wait_for(expression, arg=arg, timeout_ms=timeout_ms)
        except PlaywrightTimeout:
            return False
        return True

    def text(self, test_id: str) -> str:
        return self.page.locator(f"[data-testid={test_id}]").inner_text()

    def badge(self) -> str:
        """The text of the badge on our sidebar tab ("" when it shows none)."""
        value = self.evaluate(BADGE_JS)
        assert value is not None, f"no sidebar button named {TAB_NAME!r}"
        return value

    def wait_badge(self, pattern: str, timeout_ms: int = WAIT_MS) -> str:
        """Wait until the tab's badge matches `pattern` (a JS regex source); the badge text."""
        return self.wait_for(f"(pattern) => {{ const text = ({BADGE_JS})(); "
                             f"return text !== null && new RegExp(pattern).test(text) ? text : null; }}",
                             arg=pattern, timeout_ms=timeout_ms)

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def wait_toast(self, text: str, timeout_ms: int = WAIT_MS) -> str:
        """Wait for a toast containing `text`, done fading in (so a screenshot shows it); its text."""
        return self.wait_for(f"""(text) => ({NOTICES_JS})()
            .find((t) => t.innerText.includes(text) && getComputedStyle(t).opacity === '1')?.innerText""",
                             arg=text, timeout_ms=timeout_ms)

    def toasts(self) -> list[str]:
        """Texts of the toasts and notices on screen (1.58 also shows workflow problems this way)."""
        return self.evaluate(f"() => ({NOTICES_JS})().map((t) => t.innerText)")

    def evaluate(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)
