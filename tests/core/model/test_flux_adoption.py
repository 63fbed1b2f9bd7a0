"""Adoption: our training tree shares ComfyUI's weights and never changes ComfyUI's module tree.

peft (and quanto) replace a Linear by `setattr` on its parent module. Our tree owns every parent and
only borrows the leaves, so after LoRA injection ComfyUI's model has the same module objects, the
same parameters (same storage, no copy) and the same output as before, while our tree carries the
LoRA under BFL names.
"""

import dataclasses

import peft
import pytest
import torch
from torch import nn

from tests.comfy_host import import_comfy, klein_param

import_comfy()

import comfy.ldm.flux.model  # noqa: E402
import comfy.ops  # noqa: E402

from flux_lora_lab.core.model.adapter import (
    FluxTrainingAdapter,
    TrainingAdapter,
    UnsupportedModelError,
    detect_flux_family,
)  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TINY_FLUX_CONFIGS, TinyFluxSpec, build_tiny_flux_transformer  # noqa: E402
from tests.core.model.flux_reference import make_inputs  # noqa: E402

VARIANTS = ["flux1-dev", "flux1-schnell", "flux2-dev", klein_param()]


def snapshot(model: nn.Module):
    modules = [(name, type(m), id(m)) for name, m in model.named_modules()]
    params = [(name, id(p), p.data_ptr()) for name, p in model.named_parameters()]
    return modules, params


def comfy_out(model, inputs):
    latents, sigmas, context, pooled, guidance = inputs
    with torch.no_grad():
        return model(latents, sigmas, context, y=pooled, guidance=guidance)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lora_injection_leaves_owner_untouched_and_shares_weights(variant):
    owner = build_tiny_flux_transformer(TinyFluxSpec(variant))
    inputs = make_inputs(owner, dtype=torch.float32)
    before, before_out = snapshot(owner), comfy_out(owner, inputs)
    owner_ptrs = {p.data_ptr() for p in owner.parameters()}

    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=True)
    assert set(adapter.module.state_dict()) == set(owner.state_dict())  # exactly the BFL names
    targets = ["double_blocks.0.img_attn.qkv", "single_blocks.1.linear1"]
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)
    peft.inject_adapter_in_model(config, adapter.module)

    assert snapshot(owner) == before
    assert torch.equal(comfy_out(owner, inputs), before_out)  # ComfyUI's model does not see the LoRA
    for name in targets:
        lora_layer = adapter.module.get_submodule(name)
        assert hasattr(lora_layer, "lora_A") and lora_layer.base_layer is owner.get_submodule(name)
    base = [p for n, p in adapter.module.named_parameters() if "lora_" not in n]
    assert {p.data_ptr() for p in base} == owner_ptrs and len(base) == len(owner_ptrs)
    assert not torch.equal(adapter.predict(*inputs).detach(), before_out)  # the LoRA is live in our tree


def test_weights_are_shared_not_copied():
    """A change to ComfyUI's weight (e.g. its own in-place patching) shows in our forward at once."""
    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=False)
    inputs = make_inputs(owner, dtype=torch.float32)
    with torch.no_grad():
        owner.single_blocks[0].linear2.weight.mul_(2.0)
        assert torch.allclose(adapter.predict(*inputs), comfy_out(owner, inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "variant,family,guidance,pooled", [("flux1-dev", "flux1", True, 32), ("flux1-schnell", "flux1", False, 32), ("flux2-dev", "flux2", True, None)]
)
def test_family_description(variant, family, guidance, pooled):
    owner = build_tiny_flux_transformer(TinyFluxSpec(variant))
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=False)
    assert detect_flux_family(owner) == adapter.family == family
    assert adapter.uses_guidance is guidance and adapter.pooled_dim == pooled
    assert adapter.latent_channels == (128 if family == "flux2" else 16)
    assert adapter.patch_size == (1 if family == "flux2" else 2)
    assert isinstance(adapter, TrainingAdapter)


def test_block_linear_names_cover_every_block_linear_in_bfl_form():
    flux1 = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec("flux1-dev")), checkpointing=False)
    flux2 = FluxTrainingAdapter.adopt(build_tiny_flux_transformer(TinyFluxSpec("flux2-dev")), checkpointing=False)
    stream = ["attn.qkv", "attn.proj", "mlp.0", "mlp.2"]
    double2 = {f"double_blocks.{i}.{s}_{n}" for i in range(2) for s in ("img", "txt") for n in stream}
    single2 = {f"single_blocks.{i}.{n}" for i in range(2) for n in ("linear1", "linear2")}
    mods1 = {f"double_blocks.{i}.{s}_mod.lin" for i in range(2) for s in ("img", "txt")}
    mods1 |= {f"single_blocks.{i}.modulation.lin" for i in range(2)}
    assert set(flux2.module.block_linear_names()) == double2 | single2
    assert set(flux1.module.block_linear_names()) == double2 | single2 | mods1


def test_refuses_what_is_not_flux():
    with pytest.raises(UnsupportedModelError, match=r"Linear is not a Flux transformer.*Supported"):
        detect_flux_family(nn.Linear(2, 2))

    class ModelPatcherLike(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = nn.Module()
            self.model.diffusion_model = inner

    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-schnell"))
    with pytest.raises(UnsupportedModelError, match="diffusion_model"):
        FluxTrainingAdapter.adopt(ModelPatcherLike(owner), checkpointing=False)
    owner.distilled_guidance_layer = nn.Identity()
    with pytest.raises(UnsupportedModelError, match="Chroma"):
        detect_flux_family(owner)
    fill = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    fill.params.in_channels = 64
    with pytest.raises(UnsupportedModelError, match="Fill"):
        detect_flux_family(fill)


def test_checkpoint_interval_is_validated():
    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-schnell"))
    with pytest.raises(ValueError, match="checkpoint_every"):
        FluxTrainingAdapter.adopt(owner, checkpointing=True, checkpoint_every=0)
    adapter = FluxTrainingAdapter.adopt(owner, checkpointing=True, checkpoint_every=2)
    assert adapter.module.checkpoint_every == 2
    assert FluxTrainingAdapter.adopt(owner, checkpointing=False, checkpoint_every=0).module.checkpoint_every == 0


def _flux_class_model(**changes):
    config = {**TINY_FLUX_CONFIGS["flux1-dev"], **changes}
    return comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, device="cpu", **config)


_HAS_OVIS = "yak_mlp" in {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}


@pytest.mark.skipif(not _HAS_OVIS, reason="this host's Flux class builds only Flux")
@pytest.mark.parametrize("changes, named", [
    (dict(yak_mlp=True, txt_norm=True, txt_ids_dims=[1, 2]), "Ovis-Image"),
    (dict(vec_in_dim=None, guidance_embed=False, txt_ids_dims=[1, 2]), "LongCat-Image"),
    (dict(txt_ids_dims=[2]), "a model"),
])
def test_models_that_reuse_the_flux_class_are_refused_naming_what_was_found(changes, named):
    """Current ComfyUI builds Ovis-Image and LongCat-Image with its Flux class; training them with
    the Flux forward would be wrong. Only the proven variants pass, the rest are named."""
    with pytest.raises(UnsupportedModelError, match=rf"this is {named} built on ComfyUI's Flux class .*txt_ids_dims="):
        detect_flux_family(_flux_class_model(**changes))


def test_a_look_alike_class_is_refused():
    class NotFlux(type(build_tiny_flux_transformer(TinyFluxSpec("flux1-dev")))):
        pass

    owner = build_tiny_flux_transformer(TinyFluxSpec("flux1-dev"))
    owner.__class__ = NotFlux
    with pytest.raises(UnsupportedModelError, match="NotFlux is not ComfyUI's Flux class"):
        detect_flux_family(owner)
