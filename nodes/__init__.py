"""The nodes layer: thin V3 nodes over core/, and the one bridge to the ComfyUI host (_comfy.py)."""
