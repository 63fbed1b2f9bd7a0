"""Test bootstrap shared by every test.

The pack is a ComfyUI custom node folder whose modules import each other relatively, so tests load
the repository root as the package `flux_lora_lab` (the name does not depend on the clone's folder
name). The real ComfyUI host lives in `.comfy-<host>/` (scripts/hosts.py, scripts/setup_env.sh); in-process tests that need it
call `tests.comfy_host.import_comfy()`, which forces CPU before comfy is imported.
"""

import importlib.util
import os
import sys
from pathlib import Path

# The models under test are tiny: one thread per process is several times faster than two threads
# fighting over two cores (measured: a tiny Flux step 0.12 s with 2 threads under load, 0.02 s with 1),
# and the server subprocesses the e2e tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_NAME = "flux_lora_lab"


def _register_pack_as_package() -> None:
    if PACKAGE_NAME in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        PACKAGE_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = module
    spec.loader.exec_module(module)


_register_pack_as_package()
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
