"""LoKr through the real training loop: what the loop saves loads in ComfyUI's stock LoRA loading
and reproduces the trained model (Flux.1 and Flux.2), resume equals an uninterrupted run bit for bit,
and a planted Kronecker change is learned.
"""

import copy

import pytest
import torch
from safetensors.torch import load_file

from flux_lora_lab.core.config import TrainConfig
from flux_lora_lab.core.model import lokr, lora
from flux_lora_lab.core.run.control import RunControl
from flux_lora_lab.core.run.rundir import RunDir
from flux_lora_lab.core.lora_settings import LoraSettings
from flux_lora_lab.core.train.trainer import TrainingJob, train
from tests.comfy_host import import_comfy
from tests.core.train.trainer_fixtures import SyntheticData, Taught, adopt, relative_error, tiny_owner
from tests.comfy_lora import load_through_comfy, patched_forward  # noqa: E402

FAMILY_DATA = {"flux1-dev": dict(channels=16, pooled=True), "flux2-dev": dict(channels=128, pooled=False)}


def lokr_config(steps: int, **overrides) -> TrainConfig:
    base = {
        "lora": {"network": "lokr", "rank": 2, "alpha": 3.0, "dropout": 0.1, "targets": "all",
                 "lokr_decompose_both": True},
        "optim": {"learning_rate": 5e-3, "lr_scheduler": "cosine", "warmup_steps": 2, "gradient_accumulation": 2},
        "flow": {"timestep_sampling": "balanced"},
        "train": {"steps": steps, "batch_size": 2, "mixed_precision": "no", "gradient_checkpointing": True,
                  "ema": True, "ema_decay": 0.9},
        "run": {"name": "lokr", "save_every": 0, "sample_every": 0, "save_dtype": "fp32"},
    }
    for section, values in overrides.items():
        base[section] = {**base[section], **values}
    return TrainConfig.from_dict(base)


def _train(config, adapter, data, folder, control=None, on_step=None):
    events = []

    def emit(event):
        events.append(event)
        if on_step is not None and event.kind == "step":
            on_step(event)

    return train(TrainingJob(config, adapter, data, RunDir(folder)), control or RunControl(None), emit), events


@pytest.mark.parametrize("variant", ["flux1-dev", "flux2-dev"])
def test_the_loops_lokr_file_loads_in_comfyui_and_reproduces_the_trained_model(tmp_path, caplog, variant):
    import_comfy()
    import comfy.sd
    import comfy.utils

    from flux_lora_lab.nodes._comfy.tiny_models import TinyFluxSpec, build_tiny_model_patcher

    adapter = adopt(tiny_owner(variant, seed=4))
    config = lokr_config(6, train={"ema": False}, optim={"learning_rate": 5e-2})
    final, _ = _train(config, adapter, SyntheticData(items=4, **FAMILY_DATA[variant]), tmp_path / "run")
    weights = lora.lora_state_dict(adapter.module)
    assert weights and all(isinstance(w, lokr.LokrWeights) and w.w2_b.abs().max() > 0 for w in weights.values())

    g = torch.Generator().manual_seed(5)
    latents = torch.randn(2, adapter.latent_channels, 8, 8, generator=g)
    context = torch.randn(2, 5, 64, generator=g)
    pooled = torch.randn(2, adapter.pooled_dim, generator=g) if adapter.pooled_dim else None
    sigmas, guidance = torch.tensor([0.4, 0.9]), (torch.tensor([1.0, 1.0]) if adapter.uses_guidance else None)
    adapter.module.eval()
    with torch.no_grad():
        ours = adapter.predict(latents, sigmas, context, pooled, guidance)
        with lora.lora_disabled(adapter.module):
            base = adapter.predict(latents, sigmas, context, pooled, guidance)
    assert relative_error(ours, base) > 1e-3, "six steps must move the model for this test to mean anything"

    patcher = build_tiny_model_patcher(TinyFluxSpec(variant, seed=4))
    patched, unmatched = load_through_comfy(patcher, comfy.utils.load_torch_file(str(final), safe_load=True), caplog)
    assert unmatched == []
    assert len(patched.patches) == len(weights)
    theirs = patched_forward(patched, latents, sigmas, context, pooled, guidance)
    assert relative_error(theirs, ours) < 1e-5


@pytest.mark.slow
def test_lokr_stop_and_resume_equals_uninterrupted_run(tmp_path):
    """AdamW moments, warmup + cosine, EMA, accumulation, seeded LoKr dropout and the data position
    are all restored: the final files and the raw resume state agree bit for bit."""
    steps, stop_at = 7, 3
    owner = tiny_owner("flux1-dev", seed=3)
    straight, _ = _train(lokr_config(steps), adopt(owner, checkpointing=True), SyntheticData(items=6), tmp_path / "straight")

    control = RunControl(None)
    _, first = _train(lokr_config(steps), adopt(owner, checkpointing=True), SyntheticData(items=6), tmp_path / "resumed",
                      control, on_step=lambda e: control.stop() if e.step == stop_at else None)
    assert first[-1].kind == "finished" and first[-1].stopped_early and first[-1].step == stop_at
    resumed, second = _train(lokr_config(steps), adopt(owner, checkpointing=True), SyntheticData(items=6), tmp_path / "resumed")
    assert next(e for e in second if e.kind == "started").start_step == stop_at

    expected, got = load_file(str(straight)), load_file(str(resumed))
    assert expected.keys() == got.keys() and any(".lokr_w1_a" in k for k in expected)
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{key} differs after resume"
    a = load_file(str(RunDir(tmp_path / "straight").latest_checkpoint().file("optimizer_state.safetensors")))
    b = load_file(str(RunDir(tmp_path / "resumed").latest_checkpoint().file("optimizer_state.safetensors")))
    assert any("lokr_w2_b" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


@pytest.mark.slow
def test_training_recovers_a_planted_kronecker_change(tmp_path):
    """Teacher = base + a planted LoKr of the student's structure; the student, fresh, must close >= 90 %
    of the held-out gap (what the LoRA learning test shows for LoRA)."""
    owner = tiny_owner("flux1-dev")
    spec = LoraSettings(network="lokr", rank=2, targets="attention")
    teacher = adopt(copy.deepcopy(owner))
    lora.attach_lora(teacher.module, spec)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in lora.trainable_parameters(teacher.module):
            p.copy_(torch.randn(p.shape, generator=g) * (0.15 if "w2" in name else 0.5))
    teacher.module.eval()
    student = adopt(owner)
    config = lokr_config(300, lora={"dropout": 0.0, "targets": "attention", "alpha": None, "lokr_decompose_both": False},
                         optim={"learning_rate": 5e-2, "lr_scheduler": "linear", "warmup_steps": 0,
                                "gradient_accumulation": 1, "weight_decay": 0.0, "max_grad_norm": 0.0},
                         flow={"timestep_sampling": "uniform", "loss_weighting": "uniform"},
                         train={"batch_size": 8, "gradient_checkpointing": False, "ema": False})
    data = SyntheticData(items=64)
    train(TrainingJob(config, Taught(student, teacher, data), data, RunDir(tmp_path / "run")), RunControl(None), lambda e: None)

    h = torch.Generator().manual_seed(999)
    noisy, sigmas = torch.randn(8, 16, 8, 8, generator=h), torch.rand(8, generator=h)
    context, pooled = torch.randn(8, 8, 64, generator=h), torch.randn(8, 32, generator=h)
    with torch.no_grad():
        with lora.lora_disabled(student.module):
            base = student.predict(noisy, sigmas, context, pooled, 1.0)
        trained, target = student.predict(noisy, sigmas, context, pooled, 1.0), teacher.predict(noisy, sigmas, context, pooled, 1.0)
    before, after = (base - target).square().mean().item(), (trained - target).square().mean().item()
    print(f"LoKr held-out mse {before:.3e} -> {after:.3e} ({1 - after / before:.1%} lower)")
    assert after <= 0.10 * before


@pytest.mark.slow
def test_block_swap_trains_the_same_lokr(tmp_path):
    """The LoKr factors are trainable, so block swap leaves them on the device and moves only the
    base: the swapped run equals the plain one bit for bit."""
    files = {}
    for swap in (0, 2):
        adapter = adopt(tiny_owner("flux1-dev", seed=3), checkpointing=True)
        config = lokr_config(3, train={"blocks_to_swap": swap, "ema": False})
        files[swap], _ = _train(config, adapter, SyntheticData(items=4), tmp_path / f"swap{swap}")
        assert (adapter.module.swap is not None) == bool(swap)
    plain, swapped = load_file(str(files[0])), load_file(str(files[2]))
    assert plain.keys() == swapped.keys() and any("single_blocks_1" in k for k in plain)
    assert all(torch.equal(plain[k], swapped[k]) for k in plain)


def test_lokr_trains_under_bf16_autocast(tmp_path):
    """The default precision: fp32 factors, bf16 matmuls; the steps are finite and w2 leaves zero."""
    adapter = adopt(tiny_owner("flux1-dev", seed=3), checkpointing=True)
    config = lokr_config(3, train={"mixed_precision": "bf16", "ema": False})
    _, events = _train(config, adapter, SyntheticData(items=4), tmp_path / "bf16")
    losses = [e.loss for e in events if e.kind == "step"]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    weights = lora.lora_state_dict(adapter.module).values()
    assert all(w.w2_b.dtype == torch.float32 and w.w2_b.abs().max() > 0 for w in weights)


def test_resuming_with_another_network_or_lokr_shape_is_refused_by_name():
    """A run folder trained as LoRA (or as another LoKr structure) is not resumed as this LoKr: the
    refusal names the setting (core/train/resume.py); records from before these settings existed are
    not judged on them."""
    from flux_lora_lab.core.train.resume import differences, trained_on

    lora_run = TrainConfig.from_dict({"lora": {"rank": 2}})
    lokr_run = TrainConfig.from_dict({"lora": {"rank": 2, "network": "lokr"}})
    assert differences(trained_on(lora_run, "", ""), lokr_run, "", "") == ["lora.network 'lora', now 'lokr'"]
    factor8 = lokr_run.with_overrides({"lora": {"lokr_factor": 8, "lokr_full_matrix": True}})
    assert differences(trained_on(lokr_run, "", ""), factor8, "", "") == [
        "lora.lokr_factor -1, now 8", "lora.lokr_full_matrix False, now True"]
    old = trained_on(lora_run, "", "")
    for name in ("network", "lokr_factor", "lokr_full_matrix", "lokr_decompose_both"):
        del old["config"]["lora"][name]
    assert differences(old, lora_run, "", "") == []
