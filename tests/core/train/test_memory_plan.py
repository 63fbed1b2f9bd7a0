"""The memory plan's activation constants are what autograd really keeps, and its arithmetic adds up.

ACTIVATION_BYTES was measured with saved-tensor hooks on ComfyUI's Flux classes; this re-measures it
on two widths and two token counts (tensors deduplicated by storage, parameters excluded), so a
change to the forward that moves the activation memory fails here until the constant is updated.
"""

import pytest
import torch

from tests.comfy_host import import_comfy

import_comfy()

import comfy.ldm.flux.model  # noqa: E402
import comfy.ops  # noqa: E402

from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.model import lora
from flux_lora_lab.core.train import memory_plan  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.nodes._comfy.host import flux_params  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TINY_FLUX_CONFIGS  # noqa: E402

FAMILY = {"flux1-dev": "flux1", "flux2-dev": "flux2"}


def saved_bytes(variant, hidden, double, single, side, compute):
    heads, head = hidden // 64, 64
    axes = [16, 24, 24] if variant == "flux1-dev" else [16, 16, 16, 16]
    assert sum(axes) == head
    dtype = torch.bfloat16 if compute == "bf16" else torch.float32
    config = dict(TINY_FLUX_CONFIGS[variant], hidden_size=hidden, num_heads=heads, depth=double, depth_single_blocks=single, axes_dim=axes)
    owner = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, device="cpu", dtype=dtype, **flux_params(config))
    for p in owner.parameters():
        torch.nn.init.normal_(p, std=0.02)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=False)
    lora.attach_lora(adapter.module, LoraSettings(rank=16, targets="all"), under_autocast=compute == "bf16")  # as the trainer
    p = owner.params
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, p.in_channels, side, side, generator=g).to(dtype)
    context = torch.randn(1, 64, p.context_in_dim, generator=g).to(dtype)
    pooled = torch.randn(1, p.vec_in_dim, generator=g).to(dtype) if p.vec_in_dim else None
    params = {q.untyped_storage().data_ptr() for q in adapter.module.parameters()}
    seen, total = set(), 0

    def pack(tensor):
        nonlocal total
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            total += tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16, enabled=compute == "bf16"):
        adapter.predict(latents, torch.tensor([0.5]), context, pooled, torch.tensor([3.5]) if p.guidance_embed else None)
    tokens = (side // p.patch_size) ** 2 + 64
    return total, tokens


@pytest.mark.parametrize("compute", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev"])
def test_activation_constants_are_what_autograd_keeps(variant, compute):
    element = 2 if compute == "bf16" else 4
    side = 32 if variant == "flux1-dev" else 16  # 256 image tokens either way
    for hidden in (256, 512):
        one_double, tokens = saved_bytes(variant, hidden, 1, 0, side, compute)
        two_double, _ = saved_bytes(variant, hidden, 2, 0, side, compute)
        one_single, _ = saved_bytes(variant, hidden, 0, 1, side, compute)
        two_single, _ = saved_bytes(variant, hidden, 0, 2, side, compute)
        unit = tokens * hidden * element
        measured = ((two_double - one_double) / unit, (two_single - one_single) / unit)
        expected = memory_plan.ACTIVATION_BYTES[(FAMILY[variant], compute)]
        for got, want in zip(measured, expected):
            assert abs(got - want) / want < 0.1, f"{variant} {compute} hidden {hidden}: measured {measured}, planned {expected}"


def shape(**changes):
    base = dict(family="flux1", hidden=3072, mlp_ratio=4.0, double_blocks=19, single_blocks=38,
                block_weight_count=11_800_000_000, block_weight_bytes=23_600_000_000,
                largest_block_weight=3072 * 12288, single_block_weight_count=141_000_000, other_bytes=200_000_000)
    return memory_plan.ModelShape(**{**base, **changes})


def run(**changes):
    base = dict(quantization="none", compute="bf16", lora_params=20_000_000, optimizer="adamw", ema=False, batch=1,
                tokens=4096 + 512, checkpoint_every=1)
    return memory_plan.RunShape(**{**base, **changes})


def test_the_plan_follows_the_settings():
    plain = memory_plan.plan(shape(), run())
    assert plain.parts["base weights"] == 23_800_000_000
    assert plain.parts["LoRA + optimizer"] == 20_000_000 * 16
    int8 = memory_plan.plan(shape(), run(quantization="qint8")).parts["base weights"]
    int4 = memory_plan.plan(shape(), run(quantization="qint4")).parts["base weights"]
    assert int4 < int8 < plain.parts["base weights"] / 1.9
    assert memory_plan.plan(shape(), run(optimizer="adamw8bit")).parts["LoRA + optimizer"] == 20_000_000 * 10
    unchecked = memory_plan.plan(shape(), run(checkpoint_every=0)).parts["activations"]
    every_2 = memory_plan.plan(shape(), run(checkpoint_every=2)).parts["activations"]
    assert plain.parts["activations"] < every_2 < unchecked
    per_token = plain.parts["activations"] - memory_plan.RUNTIME_BYTES
    assert memory_plan.plan(shape(), run(batch=2)).parts["activations"] - memory_plan.RUNTIME_BYTES == 2 * per_token
    assert plain.peak == sum(plain.parts.values()) and "peak:" in plain.describe()
    swapped = memory_plan.plan(shape(), run(blocks_to_swap=20)).parts["base weights"]
    assert swapped == plain.parts["base weights"] - 18 * 141_000_000 * 2  # 2 blocks in flight, bf16
    advice = memory_plan.plan(shape(), run()).advice(free=12 * 2**30)
    assert "largest part is base weights" in advice and "int8" in advice


def _everywhere(size: int) -> dict:
    return {mode: size for mode in memory_plan.QUANT_BYTES}


def test_auto_keeps_the_loaded_weights_when_they_fit():
    roomy = memory_plan.choose(shape(), run(checkpoint_every=0), _everywhere(80 * 2**30))
    assert roomy.run == run(checkpoint_every=0) and "did not fit" not in roomy.reason


def test_auto_picks_the_least_lossy_setting_that_fits_and_says_why():
    model, wanted = shape(), run(checkpoint_every=0)
    peaks = {}
    for mode in memory_plan.AUTO_QUANTIZATION:
        for every in (0, 1):
            peaks[mode, every] = memory_plan.plan(model, run(quantization=mode, checkpoint_every=every)).peak
    assert peaks["none", 1] < peaks["none", 0] and peaks["qint4", 1] < peaks["qfloat8", 1] < peaks["qfloat8", 0]
    budget = peaks["qfloat8", 1] + 1  # fp8 fits only with checkpointing
    choice = memory_plan.choose(model, wanted, _everywhere(budget))
    assert choice.plan.peak <= budget
    fitting = [k for k, v in peaks.items() if v <= budget]
    order = [(m, e) for m in memory_plan.AUTO_QUANTIZATION for e in (0, 1)]
    first = min(fitting, key=order.index)
    assert (choice.run.quantization, choice.run.checkpoint_every) == first
    assert choice.reason.startswith("auto: ") and "did not fit: the loaded weights, no checkpointing needs" in choice.reason


def test_auto_swaps_blocks_only_after_int4_and_never_fits_the_impossible():
    model, wanted = shape(), run()
    int4 = memory_plan.plan(model, run(quantization="qint4")).peak
    choice = memory_plan.choose(model, wanted, _everywhere(int4 - 1))
    assert choice.run.quantization == "qint4" and choice.run.blocks_to_swap >= 4 and choice.plan.peak < int4
    assert "blocks swapped" in choice.reason
    assert memory_plan.choose(model, wanted, _everywhere(2**20)) is None


def test_auto_weighs_what_each_mode_may_use():
    """A quantized run frees ComfyUI's resident copy, 'none' reuses it: the budgets differ per mode."""
    model, wanted = shape(), run()
    budgets = _everywhere(memory_plan.plan(model, run(quantization="qint8")).peak)
    budgets["none"] = memory_plan.plan(model, wanted).peak
    assert memory_plan.choose(model, wanted, budgets).run.quantization == "none"
    budgets["none"] -= 1
    assert memory_plan.choose(model, wanted, budgets).run.quantization == "qfloat8"


def test_auto_checkpointing_tries_least_recompute_first():
    intervals = memory_plan.checkpoint_intervals(shape())  # 19 + 38 = 57 blocks
    assert intervals[:4] == [0, 57, 56, 28] and intervals[-2:] == [2, 1]  # 0, 1, 2, 3 checkpointed ... 29, 57
    checkpointed = [-(-57 // every) for every in intervals[1:]]
    assert checkpointed == sorted(set(checkpointed)) and checkpointed[0] == 1 and checkpointed[-1] == 57
    with pytest.raises(ValueError, match="auto"):
        memory_plan.plan(shape(), run(checkpoint_every=None))


def test_auto_checkpointing_recomputes_nothing_with_room_and_every_block_when_tight():
    model, auto, fixed = shape(), run(checkpoint_every=None), ("none",)
    roomy = memory_plan.choose(model, auto, _everywhere(200 * 2**30), quantizations=fixed)
    assert roomy.run.checkpoint_every == 0 and "no checkpointing" in roomy.reason
    every_block = memory_plan.plan(model, run(checkpoint_every=1)).peak
    tight = memory_plan.choose(model, auto, _everywhere(every_block), quantizations=fixed)
    assert tight.run.checkpoint_every == 1 and tight.run.quantization == "none"
    assert "checkpointing every block" in tight.reason and "more" in tight.reason  # long list shortened
    assert memory_plan.choose(model, auto, _everywhere(every_block - 1), quantizations=fixed) is None


def test_auto_checkpointing_in_between_takes_the_least_recompute_that_fits():
    model, auto = shape(), run(checkpoint_every=None)
    peaks = {every: memory_plan.plan(model, run(checkpoint_every=every)).peak for every in memory_plan.checkpoint_intervals(model)}
    budget = (peaks[0] + peaks[2]) // 2  # intervals cannot express counts between 29 (every 2nd) and 57
    choice = memory_plan.choose(model, auto, _everywhere(budget), quantizations=("none",))
    every = choice.run.checkpoint_every
    assert every not in (0, 1) and choice.plan.peak <= budget
    order = memory_plan.checkpoint_intervals(model)
    assert all(peaks[e] > budget for e in order[:order.index(every)])  # nothing with less recompute fits


def test_auto_quantization_with_auto_checkpointing_keeps_quality_first():
    """The loaded weights with every block checkpointed beat fp8 without checkpointing: quality, then speed."""
    model, auto = shape(), run(checkpoint_every=None)
    budget = memory_plan.plan(model, run(checkpoint_every=1)).peak
    choice = memory_plan.choose(model, auto, _everywhere(budget))
    assert (choice.run.quantization, choice.run.checkpoint_every) == ("none", 1)


def test_checkpoint_interval_is_auto_by_default():
    from flux_lora_lab.core.sections import TrainSettings

    assert TrainSettings().checkpoint_every_n_blocks is None and TrainSettings().gradient_checkpointing
    assert TrainSettings(checkpoint_every_n_blocks=2).checkpoint_every_n_blocks == 2
