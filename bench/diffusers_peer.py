"""The standard diffusers recipe's inner step (examples/dreambooth/train_dreambooth_lora_flux.py) on
the workload's shapes, timed like the other peers.

What is the recipe's and kept: `FluxTransformer2DModel` (here a config of the workload's shape:
hidden 256 = 4 heads x 64, 2 + 4 blocks, RoPE axes (16, 24, 24), T5 width 64, pooled 32, guidance
embedding, 64 packed channels = 16 latent channels x 2 x 2), a peft LoRA added with
`transformer.add_adapter(LoraConfig(...))`, `transformer.enable_gradient_checkpointing()` when
checkpointing, packed latents and the ids `FluxPipeline` builds, timestep = sigma (its
`timesteps / 1000`), target `noise - latents`, a mean-squared loss, `accelerator.backward` =
`loss.backward()` under bf16 autocast (accelerate's mixed precision), AdamW, `zero_grad`.
With `mixed_precision=bf16` the recipe stores the frozen base in bf16 (`transformer.to(weight_dtype)`).

What is set equal to the other peers instead of the recipe's defaults: rank 16 with alpha 1 (the
recipe: alpha = rank; the scale does not change the cost), the LoRA on every linear inside the
double and single blocks (the recipe's default list leaves out the modulations, which ours trains
here), fp32 LoRA weights in both precisions (the recipe casts them to fp32 only for fp16), AdamW's lr
and weight decay from the workload, uniform sigmas, no loss weighting, no gradient clipping (the
recipe clips at 1.0 by default; ours and the native node do not clip here). diffusers splits the
fused qkv (and a single block's linear1) into separate linears, so its LoRA has a few more
parameters on the same layers; the report shows the counts.
"""

from __future__ import annotations

import time

import torch

from .workload import Pool, Workload


def build_transformer(workload: Workload, device: str = "cpu"):
    """A seeded FluxTransformer2DModel with the workload's shape, built on `device`, base stored in
    the workload's base dtype."""
    from diffusers import FluxTransformer2DModel

    shape = workload.flux_config()
    torch.manual_seed(workload.seed)
    with torch.device(device):
        model = FluxTransformer2DModel(
            patch_size=1, in_channels=16 * shape["patch_size"] ** 2, num_layers=workload.double_blocks,
            num_single_layers=workload.single_blocks, attention_head_dim=workload.hidden // workload.heads,
            num_attention_heads=workload.heads, joint_attention_dim=workload.context_dim,
            pooled_projection_dim=workload.pooled_dim, guidance_embeds=True, axes_dims_rope=tuple(shape["axes_dim"]))
    return model.to(workload.base_dtype).requires_grad_(False)


def block_linears(model) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and name.startswith(("transformer_blocks.", "single_transformer_blocks."))]


def _pack(latents: torch.Tensor) -> torch.Tensor:
    """FluxPipeline._pack_latents: (B, C, H, W) -> (B, H/2 * W/2, C * 4)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def _image_ids(h: int, w: int) -> torch.Tensor:
    """FluxPipeline._prepare_latent_image_ids: (row, col) per packed token, axis 0 zero."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def run_diffusers(workload: Workload, pool: Pool, patcher, steps: int, checkpointing: bool, *,
                  device: str = "cpu", clock=time.process_time) -> dict:
    """Train `steps` steps of the recipe's loop on `pool`; step end times (`clock`: process CPU time on
    the CPU bench, wall time on a GPU, where `loss.item()` waits for the step) and counts. `patcher`
    is unused (the other peers share ComfyUI's MODEL; diffusers builds its own)."""
    from peft import LoraConfig

    model = build_transformer(workload, device)
    model.add_adapter(LoraConfig(r=workload.rank, lora_alpha=1, init_lora_weights="gaussian",
                                 target_modules=block_linears(model)))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # fp32 LoRA weights, as ours and the native node keep them
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(params, lr=workload.learning_rate, weight_decay=workload.weight_decay)
    bf16 = workload.precision == "bf16"
    n, s = pool.latents.shape[0], workload.latent_size
    img_ids, txt_ids = _image_ids(s, s).to(device), torch.zeros(workload.text_tokens, 3, device=device)
    generator = torch.Generator().manual_seed(workload.seed)
    stamps: list[float] = []
    losses: list[float] = []
    start = clock()
    for step in range(steps):
        i = step % n
        latents = pool.latents[i:i + 1].to(device)
        noise = torch.randn(latents.shape, generator=generator).to(device)
        sigmas = torch.rand(1, generator=generator).to(device)
        noisy = (1.0 - sigmas[:, None, None, None]) * latents + sigmas[:, None, None, None] * noise
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            pred = model(hidden_states=_pack(noisy).to(workload.base_dtype), timestep=sigmas,
                         guidance=torch.full((1,), 1.0, device=device),
                         pooled_projections=pool.pooled[i:i + 1].to(device, workload.base_dtype),
                         encoder_hidden_states=pool.context[i:i + 1].to(device, workload.base_dtype),
                         txt_ids=txt_ids, img_ids=img_ids, return_dict=False)[0]
        loss = torch.mean((pred.float() - _pack(noise - latents)) ** 2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        stamps.append(clock())
    total = clock() - start
    lora_params = sum(p.numel() for p in params)
    return {"start": start, "stamps": stamps, "total_s": total, "losses": losses, "trainable_params": lora_params,
            "lora_params": lora_params, "bias_and_other_params": 0,
            "lora_layers": sum(1 for name, _ in model.named_modules() if name.endswith(".lora_A"))}
