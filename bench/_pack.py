"""Load the repository root as the package `flux_lora_lab`, as tests/conftest.py does for tests.

The pack imports itself relatively and ComfyUI owns the top-level name `nodes`, so the pack cannot be
imported by its folder's modules' bare names; the benchmark uses the same package name as the tests.
"""

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "flux_lora_lab"


def register_pack() -> None:
    if PACKAGE_NAME in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(PACKAGE_NAME, REPO_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(REPO_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = module
    spec.loader.exec_module(module)
