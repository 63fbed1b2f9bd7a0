"""run.save_dtype: the LoRA file holds fp16 / bf16 / fp32 tensors, and ComfyUI's own loader applies it
to the precision of that dtype: its output equals our model with the LoRA rounded to the dtype (to fp32
noise), and differs from the unrounded LoRA by no more than the dtype's rounding does."""


import pytest
import torch
from safetensors import safe_open

from tests.comfy_host import import_comfy

import_comfy()

import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402

from flux_lora_lab.core.model import lora  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.sections import RunSettings  # noqa: E402
from flux_lora_lab.core.train.checkpoint import SAVE_DTYPES, LoraFileInfo  # noqa: E402
from flux_lora_lab.core.train.finite import NonFiniteError  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer, build_tiny_model_patcher  # noqa: E402
from tests.comfy_lora import load_through_comfy, patched_forward  # noqa: E402

# Relative output change from rounding the LoRA to the dtype (fp16: 11-bit mantissa, bf16: 8-bit).
ROUNDING_BOUND = {"fp16": 2e-3, "bf16": 2e-2, "fp32": 1e-5}


def _adapter(variant):
    adapter = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(adapter.module, LoraSettings(rank=4, alpha=2.0, targets="all"))
    g = torch.Generator().manual_seed(7)
    weights = {name: lora.LoraWeights(0.3 * torch.randn(w.down.shape, generator=g),
                                      0.3 * torch.randn(w.up.shape, generator=g), w.alpha)
               for name, w in lora.lora_state_dict(adapter.module).items()}
    lora.load_lora_state_dict(adapter.module, weights)
    return adapter


def _predict(adapter, inputs):
    with torch.no_grad():
        return adapter.predict(*inputs)


def _inputs(adapter):
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(2, adapter.latent_channels, 8, 8, generator=g)
    context = torch.randn(2, 5, adapter.module.txt_in.in_features, generator=g)
    pooled = torch.randn(2, adapter.pooled_dim, generator=g) if adapter.pooled_dim else None
    guidance = torch.tensor([3.5, 3.5]) if adapter.uses_guidance else None
    return latents, torch.tensor([0.3, 0.8]), context, pooled, guidance


def test_fp16_is_the_default():
    assert RunSettings().save_dtype == "fp16"


@pytest.mark.parametrize("variant,layout", [("flux1-dev", "kohya"), ("flux1-dev", "diffusers"), ("flux2-dev", "kohya")])
@pytest.mark.parametrize("save_dtype", ["fp16", "bf16", "fp32"])
def test_comfyui_applies_the_file_to_the_precision_of_its_dtype(tmp_path, caplog, variant, layout, save_dtype):
    adapter = _adapter(variant)
    inputs = _inputs(adapter)
    exact = _predict(adapter, inputs)
    path = LoraFileInfo(adapter.family, "", "", {}, layout=layout, dtype=save_dtype).write(
        tmp_path / "lora.safetensors", lora.lora_state_dict(adapter.module), step=1)
    with safe_open(str(path), framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys() if not k.endswith(".alpha")}
    assert dtypes == {SAVE_DTYPES[save_dtype]}

    patcher = build_tiny_model_patcher(TinyFluxSpec(variant))
    patched, unmatched = load_through_comfy(patcher, comfy.utils.load_torch_file(str(path), safe_load=True), caplog)
    assert unmatched == []
    theirs = patched_forward(patched, *inputs)

    # Our model with the LoRA rounded as the file rounds it (Flux.2 and diffusers files fold alpha/rank into up first).
    folded = variant.startswith("flux2") or layout == "diffusers"
    dtype, scale = SAVE_DTYPES[save_dtype], 2.0 / 4 if folded else 1.0
    rounded = {name: lora.LoraWeights(w.down.to(dtype).float(), (w.up * scale).to(dtype).float() / scale, w.alpha)
               for name, w in lora.lora_state_dict(adapter.module).items()}
    lora.load_lora_state_dict(adapter.module, rounded)
    reference = _predict(adapter, inputs)
    assert ((theirs - reference).norm() / reference.norm()).item() < 1e-5
    drift = ((theirs - exact).norm() / exact.norm()).item()
    assert drift < ROUNDING_BOUND[save_dtype], f"{save_dtype}: {drift:.2e} from the fp32 LoRA"


def test_a_weight_beyond_fp16_is_refused_with_the_fix(tmp_path):
    adapter = _adapter("flux1-dev")
    weights = lora.lora_state_dict(adapter.module)
    name = next(iter(weights))
    weights[name] = lora.LoraWeights(weights[name].down * 1e6, weights[name].up, weights[name].alpha)
    with pytest.raises(NonFiniteError, match="beyond fp16.*run.save_dtype to 'bf16' or 'fp32'"):
        LoraFileInfo(adapter.family, "", "", {}, dtype="fp16").write(tmp_path / "x.safetensors", weights, step=1)
    assert not (tmp_path / "x.safetensors").exists()
    LoraFileInfo(adapter.family, "", "", {}, dtype="bf16").write(tmp_path / "x.safetensors", weights, step=1)
