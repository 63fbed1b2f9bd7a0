"""In-process access to the real ComfyUI host (`.comfy-<host>/`, scripts/hosts.py) for tests, forced onto the CPU."""

import sys

from scripts.hosts import selected

HOST = selected()
COMFY_DIR = HOST.comfy_dir


def import_comfy():
    """Put the host on sys.path, force CPU before anything reads the device, return `comfy`."""
    if not (COMFY_DIR / "main.py").is_file():
        raise RuntimeError(f"ComfyUI host not found in {COMFY_DIR}: run `make setup HOST={HOST.name}` (scripts/setup_env.sh)")
    if str(COMFY_DIR) not in sys.path:
        sys.path.insert(0, str(COMFY_DIR))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (reads args.cpu once, at import)

    return sys.modules["comfy"]


def klein_marks() -> list:
    """Marks for a test case on the tiny Flux.2 klein: skipped on hosts that cannot build it (ComfyUI < 0.9.2)."""
    import pytest

    import_comfy()
    from flux_lora_lab.nodes._comfy.host import klein_available

    return [pytest.mark.skipif(not klein_available(), reason=f"ComfyUI {HOST.name} has no Flux.2 klein")]


def klein_param(*values):
    """("flux2-klein", *values) as a pytest parameter with `klein_marks()`."""
    import pytest

    return pytest.param("flux2-klein", *values, marks=klein_marks())
