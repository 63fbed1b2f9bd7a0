"""LoRA file checks before ComfyUI applies a file (nodes/_comfy/lora_files.py), for LoKr files, in
process on the real host: a fitting LoKr passes, one whose Kronecker product does not fit its layer
is refused naming the layer (ComfyUI itself only logs it and renders the layer unpatched)."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.comfy_host import import_comfy

import_comfy()

from flux_lora_lab.core.model import lora, lora_format  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.nodes._comfy.lora_files import LoraFileError, checked_lora  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer, build_tiny_model_patcher  # noqa: E402


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev"])
def test_a_lokr_that_fits_passes_and_one_that_does_not_is_named(tmp_path, variant):
    adapter = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec(variant)), checkpointing=False)
    lora.attach_lora(adapter.module, LoraSettings(network="lokr", rank=2, targets="attention"))
    good = lora_format.save_lora(tmp_path / "good.safetensors", lora.lora_state_dict(adapter.module), adapter.family)
    model = build_tiny_model_patcher(TinyFluxSpec(variant))
    assert set(checked_lora(model, good)) == set(load_file(str(good)))

    tensors = load_file(str(good))
    key = next(k for k in sorted(tensors) if k.endswith(".lokr_w1") and "img_attn" in k and "qkv" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(LoraFileError, match=r"does not fit .*img_attn\.qkv\.weight: model \(192, 64\), LoKr \(208, 64\)"):
        checked_lora(model, tmp_path / "bad.safetensors")
