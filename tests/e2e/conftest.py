"""Session fixtures for end-to-end tests: one real ComfyUI server (CPU, free loopback port, own
base directory with the pack linked into custom_nodes) shared by every e2e test, and a client
with a websocket that records all events.

Test files here mark themselves `pytestmark = pytest.mark.e2e`. The server log stays in the session's temp base
directory; failures include its tail.
"""

from __future__ import annotations

import pytest

from tests.harness.api import ComfyClient
from tests.harness.server import start_server


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """The running server (tests.harness.server.ComfyServer): .url, .base_dir, .log_text(), .log_tail()."""
    server = start_server(tmp_path_factory.mktemp("comfy-base"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def comfy_client(comfy_server):
    """A tests.harness.api.ComfyClient for the session server: .run(graph), .queue/.wait, .history,
    .view, .object_info, .stream (every websocket event). Errors carry the server log tail."""
    client = ComfyClient(comfy_server.url, log_tail=comfy_server.log_tail)
    try:
        yield client
    finally:
        client.close()
