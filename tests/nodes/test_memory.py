"""nodes/_comfy/memory.py: the run's plan against what the training device can give, and 'auto'.

Real ComfyUI classes (a tiny Flux.1 MODEL, DatasetFromFolder's real dataset); only the free memory
of the device is set by the test, so each budget is exact."""

import pytest

from tests.comfy_host import import_comfy

import_comfy()

import comfy.model_management  # noqa: E402

from flux_lora_lab.core.train import memory_plan  # noqa: E402
from flux_lora_lab.core.config import TrainConfig  # noqa: E402
from flux_lora_lab.nodes._comfy import memory  # noqa: E402
from flux_lora_lab.nodes._comfy.model import TrainingModelHandle, model_overrides, model_sections  # noqa: E402
from tests.nodes.test_load_model import comfy_dirs, dataset_for, make_folder, tiny  # noqa: E402,F401


@pytest.fixture
def setup(comfy_dirs):
    models = tiny("flux1-dev")
    data = dataset_for(models, make_folder(comfy_dirs / "imgs")).dataset
    config = TrainConfig().with_overrides({"run": {"name": "fit"}, "train": {"gradient_checkpointing": False}})
    return models, data, config


def _handle(models, quantization, checkpointing=False):
    return TrainingModelHandle(models.model, model_sections(quantization, "fp32", checkpointing, 1))


def _peaks(models, config, data):
    """The plan's peak for each quantization and checkpointing, with the fixture's settings."""
    handle = _handle(models, "none")
    peaks = {}
    for mode, node in (("none", "none"), ("qfloat8", "fp8"), ("qint4", "int4")):
        for every in (0, 1):
            cfg = config.with_overrides({"model": {"quantize": mode},
                                         "train": {"gradient_checkpointing": every == 1, "checkpoint_every_n_blocks": 1}})
            peaks[node, every] = memory.run_plan(handle, cfg, data).peak
    return peaks


def _free(monkeypatch, models, budget):
    """Make the device's free memory such that 'none' may use exactly `budget` (free + resident)."""
    resident = models.model.loaded_size()
    monkeypatch.setattr(memory, "free_memory", lambda device: budget - resident)


def test_auto_settles_quantization_for_the_run_and_says_why(setup, monkeypatch):
    models, data, config = setup
    auto = _handle(models, "auto")
    config = config.with_overrides(model_overrides(auto.settings))  # what TrainLoRA merges in
    assert config.model.quantize == "auto"
    peaks = _peaks(models, config, data)
    _free(monkeypatch, models, 10 * peaks["none", 0])
    settled, plan, note = memory.fit_run(auto, config, data)
    assert settled.model.quantize == "none" and not settled.train.gradient_checkpointing and note.startswith("auto: ")
    assert auto.settings.model.quantize == "auto", "the node's handle stays 'auto' for the next run"

    # On the CPU a quantized run cannot free ComfyUI's copy, so the budget counts it against them too.
    resident = models.model.loaded_size()
    _free(monkeypatch, models, peaks["none", 1])  # fits 'none' only with checkpointing
    settled, plan, note = memory.fit_run(auto, config, data)
    assert (settled.model.quantize, settled.train.gradient_checkpointing) == ("none", True)
    assert settled.train.checkpoint_every_n_blocks == 1 and plan.peak == peaks["none", 1]
    assert "did not fit: the loaded weights, no checkpointing needs" in note

    with pytest.raises(memory.RunWillNotFit, match="even with int4") as refused:
        _free(monkeypatch, models, resident + 1)
        memory.fit_run(auto, config, data)
    assert "peak:" in str(refused.value)


def test_a_fixed_choice_that_does_not_fit_names_the_parts_and_auto(setup, monkeypatch):
    models, data, config = setup
    _free(monkeypatch, models, _peaks(models, config, data)["none", 0] - 1)
    with pytest.raises(memory.RunWillNotFit) as refused:
        memory.fit_run(_handle(models, "none"), config, data)
    text = str(refused.value)
    assert "run 'fit' will not fit" in text and "largest part is" in text and "quantization 'auto'" in text


def test_a_quantized_run_may_use_the_memory_its_offload_frees(setup, monkeypatch):
    """On a GPU `offload` takes ComfyUI's float copy off the device before the quantized copies are
    built: that memory counts for quantized runs (not for the CPU, where it stays)."""
    models, data, config = setup
    patcher = models.model
    handle = _handle(models, "int8")  # offloads ComfyUI's copy; a sampling prompt loads it again:
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    resident = patcher.loaded_size()
    assert resident > 0
    monkeypatch.setattr(memory, "free_memory", lambda device: 1000)
    assert memory._available(handle)["qint8"] == 1000  # offload device = load device
    monkeypatch.setattr(memory.host, "offload_frees_device", lambda p: True)
    available = memory._available(handle)
    assert available["qint8"] == available["qint4"] == available["none"] == 1000 + resident
    assert memory_plan.QUANT_BYTES.keys() == available.keys()


def test_an_auto_checkpoint_interval_recomputes_only_what_the_memory_needs(setup, monkeypatch):
    """LoadFluxForTraining's checkpoint_every_n_blocks 0 (auto): with room to spare the run pays no
    recompute; with just enough for checkpointing every block it checkpoints every block."""
    models, data, config = setup
    handle = _handle(models, "none", checkpointing=True)
    auto = config.with_overrides(model_overrides(model_sections("none", "fp32", True, 0)))
    peaks = _peaks(models, auto, data)
    assert auto.train.checkpoint_every_n_blocks is None and auto.train.gradient_checkpointing
    _free(monkeypatch, models, 10 * peaks["none", 0])
    settled, plan, note = memory.fit_run(handle, auto, data)
    assert not settled.train.gradient_checkpointing and note.startswith("auto: the loaded weights, no checkpointing")
    _free(monkeypatch, models, peaks["none", 1])
    settled, plan, note = memory.fit_run(handle, auto, data)
    assert (settled.train.gradient_checkpointing, settled.train.checkpoint_every_n_blocks) == (True, 1)
    assert settled.model.quantize == "none" and plan.peak == peaks["none", 1], "a fixed quantization stays fixed"
