"""Drive ComfyUI's own `TrainLoraNode` (comfy_extras/nodes_train.py) in-process and time its steps.

The node is called as a graph would call it (`TrainLoraNode.execute`, V3, every input a one-item
list because the schema sets `is_input_list`). It runs all `steps` steps inside one call, so the
step clock is its loss callback: `TrainSampler` calls it once per step after backward, and the
interval between two calls is exactly one step (optimizer update + next forward/backward). The
callback is wrapped, not replaced: the node still records its loss map.

What the native node trains (read from execute): a LoRA (alpha 1) on the weight of *every* ComfyUI
op with a weight function and a 2-D weight in the whole diffusion model (all block linears incl.
modulations, plus img_in, txt_in, time/vector/guidance embedders and the final layer), and a full
trainable difference vector on every bias. RMSNorm scales are plain parameters and are not trained.
"""

from __future__ import annotations

import time

from .workload import Pool, Workload


def conditioning(pool: Pool) -> list:
    """One Flux conditioning entry per image, guidance 1.0 (what our engine feeds the model too)."""
    return [[pool.context[i:i + 1].clone(), {"pooled_output": pool.pooled[i:i + 1].clone(), "guidance": 1.0}]
            for i in range(pool.latents.shape[0])]


def latent_list(pool: Pool) -> list:
    """One LATENT per image, as a list input delivers them. ComfyUI 0.3.75's node fails on a single
    batched LATENT (`multi_res` is only set on the list path: UnboundLocalError), so this is the
    only way it runs."""
    return [{"samples": pool.latents[i:i + 1].clone()} for i in range(pool.latents.shape[0])]


def _schema_defaults(node, exclude) -> dict:
    """Every other input of the node at its schema default, as a one-item list. Hosts add inputs
    (ComfyUI 0.33.0 has five more required ones than 0.3.75); the defaults are what a user who
    did not touch them gets, so the comparison stays like for like."""
    return {inp.id: [inp.default] for inp in node.define_schema().inputs if inp.id not in exclude}


def run_native(workload: Workload, pool: Pool, patcher, steps: int, checkpointing: bool, *, clock=time.process_time) -> dict:
    """Train `steps` steps with the native node; step end times (`clock`: process CPU time on the CPU
    bench, wall time on a GPU, where the callback's loss value waits for the step) and what it trained."""
    import comfy_extras.nodes_train as nodes_train

    stamps: list[float] = []
    original_init = nodes_train.TrainSampler.__init__

    def timed_init(self, *args, loss_callback=None, **kwargs):
        def clocked(loss):
            stamps.append(clock())
            loss_callback(loss)

        original_init(self, *args, loss_callback=clocked, **kwargs)

    dtype = "bf16" if workload.precision == "bf16" else "fp32"
    inputs = dict(
        model=[patcher], latents=latent_list(pool), positive=[conditioning(pool)],
        batch_size=[workload.batch_size], grad_accumulation_steps=[1], steps=[steps],
        learning_rate=[workload.learning_rate], rank=[workload.rank], optimizer=["AdamW"],
        loss_function=["MSE"], seed=[workload.seed], training_dtype=[dtype], lora_dtype=["fp32"],
        algorithm=["LoRA"], gradient_checkpointing=[checkpointing], existing_lora=["[None]"],
    )
    inputs.update(_schema_defaults(nodes_train.TrainLoraNode, exclude=inputs))
    nodes_train.TrainSampler.__init__ = timed_init
    try:
        start = clock()
        output = nodes_train.TrainLoraNode.execute(**inputs)
        total = clock() - start
    finally:
        nodes_train.TrainSampler.__init__ = original_init
    # 0.3.75 returns (model, lora, loss map, steps); 0.33.0 (lora, loss map, steps).
    lora_sd, loss_map = output.result[-3], output.result[-2]
    lora_params = sum(t.numel() for k, t in lora_sd.items() if ".lora_" in k)
    return {
        "start": start, "stamps": stamps, "total_s": total, "losses": list(loss_map["loss"]),
        "trainable_params": sum(t.numel() for t in lora_sd.values()),
        "lora_params": lora_params,
        "bias_and_other_params": sum(t.numel() for t in lora_sd.values()) - lora_params,
        "lora_layers": sum(1 for k in lora_sd if k.endswith("lora_down.weight")),
    }

