"""The one error type of the data package.

Every message names the file or the setting at fault and says how to fix it, because the user reads
it in ComfyUI's error popup, far from any traceback.
"""

from ..errors import FluxLabError


class DatasetError(FluxLabError, ValueError):
    """A dataset cannot be built as configured (bad file under policy "error", bad setting, ...)."""


class BadImage(DatasetError):
    """One image file cannot be used; under policy "skip" it is reported instead of raised."""

    def __init__(self, path, reason: str, fix: str = "", kind: str = "unreadable") -> None:
        self.path = path
        self.reason = reason
        self.kind = kind
        """"unreadable" (policy on_bad_file) or "small" (policy on_small)."""
        super().__init__(f"Image {path}: {reason}." + (f" {fix}" if fix else ""))
