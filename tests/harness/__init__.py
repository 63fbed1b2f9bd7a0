"""Helpers for tests against the real ComfyUI server: launching it (server.py), talking to it
(api.py) and the stock graphs the tests and the demo queue (graphs.py)."""
