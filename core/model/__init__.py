"""The model being trained: which Flux it is (flux_arch, flux_family), our training forward over
ComfyUI's weights (flux, adapter, ownership, block_swap, quant), and the LoRA on it (lora,
lora_random) with its portable files (lora_format, lora_diffusers). Uses run/ (atomic writes),
the shared seeding and the base modules; never train/."""
