"""The training engine: pure torch / peft / quanto code that never imports ComfyUI."""
