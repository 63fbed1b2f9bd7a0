"""core/ stays independent of ComfyUI: every module in it imports in a fresh interpreter where
`comfy`, `comfy_api`, `folder_paths` and `server` cannot be imported, and no source line in core/
names them (that also catches imports hidden inside functions). In nodes/, only nodes/_comfy/ names
the host's modules; the node files use ComfyUI's node API (`comfy_api`) and nothing else of it."""

import ast
import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PACKAGE_NAME, REPO_ROOT

FORBIDDEN = ("comfy", "comfy_api", "folder_paths", "server")
CORE = REPO_ROOT / "core"

_CHILD = textwrap.dedent(
    """
    import importlib, importlib.abc, importlib.util, json, sys, traceback

    FORBIDDEN, ROOT, PACKAGE, MODULES = json.loads(sys.argv[1])

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError(f"core/ must not import {name!r} (blocked by tests/test_boundary.py)")
            return None

    sys.meta_path.insert(0, Blocker())
    spec = importlib.util.spec_from_file_location(PACKAGE, ROOT + "/__init__.py", submodule_search_locations=[ROOT])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)

    failures = {}
    for name in MODULES:
        try:
            importlib.import_module(name)
        except BaseException:
            failures[name] = traceback.format_exc()
    try:
        import comfy  # the control: the blocker must really block
        failures["<control>"] = "import comfy succeeded: the blocker does not work"
    except ImportError:
        pass
    print(json.dumps(failures))
    """
)


def core_modules() -> list[str]:
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join([PACKAGE_NAME, *parts]))
    return names


def test_core_imports_without_comfy():
    modules = core_modules()
    if not modules:
        pytest.skip("core/ has no modules yet")
    payload = json.dumps([FORBIDDEN, str(REPO_ROOT), PACKAGE_NAME, modules])
    # -I: no PYTHONPATH, no user site, no cwd on sys.path, so the host tree is not reachable anyway.
    done = subprocess.run([sys.executable, "-I", "-c", _CHILD, payload], capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{trace}" for name, trace in failures.items())


def _imported_names(path):
    """(line, module name) of every import in `path`, inside functions too, and of import_module calls."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
            names = [arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        else:
            continue
        yield from ((node.lineno, name) for name in names)


def test_core_sources_never_name_comfy_modules():
    offenders = [f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
                 for path in sorted(CORE.rglob("*.py")) for line, name in _imported_names(path)
                 if name.split(".")[0] in FORBIDDEN]
    assert not offenders, "\n".join(offenders)


HOST_MODULES = ("comfy", "folder_paths", "server", "execution", "latent_preview", "node_helpers", "nodes", "comfy_extras")


def test_only_nodes_comfy_names_the_host():
    nodes_dir = REPO_ROOT / "nodes"
    files = [p for p in sorted(nodes_dir.rglob("*.py")) if "_comfy" not in p.relative_to(nodes_dir).parts]
    assert len(files) > 5, "the scan must see the node files"
    offenders = [f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
                 for path in files for line, name in _imported_names(path) if name.split(".")[0] in HOST_MODULES]
    assert not offenders, "\n".join(offenders)


LAYERS = {"": 0, "run": 1, "data": 2, "model": 3, "train": 4}  # "": config, presets, errors, seeding


def _layer_of(module: str) -> str:
    """'train' for flux_lora_lab.core.train.trainer, '' for flux_lora_lab.core.config."""
    parts = module.split(".")
    return parts[2] if len(parts) >= 3 and parts[2] in LAYERS else ""


def test_core_layers_import_only_downwards():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).with_suffix("").parts
        module = ".".join([PACKAGE_NAME, *(rel[:-1] if rel[-1] == "__init__" else rel)])
        package = module if rel[-1] == "__init__" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.level > 0):
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            targets = [".".join(base + ([node.module] if node.module else []))]
            if not node.module:  # from . import a, b: each name is a module
                targets = [f"{targets[0]}.{alias.name}" for alias in node.names]
            for target in targets:
                if not target.startswith(f"{PACKAGE_NAME}.core"):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} reaches outside core: {target}")
                elif LAYERS[_layer_of(target)] > LAYERS[_layer_of(module)]:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} ({_layer_of(module) or 'base'}) "
                                     f"imports {target} ({_layer_of(target)}), a layer above it")
    assert not offenders, "\n".join(offenders)
