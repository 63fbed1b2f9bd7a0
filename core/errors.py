"""The base of every error the pack shows a user, named the way a user reads it.

Why: ComfyUI's error dialog titles an exception with its module path, and a custom node's modules
are named after the folder it was installed in, so users read
`/home/me/ComfyUI/custom_nodes/comfyui-flux-lora-lab.core.data.errors.DatasetError`. Subclasses of
`FluxLabError` are titled `fluxlab.DatasetError` instead.
"""

from __future__ import annotations

USER_MODULE = "fluxlab"


class FluxLabError(Exception):
    """Mixed into each user-facing error class (with the builtin it behaves as: ValueError, ...)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = USER_MODULE
