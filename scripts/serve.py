"""`make serve`: the real ComfyUI (`.comfy-<host>/`, HOST=0.33.0 by default) in the foreground with this pack loaded.

Base directory `.cache/serve-base/` (models, inputs, outputs, user settings; the pack symlinked into
its custom_nodes), CPU unless a CUDA device is usable. Put Flux files in
`.cache/serve-base/models/diffusion_models/` etc., or pass --base-dir to use another folder.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.comfy_server import COMFY_DIR, REPO_ROOT, check_host_installed, cuda_available, prepare_base_dir, server_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1: this machine only)")
    parser.add_argument("--base-dir", type=Path, default=REPO_ROOT / ".cache" / "serve-base")
    parser.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    args = parser.parse_args()

    check_host_installed()
    base_dir = prepare_base_dir(args.base_dir)
    cpu = args.cpu or not cuda_available()
    cmd = server_command(base_dir, args.port, args.host, cpu=cpu)
    print(f"[serve] ComfyUI at http://{args.host}:{args.port} ({'CPU' if cpu else 'GPU'}), base directory {base_dir}", flush=True)
    os.chdir(COMFY_DIR)
    os.execv(cmd[0], cmd)  # become the server: its log goes to this terminal, Ctrl-C stops it


if __name__ == "__main__":
    main()
