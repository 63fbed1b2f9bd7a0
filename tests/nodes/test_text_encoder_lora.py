"""lora.train_text_encoder on ComfyUI's real tiny Flux.1 CLIP (in-process): a LoRA on CLIP-L.

Proofs: the gradient that reaches the CLIP-L LoRA is the chain rule of a hand-built reference (the
same CLIP with W + alpha/rank * up @ down as plain weights); a real training run writes `lora_te1_`
keys next to the transformer's, which ComfyUI's stock LoraLoader (model + clip strength) applies with
no unmatched key, and the pooled vector of the CLIP it patches equals the run's in-training encoding;
a run resumed half-way ends with the same text LoRA as one that never stopped.
"""

import functools

import pytest
import torch
from safetensors.torch import load_file

from tests.comfy_host import import_comfy

import_comfy()


from flux_lora_lab.core.config import TrainConfig  # noqa: E402
from flux_lora_lab.core.model import lora  # noqa: E402
from flux_lora_lab.core.model.text_lora import attach_text_lora, clip_targets, kohya_key  # noqa: E402
from flux_lora_lab.core.run.control import RunControl  # noqa: E402
from flux_lora_lab.core.run.rundir import RunDir  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.core.train.checkpoint import RESUME_FILE  # noqa: E402
from flux_lora_lab.core.train.state_io import load_state  # noqa: E402
from flux_lora_lab.core.train.text_encoder import TEXT_PARAM_PREFIX  # noqa: E402
from flux_lora_lab.core.train.trainer import TrainingJob, train  # noqa: E402
from flux_lora_lab.nodes._comfy.model import model_overrides  # noqa: E402
from flux_lora_lab.nodes._comfy.text_encoder import ComfyClipL  # noqa: E402
from flux_lora_lab.nodes._comfy.tiny_models import build_tiny_flux_models  # noqa: E402
from flux_lora_lab.nodes.load_model import LoadFluxForTraining  # noqa: E402
from tests.comfy_lora import load_with_stock_lora_loader  # noqa: E402
from tests.nodes import test_load_model  # noqa: E402
from tests.nodes.test_load_model import dataset_for, make_folder  # noqa: E402

comfy_dirs = test_load_model.comfy_dirs  # the fixture: ComfyUI's input / output folders in tmp_path
CAPTIONS = ["ohwx, photo number 0", "a red fox in snow"]


@functools.cache
def tiny():
    return build_tiny_flux_models("flux1-dev", seed=0)


def _randomize(module, seed=3):
    g = torch.Generator().manual_seed(seed)
    lora.load_lora_state_dict(module, {
        name: lora.LoraWeights(0.2 * torch.randn(w.down.shape, generator=g), 0.2 * torch.randn(w.up.shape, generator=g), w.alpha)
        for name, w in lora.lora_state_dict(module).items()})


def test_the_text_lora_gradient_is_the_chain_rule_of_a_reference():
    text = ComfyClipL(tiny().clip, torch.device("cpu"))
    reference = ComfyClipL(tiny().clip, torch.device("cpu")).module
    with torch.no_grad():  # the out-of-place copy computes what ComfyUI's own (in-place) CLIP-L does
        for caption in CAPTIONS:
            comfy_pooled = tiny().clip.encode_from_tokens(tiny().clip.tokenize(caption), return_pooled=True)[1]
            assert torch.equal(text.encode_pooled([caption]), comfy_pooled)
    names = attach_text_lora(text.module, LoraSettings(rank=4, alpha=2.0))
    assert len(names) == 6 * len(reference.transformer.text_model.encoder.layers) and names == clip_targets(reference)
    _randomize(text.module)
    target = torch.randn(len(CAPTIONS), text.encode_pooled(CAPTIONS).shape[-1], generator=torch.Generator().manual_seed(1))
    loss = ((text.encode_pooled(CAPTIONS) - target) ** 2).sum()
    loss.backward()

    # Reference: each target's weight replaced by W + D, D = alpha/rank * up @ down a leaf; then
    # dL/d up = s * G @ down^T and dL/d down = s * up^T @ G with G = dL/dD.
    weights = lora.lora_state_dict(text.module)
    deltas = with_weight_deltas(reference, weights)
    ref_loss = ((torch.cat([reference.encode_token_weights(text.tokenizer.tokenize_with_weights(c))[1]
                            for c in CAPTIONS]) - target) ** 2).sum()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    # float32, a different summation order than the fused weight: agreement to ~1e-6 of the scale
    assert_chain_rule(lora.lora_layers(text.module), weights, deltas, tolerance=1e-6)


def with_weight_deltas(reference: torch.nn.Module, weights: dict) -> dict:
    """Replace each LoRA target's weight in `reference` by W + D, D = alpha/rank * up @ down a leaf
    tensor; returns {name: D} (after a backward, D.grad = dL/dD)."""
    deltas = {}
    for name, w in weights.items():
        linear = reference.get_submodule(name)
        deltas[name] = (w.up @ w.down * (w.alpha / w.rank)).detach().requires_grad_(True)
        base = linear.weight.detach()
        del linear.weight
        linear.weight = base + deltas[name]
    return deltas


def assert_chain_rule(layers: dict, weights: dict, deltas: dict, tolerance: float) -> None:
    """The LoRA layers' gradients are the chain rule of the W + D reference: dL/d up = s * G @ down^T,
    dL/d down = s * up^T @ G with G = dL/dD, to `tolerance` of G's largest entry."""
    for name, w in weights.items():
        scale, grad_delta = w.alpha / w.rank, deltas[name].grad
        got_up, got_down = layers[name].lora_B["default"].weight.grad, layers[name].lora_A["default"].weight.grad
        assert got_up.abs().max() > 0 and got_down.abs().max() > 0, f"no gradient reached {name}"
        atol = tolerance * grad_delta.abs().max().item()
        torch.testing.assert_close(got_up, scale * grad_delta @ w.down.T, rtol=1e-4, atol=atol)
        torch.testing.assert_close(got_down, scale * w.up.T @ grad_delta, rtol=1e-4, atol=atol)


def _config(steps, folder_name="te"):
    # alpha != rank: a lost or wrong `.alpha` key would change what ComfyUI applies
    return {"lora": {"rank": 4, "alpha": 2.0, "train_text_encoder": True, "text_encoder_lr": 5e-2},
            "optim": {"learning_rate": 5e-2, "warmup_steps": 0, "lr_scheduler": "constant"},
            "train": {"steps": steps, "mixed_precision": "no", "gradient_checkpointing": False},
            "run": {"name": folder_name, "trigger": "ohwx", "save_every": 2, "sample_every": 0,
                    "save_dtype": "fp32"}}  # the file holds the trained fp32 weights: outputs compare to float32 rounding


def _train(models, dataset, folder, steps):
    handle = LoadFluxForTraining.execute(models.model, "none", "fp32", False, 1).args[0]
    config = TrainConfig().with_overrides(_config(steps))
    config = config.with_overrides({"train": {**model_overrides(handle.settings)["train"], **_config(steps)["train"]}})
    adapter = handle.new_adapter(config)
    text = ComfyClipL.for_run(config, dataset.clip, adapter)
    final = train(TrainingJob(config, adapter, dataset.dataset, RunDir(folder), base_fingerprint=handle.base_fingerprint,
                              dataset_fingerprint=dataset.dataset.fingerprint, text_encoder=text),
                  RunControl(None), lambda event: None)
    return final, text


def test_a_trained_text_lora_loads_through_stock_lora_loader_and_matches_training(comfy_dirs, caplog):
    models = tiny()
    dataset = dataset_for(models, make_folder(comfy_dirs / "input" / "data"))
    final, text = _train(models, dataset, comfy_dirs / "run", 3)
    tensors = load_file(str(final))
    te_keys = sorted(k for k in tensors if k.startswith("lora_te1_"))
    expected = {f"{kohya_key(name)}.{part}" for name in clip_targets(ComfyClipL(models.clip, torch.device("cpu")).module)
                for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert set(te_keys) == expected
    assert any(tensors[k].abs().max() > 0 for k in te_keys if k.endswith("lora_up.weight")), "the text LoRA did not train"

    model, clip, unmatched = load_with_stock_lora_loader(final, models, comfy_dirs / "loras", caplog)
    assert unmatched == []
    for caption in CAPTIONS:
        stock = clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)[1]
        base = models.clip.encode_from_tokens(models.clip.tokenize(caption), return_pooled=True)[1]
        with torch.no_grad():
            ours = text.encode_pooled([caption])
        assert (ours - base).norm() > 1e-3 * base.norm(), "the text LoRA must change the pooled vector for this to mean anything"
        # ComfyUI folds alpha/rank * up @ down into the fp32 weight, peft adds the low-rank path: same
        # function, float32 rounding of a different summation order
        torch.testing.assert_close(stock, ours, rtol=1e-5, atol=1e-6)


def test_resume_restores_the_text_lora_and_its_optimizer_state(comfy_dirs):
    models = tiny()
    dataset = dataset_for(models, make_folder(comfy_dirs / "input" / "data"))
    straight, _ = _train(models, dataset, comfy_dirs / "straight", 4)
    _train(models, dataset, comfy_dirs / "resumed", 2)
    state = load_state(next((comfy_dirs / "resumed").glob("checkpoint_*")) / RESUME_FILE)
    text_raw = [k for k in state["lora_raw"] if k.startswith(TEXT_PARAM_PREFIX)]
    assert text_raw and len(state["optimizer"]["param_groups"]) == 2
    resumed, _ = _train(models, dataset, comfy_dirs / "resumed", 4)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and any(k.startswith("lora_te1_") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_flux2_and_a_missing_clip_are_refused_naming_the_setting():
    from types import SimpleNamespace

    from flux_lora_lab.core.setting import ConfigError
    from flux_lora_lab.core.train.text_encoder import TextEncoderTraining

    config = TrainConfig().with_overrides({"lora": {"train_text_encoder": True}})
    with pytest.raises(ConfigError, match=r"lora.train_text_encoder: the model is flux2.*Flux.1's CLIP-L"):
        TextEncoderTraining.for_run(SimpleNamespace(config=config, adapter=SimpleNamespace(family="flux2"),
                                                    text_encoder=None), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"lora.train_text_encoder: is on but the run was given no text encoder"):
        TextEncoderTraining.for_run(SimpleNamespace(config=config, adapter=SimpleNamespace(family="flux1"),
                                                    text_encoder=None), torch.device("cpu"))
