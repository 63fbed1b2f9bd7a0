"""`train.compile`: a step through the regionally compiled tree (core/model/regional_compile.py)
gives the eager step's loss and LoRA gradients, and `auto` compiles only on CUDA with Triton, an
unquantized base and no block swap."""

import pytest
import torch

from tests.comfy_host import import_comfy

import_comfy()

from flux_lora_lab.core.model import lora, regional_compile  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs  # noqa: E402


def loss_and_grads(compiled: bool, checkpointing: bool):
    model = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev", dtype=torch.float32))
    adapter = FluxTrainingAdapter.adopt(model, checkpointing=checkpointing)
    lora.attach_lora(adapter.module, LoraSettings(rank=4, targets="all", train_modulation=True))
    torch.manual_seed(0)
    for _, p in lora.trainable_parameters(adapter.module):
        torch.nn.init.normal_(p, std=0.05)
        p.requires_grad_(True)
    if compiled:
        assert regional_compile.compile_blocks(adapter.module) == len(model.double_blocks) + len(model.single_blocks)
    inputs = make_inputs(model, dtype=torch.float32, height=8, width=12)
    loss = adapter.predict(*inputs).square().mean()
    loss.backward()
    return loss.item(), [p.grad for _, p in lora.trainable_parameters(adapter.module)]


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_compiled_step_equals_eager(checkpointing):
    torch._dynamo.reset()
    eager_loss, eager = loss_and_grads(False, checkpointing)
    loss, grads = loss_and_grads(True, checkpointing)
    assert loss == pytest.approx(eager_loss, rel=1e-5)
    assert all(g is not None for g in grads)
    error = (torch.cat([g.flatten() for g in grads]) - torch.cat([g.flatten() for g in eager])).norm()
    assert (error / torch.cat([g.flatten() for g in eager]).norm()).item() < 1e-4


def test_auto_compiles_on_cuda_only_where_nothing_breaks_it():
    cuda = torch.device("cuda", 0)
    assert regional_compile.wanted("auto", cuda, has_triton=True)
    assert not regional_compile.wanted("auto", torch.device("cpu"), has_triton=True)
    assert not regional_compile.wanted("auto", cuda, has_triton=False), "no Triton (Windows' ComfyUI): eager"
    assert not regional_compile.wanted("auto", cuda, has_triton=True, quantized=True)
    assert not regional_compile.wanted("auto", cuda, has_triton=True, swapping=True)
    assert regional_compile.wanted("on", cuda, has_triton=False, quantized=True), "on is the user's choice"
    assert regional_compile.wanted("on", torch.device("cpu")) and not regional_compile.wanted("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="train.compile"):
        regional_compile.wanted("yes", torch.device("cpu"))
