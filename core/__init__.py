"""The training engine: pure torch / peft / quanto code that never imports ComfyUI.

Layers, each importing only those below it (tests/test_boundary.py checks it):
  train/   one training run: the loop, flow matching, optimizers, checkpoints, resume, memory plan
  model/   which Flux it is, the training forward over ComfyUI's weights, the LoRA and its files
  data/    image folders -> checked, bucketed, cached encodings
  run/     background runs: thread, controls, events, run folder
  the base: config.py (TrainConfig) over sections.py, lora_settings.py and setting.py (the settings and how they are
  checked), presets.py, lora_selection.py (target and block words), seeding.py, errors.py
"""
