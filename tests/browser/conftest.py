"""Browser tests: Playwright (Python) driving Debian's chromium headless against the real ComfyUI.

One server for the whole browser session in its own base directory (so the panel's empty state is
real: no runs exist until these tests make them), one chromium process, and a fresh browser context
(a fresh profile: no cookies, storage or cache) per test. Each test gets a `UiPage` that records
console messages, page errors and failed requests; at teardown the test fails if any of them comes
from our extension (our files, our routes, or text naming fluxlab). Screenshots go to
<repo>/test-artifacts/browser/<host>/ (git-ignored; <host> is the ComfyUI under test, e.g. 0.33.0, so the two
frontends' screenshots sit side by side), named by step.

Needs Debian's chromium and the playwright package (scripts/setup_browser.sh installs both; never
`playwright install`, which downloads browser builds). Without them the tests are skipped, unless
FLUXLAB_REQUIRE_BROWSER=1 (set by `make test`), where that is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from scripts.comfy_server import REPO_ROOT
from scripts.hosts import selected
from tests.harness.api import ComfyClient
from tests.harness.server import start_server

from .ui import CHROMIUM_ARGS, UiPage

CHROMIUM = Path(os.environ.get("FLUXLAB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser" / selected().name


def _missing_tools() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} not found"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


@pytest.fixture(scope="session")
def browser_tools():
    problem = _missing_tools()
    if problem:
        message = f"{problem}: run `bash scripts/setup_browser.sh` (Debian chromium + playwright, no browser download)"
        if os.environ.get("FLUXLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Fresh per session and host, so the folder only ever shows this session's screenshots."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="package")
def browser_server(tmp_path_factory, browser_tools):
    """A real ComfyUI with the pack, its own base dir; the first-run template dialog is turned off
    (tests open the template browser themselves)."""
    server = start_server(tmp_path_factory.mktemp("browser-base"))
    try:
        request = urllib.request.Request(f"{server.url}/settings", method="POST",
                                         data=json.dumps({"Comfy.TutorialCompleted": True}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def browser_client(browser_server):
    """HTTP + websocket client of the browser session's server (tests.harness.api.ComfyClient)."""
    client = ComfyClient(browser_server.url, log_tail=browser_server.log_tail)
    try:
        yield client
    finally:
        client.close()


# Package scope: Playwright's sync API keeps an asyncio loop running on the main thread while it is
# open, which would break later tests that call asyncio.run(); it closes after the browser tests.
@pytest.fixture(scope="package")
def chromium(browser_tools):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives every context a fresh temporary profile (user-data dir) of its own.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_ui(chromium, browser_server, artifacts_dir, request):
    """`open_ui()` -> a UiPage on the ComfyUI front page in a new browser context (call it twice for
    a second browser); `open_ui(before_open=fn)` calls `fn(page)` before the page loads (routes).
    At teardown: no errors from our extension in any of them."""
    pages: list[UiPage] = []

    def opener(before_open=None) -> UiPage:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        ui = UiPage(context.new_page(), browser_server.url, artifacts_dir)
        if before_open is not None:
            before_open(ui.page)
        ui.open()
        pages.append(ui)
        return ui

    yield opener
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    problems = []
    for number, ui in enumerate(pages):
        if failed:
            ui.shot(f"FAILED_{request.node.name}_{number}")
        problems += ui.own_problems()
        ui.page.context.close()
    assert not problems, "errors from the Flux LoRA Lab extension:\n" + "\n".join(problems)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the call phase's report on the item, so fixtures can screenshot a failing test."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def pytest_collection_modifyitems(session, config, items):
    """The empty-state test needs a server without runs, and the server is shared by the whole
    browser session: run it before every other browser test, whatever the file order."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(item.path).parents]
    browser_items = [items[i] for i in slots]
    browser_items.sort(key=lambda item: 0 if item.name.startswith("test_empty_state") else 1)
    for slot, item in zip(slots, browser_items):
        items[slot] = item
