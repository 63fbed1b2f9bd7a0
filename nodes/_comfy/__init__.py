"""The bridge to the ComfyUI host: the only package that imports comfy, folder_paths and server."""
