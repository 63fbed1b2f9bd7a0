"""In-process access to the real ComfyUI host in `.comfy/` for tests, forced onto the CPU."""

import sys
from pathlib import Path

COMFY_DIR = Path(__file__).resolve().parent.parent / ".comfy"


def import_comfy():
    """Put the host on sys.path, force CPU before anything reads the device, return `comfy`."""
    if not (COMFY_DIR / "main.py").is_file():
        raise RuntimeError(f"ComfyUI host not found in {COMFY_DIR}: run `make setup` (scripts/setup_env.sh)")
    if str(COMFY_DIR) not in sys.path:
        sys.path.insert(0, str(COMFY_DIR))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (reads args.cpu once, at import)

    return sys.modules["comfy"]
