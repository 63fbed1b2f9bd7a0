"""Start and stop the real ComfyUI host (`.comfy-<host>/`, scripts/hosts.py) with this pack loaded: the one launch recipe
shared by `make serve`, `make demo` and the end-to-end tests (tests/harness/server.py).

The server runs in its own base directory (`--base-directory`), so models, inputs, outputs, the user
database and custom_nodes all live there and nothing of the user's leaks in or out; the pack is
symlinked into `<base>/custom_nodes/` under its registry name. Standard library only, so it can be
imported before (and outside) the venv.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.hosts import REPO_ROOT, selected

HOST = selected()
COMFY_DIR = HOST.comfy_dir
VENV_PYTHON = HOST.python
PACK_DIRNAME = "comfyui-flux-lora-lab"  # the folder name ComfyUI serves the JS under: /extensions/<name>/
BASE_SUBDIRS = ("custom_nodes", "models/diffusion_models", "models/loras", "input", "output", "temp", "user")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just handed out (closed again at once; a race is possible but unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def prepare_base_dir(base_dir: Path) -> Path:
    """Create the base directory layout and link the pack into its custom_nodes (idempotent)."""
    base_dir = Path(base_dir).resolve()
    for sub in BASE_SUBDIRS:
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    link = base_dir / "custom_nodes" / PACK_DIRNAME
    if link.is_symlink() and link.resolve() != REPO_ROOT:
        link.unlink()  # a stale link from another clone of the pack
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    return base_dir


def server_command(base_dir: Path, port: int, host: str = "127.0.0.1", cpu: bool = True, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The ComfyUI command line. API nodes are off (they reach the internet and slow the start);
    custom nodes stay ON (never --disable-all-custom-nodes: the pack is one)."""
    base_dir = Path(base_dir).resolve()
    cmd = [
        str(VENV_PYTHON), str(COMFY_DIR / "main.py"),
        "--listen", host, "--port", str(port),
        "--base-directory", str(base_dir),
        # The default database lives in the host's user/, shared by every server; keep it per base dir.
        "--database-url", f"sqlite:///{base_dir / 'user' / 'comfyui.db'}",
        "--disable-auto-launch", "--disable-api-nodes", "--preview-method", "none",
    ]
    if cpu:
        cmd.append("--cpu")
    return cmd + list(extra_args)


def check_host_installed() -> None:
    if not (COMFY_DIR / "main.py").is_file() or not VENV_PYTHON.is_file():
        raise RuntimeError(f"ComfyUI {HOST.name} host or venv missing ({COMFY_DIR}, {VENV_PYTHON}): "
                           f"run `make setup HOST={HOST.name}` first")


class PortTakenError(RuntimeError):
    """The server could not bind its port."""


class ComfyServer:
    """A headless ComfyUI process writing its log to a file. Use as a context manager, or
    `start()` / `stop()`. `url` is http://host:port. `threads` caps torch's CPU threads."""

    def __init__(self, base_dir: Path, port: int | None = None, host: str = "127.0.0.1", cpu: bool = True,
                 log_path: Path | None = None, extra_args: tuple[str, ...] = (), threads: int | None = None):
        self.base_dir = prepare_base_dir(base_dir)
        self.host = host
        self._auto_port = port is None
        self.port = port or free_port(host)
        self.cpu = cpu
        self.log_path = Path(log_path) if log_path else self.base_dir / "comfyui.log"
        self.extra_args = tuple(extra_args)
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 180.0) -> "ComfyServer":
        """Launch and wait until /system_stats answers. An auto-picked port that another process
        grabbed in the meantime (several test sessions share a machine) is replaced, twice at most."""
        check_host_installed()
        attempts_left = 3 if self._auto_port else 1
        while True:
            try:
                return self._launch(timeout)
            except PortTakenError:
                attempts_left -= 1
                if attempts_left == 0:
                    raise
                self.port = free_port(self.host)

    def _launch(self, timeout: float) -> "ComfyServer":
        cmd = server_command(self.base_dir, self.port, self.host, self.cpu, self.extra_args)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.threads:
            # Tiny models: torch's thread hand-offs cost more than the maths, and on shared cores
            # a 2-thread pool that spins measured 10x slower than one thread.
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            # Own session: stop() signals this server's process group, nothing else.
            self.process = subprocess.Popen(cmd, cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_ready(t0 + timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = PortTakenError if "address already in use" in self.log_text() else RuntimeError
                raise error(f"ComfyUI exited with code {self.process.returncode} while starting.\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/system_stats", timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"HTTP {response.status}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last_error = str(exc)  # not listening yet: keep polling
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer {self.url}/system_stats in time ({last_error}).\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Linux: SIGTERM the server when the process that started it dies (a killed pytest or demo
    must not leave a server holding a port and RAM). Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cuda_available() -> bool:
    """Ask the venv's torch (not this interpreter's) whether a CUDA device is usable."""
    probe = [str(VENV_PYTHON), "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"]
    return subprocess.run(probe, capture_output=True).returncode == 0
