"""LoadFluxForTraining and its TrainingModelHandle, on ComfyUI's real tiny Flux MODELs (in-process).

The central proof: training through the handle leaves the shared MODEL untouched: ComfyUI's own
sampler on that MODEL gives bit-identical latents after a real `core.train.trainer.train` run (LoRA on
the adopted weights, with and without int8 quantization) as before it, its weights and module types
are unchanged and no patch was added. Only the non-Flux check uses a stand-in object.
"""

import functools

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.comfy_host import import_comfy

import_comfy()

import comfy.model_management  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.sample  # noqa: E402
import folder_paths  # noqa: E402
import node_helpers  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402

from flux_lora_lab.core.model import quant  # noqa: E402
from flux_lora_lab.core.model.adapter import FluxTrainingAdapter, UnsupportedModelError  # noqa: E402
from flux_lora_lab.core.config import TrainConfig  # noqa: E402
from flux_lora_lab.core.run.control import RunControl  # noqa: E402
from flux_lora_lab.core.model.quant import is_quantized  # noqa: E402
from flux_lora_lab.core.run.rundir import RunDir  # noqa: E402
from flux_lora_lab.core.train.trainer import TrainingJob, train  # noqa: E402
from flux_lora_lab.nodes._comfy.model import QUANTIZATION, TrainingModelHandle, model_overrides, model_sections  # noqa: E402
from flux_lora_lab.nodes.dataset import DatasetFromFolder  # noqa: E402
from flux_lora_lab.nodes.load_model import LoadFluxForTraining  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_flux_models, build_tiny_model_patcher  # noqa: E402
from tests.core.model.flux_reference import make_inputs  # noqa: E402
from tests.nodes.test_dataset_node import DEFAULTS as DATASET_DEFAULTS  # noqa: E402

LATENT = {"flux1-dev": (16, 8, 8), "flux2-dev": (128, 4, 4)}  # 64 x 64 px


@functools.cache
def tiny(variant, seed=0):
    return build_tiny_flux_models(variant, seed=seed)


def comfy_sample(models, variant, seed=7):
    """ComfyUI's own KSampler path (CLIPTextEncode -> FluxGuidance -> comfy.sample.sample), 3 euler steps."""
    clip = models.clip
    positive = node_helpers.conditioning_set_values(clip.encode_from_tokens_scheduled(clip.tokenize("a red fox")),
                                                    {"guidance": 3.5})
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    latent = torch.zeros((1, *LATENT[variant]))
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(models.model, noise, 3, 1.0, "euler", "simple", positive, negative, latent,
                               disable_pbar=True, seed=seed)


def owner_snapshot(patcher):
    owner = patcher.model.diffusion_model
    return ({k: v.clone() for k, v in owner.state_dict().items()},
            [(name, type(m)) for name, m in owner.named_modules()], dict(patcher.patches), dict(patcher.object_patches))


def make_folder(root, count=2, size=64):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / f"img{i}.png")
        (root / f"img{i}.txt").write_text(f"ohwx, photo number {i}")
    return root


def dataset_for(models, folder):
    out = DatasetFromFolder.execute(folder=str(folder), vae=models.vae, clip=models.clip, **{**DATASET_DEFAULTS, "trigger": "ohwx"})
    return out.args[0]


@pytest.fixture
def comfy_dirs(tmp_path):
    """ComfyUI's input / output directories inside the test's tmp folder (restored afterwards)."""
    old = folder_paths.get_input_directory(), folder_paths.get_output_directory()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    yield tmp_path
    folder_paths.set_input_directory(old[0])
    folder_paths.set_output_directory(old[1])


def test_widgets_map_to_the_engine_config():
    config = TrainConfig().with_overrides(model_overrides(model_sections("int4", "fp32", False, 3)))
    assert (config.model.quantize, config.train.mixed_precision) == ("qint4", "no")
    assert (config.train.gradient_checkpointing, config.train.checkpoint_every_n_blocks) == (False, 3)
    assert model_sections("fp8", "bf16", True, 1).model.quantize == "qfloat8"
    assert model_sections("auto", "bf16", True, 1).model.quantize == "auto"
    with pytest.raises(ValueError, match="quantization='int2'.*auto, none, int8, fp8, int4"):
        model_sections("int2", "bf16", True, 1)
    assert model_sections("none", "bf16", True, 0).train.checkpoint_every_n_blocks is None, "0 = auto"
    with pytest.raises(ValueError, match="checkpoint_every_n_blocks"):
        model_sections("none", "bf16", True, -1)


@pytest.mark.parametrize("variant,family", [("flux1-dev", "flux1"), ("flux2-dev", "flux2")])
def test_node_detects_the_family_and_reports_memory(variant, family):
    out = LoadFluxForTraining.execute(tiny(variant).model, "int8", "bf16", True, 2)
    handle, memory = out.args
    assert isinstance(handle, TrainingModelHandle) and handle.family == family and handle.patcher is tiny(variant).model
    assert memory == handle.memory_estimate and out.ui.as_dict() == {"text": (memory,)}
    assert "int8 copies of" in memory and "LoRA rank 16" in memory and "every 2 block(s)" in memory


def test_base_fingerprint_is_stable_and_tells_weights_apart():
    settings = model_sections("auto", "bf16", True, 1)
    first = TrainingModelHandle(build_tiny_flux_models("flux1-dev", seed=0).model, settings).base_fingerprint
    again = TrainingModelHandle(build_tiny_flux_models("flux1-dev", seed=0).model, settings).base_fingerprint
    other = TrainingModelHandle(build_tiny_flux_models("flux1-dev", seed=3).model, settings).base_fingerprint
    assert first == again and first != other and first.startswith("flux1:")


@pytest.mark.parametrize("quantization", list(QUANTIZATION))
def test_base_fingerprint_is_the_bases_while_comfy_has_a_lora_patched_in(quantization):
    """ComfyUI patches a sampling LoRA into the shared weights in place (a clone of the MODEL): the
    fingerprint, and so the resume check, must see the base, whatever the quantization."""
    patcher = build_tiny_model_patcher(TinyFluxSpec("flux1-dev", seed=5))
    clean = TrainingModelHandle(patcher, model_sections("none", "fp32", True, 1)).base_fingerprint
    key = "diffusion_model.double_blocks.0.img_attn.qkv.weight"
    base_weight = patcher.model.get_parameter(key).detach().clone()
    clone = patcher.clone()
    clone.add_patches({key: (torch.ones_like(base_weight),)}, 1.0)
    comfy.model_management.load_models_gpu([clone], force_full_load=True)
    assert not torch.equal(patcher.model.get_parameter(key), base_weight), "the patch is in the shared weights"
    handle = TrainingModelHandle(patcher, model_sections(quantization, "fp32", True, 1))
    assert handle.base_fingerprint == clean


def test_non_flux_models_are_refused_naming_what_was_found():
    class FakePatcher:  # a MODEL whose diffusion model is not Flux (e.g. an SD UNet)
        model = type("BaseModel", (), {"diffusion_model": nn.Linear(2, 2)})()

    with pytest.raises(UnsupportedModelError, match=r"Linear is not a Flux transformer.*Supported: .*Flux.1 dev"):
        LoadFluxForTraining.execute(FakePatcher(), "none", "bf16", True, 1)
    with pytest.raises(UnsupportedModelError, match="without a diffusion model"):
        TrainingModelHandle(object(), model_sections("auto", "bf16", True, 1))


def test_fp32_training_needs_an_fp32_model():
    patcher = build_tiny_model_patcher(TinyFluxSpec("flux1-dev", dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="training_dtype 'fp32' needs the model in fp32.*bfloat16"):
        TrainingModelHandle(patcher, model_sections("auto", "fp32", True, 1))


def test_each_adapter_is_fresh_and_quantized_layers_are_our_own():
    patcher = tiny("flux2-dev").model
    handle = TrainingModelHandle(patcher, model_sections("int8", "bf16", True, 1))
    first, second = handle.new_adapter(handle.settings), handle.new_adapter(handle.settings)
    assert first.module is not second.module and first.family == "flux2"
    assert any(is_quantized(m) for m in first.module.modules())
    assert not any(is_quantized(m) for m in patcher.model.diffusion_model.modules())


@pytest.mark.parametrize("variant,quantization", [("flux1-dev", "none"), ("flux2-dev", "int8")])
def test_training_leaves_comfy_sampling_bit_identical(comfy_dirs, variant, quantization):
    models = build_tiny_flux_models(variant, seed=0)
    before = comfy_sample(models, variant)
    snapshot = owner_snapshot(models.model)

    handle = LoadFluxForTraining.execute(models.model, quantization, "fp32", True, 1).args[0]
    dataset = dataset_for(models, make_folder(comfy_dirs / "input" / "data"))
    dataset.require_family(handle.family)
    config = TrainConfig().with_overrides({
        **model_overrides(handle.settings),
        "lora": {"rank": 4}, "optim": {"learning_rate": 5e-2, "warmup_steps": 0},
        "train": {**model_overrides(handle.settings)["train"], "steps": 3},
        "run": {"name": "proof", "trigger": dataset.trigger, "save_every": 0, "sample_every": 0},
    })
    adapter = handle.new_adapter(config)
    final = train(TrainingJob(config, adapter, dataset.dataset, RunDir(comfy_dirs / "run"),
                              base_fingerprint=handle.base_fingerprint), RunControl(None), lambda event: None)
    assert final is not None and final.is_file()
    trained = [p for name, p in adapter.module.named_parameters() if "lora_B" in name]
    assert trained and any(p.abs().sum() > 0 for p in trained), "the LoRA did not train: the proof would be empty"

    after = comfy_sample(models, variant)
    assert torch.equal(before, after), f"max |diff| {(before - after).abs().max().item()}"
    weights, modules, patches, object_patches = owner_snapshot(models.model)
    assert weights.keys() == snapshot[0].keys() and all(torch.equal(weights[k], snapshot[0][k]) for k in weights)
    assert modules == snapshot[1] and patches == snapshot[2] == {} and object_patches == snapshot[3]
    assert not any(isinstance(m, LoraLayer) for m in models.model.model.modules())


@pytest.mark.skipif(not hasattr(comfy.model_patcher.ModelPatcher, "is_dynamic"), reason="this host has no dynamic VRAM")
@pytest.mark.parametrize("variant,quantization", [("flux1-dev", "none"), ("flux2-dev", "int8")])
def test_a_dynamic_vram_model_is_trained_on_the_runs_own_weights(monkeypatch, variant, quantization):
    """ComfyUI's dynamic-VRAM patcher (NVIDIA default since 0.16) streams weights per op, so a run
    must not train on its modules. It cannot be built without CUDA (it reroutes to ModelPatcher on
    CPU), so the real patcher stands in with `is_dynamic()` True: the run's tree then holds no module
    of ComfyUI's, computes the same function, and ComfyUI swapping a weight (as its LoRA patching
    does) leaves the run untouched. What a real GPU streams is left to the GPU script."""
    patcher = build_tiny_model_patcher(TinyFluxSpec(variant, seed=3))
    monkeypatch.setattr(patcher, "is_dynamic", lambda: True)
    monkeypatch.setattr(comfy.model_management, "load_models_gpu",
                        lambda *a, **k: pytest.fail("a dynamic patcher must not be force-loaded"))
    owner = patcher.model.diffusion_model
    handle = TrainingModelHandle(patcher, model_sections(quantization, "fp32", True, 1))
    adapter = handle.new_adapter(handle.settings)
    assert not {id(m) for m in adapter.module.modules()} & {id(m) for m in owner.modules()}
    owner_storage = {p.data_ptr() for p in owner.parameters()}
    assert not any(p.data_ptr() in owner_storage for p in adapter.module.parameters()), "copies, not shared tensors"
    reference = FluxTrainingAdapter.adopt(owner, checkpointing=False)
    quant.quantize_base(reference.module, QUANTIZATION[quantization], device=torch.device("cpu"), compute_dtype=torch.float32)
    inputs = tuple(make_inputs(owner, dtype=torch.float32, height=8, width=8, tokens=5))
    with torch.no_grad():
        before = adapter.predict(*inputs)
        assert torch.equal(before, reference.predict(*inputs))
        owner.img_in.weight = torch.nn.Parameter(owner.img_in.weight + 1.0)  # what a patch would do
        owner.final_layer.linear.weight.add_(1.0)  # and an in-place one
        assert torch.equal(adapter.predict(*inputs), before)


@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_quantized_runs_take_comfys_float_copy_off_the_device(quantization):
    """Quantized modes save memory only if ComfyUI's float copy leaves the training device: the
    MODEL is taken out of ComfyUI's loaded models (its weights go to the offload device; on CPU both
    are the same, so what is checked is model management's own record and the run's tensors), and
    the run's blocks are quantized copies only."""
    patcher = build_tiny_model_patcher(TinyFluxSpec("flux1-dev", seed=4))
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    assert any(m.model is patcher for m in comfy.model_management.current_loaded_models)

    handle = TrainingModelHandle(patcher, model_sections(quantization, "fp32", True, 1))
    adapter = handle.new_adapter(handle.settings)
    assert not any(m.model is not None and m.model.model is patcher.model
                   for m in comfy.model_management.current_loaded_models)
    blocks = [m for name in ("double_blocks", "single_blocks") for m in getattr(adapter.module, name).modules()]
    assert not any(isinstance(m, nn.Linear) and not is_quantized(m) for m in blocks), "a float block linear stayed"
    # The norm gains and embedders are the run's own modules; they hold the owner's tensors only
    # where its offload device is the training device (here: CPU), and copies on a GPU.
    owner_modules = {id(m) for m in patcher.model.diffusion_model.modules()}
    assert not any(id(m) in owner_modules for m in adapter.module.modules())

    plain = TrainingModelHandle(patcher, model_sections("none", "fp32", True, 1))
    plain.new_adapter(plain.settings)
    assert any(m.model is patcher for m in comfy.model_management.current_loaded_models), "'none' trains on the loaded MODEL"


@pytest.mark.parametrize("quantization", ["int8", "fp8", "int4"])
def test_quantized_runs_put_no_float_block_weight_on_a_distinct_training_device(quantization):
    """The same with a training device that is not the offload device ('meta' stands in for a GPU:
    tensors there have a device but no memory): every tensor of the run is on the training device,
    each block linear there is a quantized copy, and ComfyUI's own weights stay on the offload
    device, unloaded in its model management."""
    patcher = build_tiny_model_patcher(TinyFluxSpec("flux1-dev", seed=4))
    patcher.load_device = torch.device("meta")
    handle = TrainingModelHandle(patcher, model_sections(quantization, "fp32", True, 1))
    adapter = handle.new_adapter(handle.settings)
    tensors = list(adapter.module.parameters()) + list(adapter.module.buffers())
    assert tensors and {t.device.type for t in tensors} == {"meta"}
    block_linears = [m for name in ("double_blocks", "single_blocks") for m in getattr(adapter.module, name).modules()
                     if isinstance(m, nn.Linear)]
    assert block_linears and all(is_quantized(m) for m in block_linears), "a float block weight on the device"
    owner = patcher.model.diffusion_model
    assert {t.device.type for t in owner.state_dict().values()} == {"cpu"}, "ComfyUI's copy left the offload device"
    assert not any(m.model is patcher for m in comfy.model_management.current_loaded_models)


def test_comfy_keeps_a_model_loaded_while_a_run_trains_on_it():
    """Memory pressure (free_memory, what every ComfyUI unload for memory goes through) unloads the
    MODEL as usual, except while a run trains on its loaded weights; quantized runs pin nothing."""
    def loaded(patcher):
        return any(m.model is patcher for m in comfy.model_management.current_loaded_models)

    def squeeze():
        comfy.model_management.free_memory(1e30, torch.device("cpu"))

    patcher = build_tiny_model_patcher(TinyFluxSpec("flux1-dev", seed=6))
    plain = TrainingModelHandle(patcher, model_sections("none", "fp32", True, 1))
    quantized = TrainingModelHandle(patcher, model_sections("int8", "fp32", True, 1))
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    with plain.run_lifetime(plain.settings):
        squeeze()
        assert loaded(patcher), "unloaded under a live run"
        with quantized.run_lifetime(quantized.settings):
            squeeze()
            assert loaded(patcher)
    squeeze()
    assert not loaded(patcher), "after the run it is ComfyUI's to unload again"
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    with quantized.run_lifetime(quantized.settings):
        squeeze()
        assert not loaded(patcher)
