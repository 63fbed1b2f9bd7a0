"""lora.train_t5 on ComfyUI's real tiny Flux.1 CLIP (in-process): a LoRA on T5-XXL beside CLIP-L's.

Proofs: the copy's out-of-place T5 gives ComfyUI's own context; the gradient that reaches the T5 LoRA
is the chain rule of a W + alpha/rank * up @ down reference; a real run writes `lora_te3_` keys that
ComfyUI's stock LoraLoader (model + clip strength) applies with no unmatched key, and the context of
the CLIP it patches equals the run's in-training T5 context; a run resumed half-way ends bit-identical.
"""


import pytest
import torch
from safetensors.torch import load_file

from tests.comfy_host import import_comfy

import_comfy()


from flux_lora_lab.core.config import TrainConfig  # noqa: E402
from flux_lora_lab.core.model import lora  # noqa: E402
from flux_lora_lab.core.model.text_lora import attach_text_lora, clip_targets, kohya_key, t5_targets  # noqa: E402
from flux_lora_lab.core.setting import ConfigError  # noqa: E402
from flux_lora_lab.core.train.text_encoder import TextEncoderTraining  # noqa: E402
from flux_lora_lab.core.lora_settings import LoraSettings  # noqa: E402
from flux_lora_lab.nodes._comfy.text_encoder import ComfyClipL  # noqa: E402
from tests.comfy_lora import load_with_stock_lora_loader  # noqa: E402
from tests.nodes import test_load_model, test_text_encoder_lora as clip_tests  # noqa: E402
from tests.nodes.test_load_model import dataset_for, make_folder  # noqa: E402

comfy_dirs = test_load_model.comfy_dirs
CAPTIONS = clip_tests.CAPTIONS
T5_ON = {"lora": {"train_t5": True}}


def _context(clip, caption):
    return clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)[0]


def test_the_t5_lora_gradient_is_the_chain_rule_of_a_reference():
    clip = clip_tests.tiny().clip
    text = ComfyClipL(clip, torch.device("cpu"), t5=True)
    reference = ComfyClipL(clip, torch.device("cpu"), t5=True).t5
    with torch.no_grad():  # the out-of-place copy computes what ComfyUI's own (in-place) T5 does
        for caption in CAPTIONS:
            assert torch.equal(text.encode_context([caption]), _context(clip, caption))
    clip_names = clip_targets(text.clip_l)
    names = attach_text_lora(text.module, LoraSettings(rank=4, alpha=2.0), t5=True)
    t5_names = [n for n in names if n.startswith("t5xxl.")]
    assert len(t5_names) == 7 * len(reference.transformer.encoder.block) and t5_names == ["t5xxl." + n for n in t5_targets(reference)]
    assert names[:len(clip_names)] == ["clip_l." + n for n in clip_names] and len(names) == len(clip_names) + len(t5_names)
    clip_tests._randomize(text.module)
    target = torch.randn(text.encode_context(CAPTIONS).shape, generator=torch.Generator().manual_seed(1))
    loss = ((text.encode_context(CAPTIONS) - target) ** 2).sum()
    loss.backward()

    weights = {n[len("t5xxl."):]: w for n, w in lora.lora_state_dict(text.module).items() if n.startswith("t5xxl.")}
    deltas = clip_tests.with_weight_deltas(reference, weights)
    ref = torch.stack([reference.encode_token_weights(text.t5_tokenizer.tokenize_with_weights(c))[0][0] for c in CAPTIONS])
    ref_loss = ((ref - target) ** 2).sum()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    # float32 sums over 256+ padded tokens in another order than the fused weight: measured up to
    # 2e-6 of the largest dL/dD entry (a lost alpha/rank scale would be off by half)
    clip_tests.assert_chain_rule(lora.lora_layers(text.t5), weights, deltas, tolerance=1e-5)


@pytest.fixture
def t5_config(monkeypatch):
    """The CLIP-L tests' run settings with lora.train_t5 on."""
    base = clip_tests._config

    def config(steps, folder_name="te"):
        out = base(steps, folder_name)
        return {**out, "lora": {**out["lora"], **T5_ON["lora"]}}
    monkeypatch.setattr(clip_tests, "_config", config)


def test_a_trained_t5_lora_loads_through_stock_lora_loader_and_matches_training(comfy_dirs, caplog, t5_config):
    models = clip_tests.tiny()
    dataset = dataset_for(models, make_folder(comfy_dirs / "input" / "data"))
    final, text = clip_tests._train(models, dataset, comfy_dirs / "run", 3)
    tensors = load_file(str(final))
    t5_keys = {k for k in tensors if k.startswith("lora_te3_")}
    expected = {f"{kohya_key(name)}.{part}" for name in t5_targets(ComfyClipL(models.clip, torch.device("cpu"), t5=True).t5)
                for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert t5_keys == expected and any(k.startswith("lora_te1_") for k in tensors)
    assert all(tensors[k].abs().max() > 0 for k in t5_keys if k.endswith("lora_up.weight")), "the T5 LoRA did not train"

    model, clip, unmatched = load_with_stock_lora_loader(final, models, comfy_dirs / "loras", caplog)
    assert unmatched == []
    for caption in CAPTIONS:
        stock, base = _context(clip, caption), _context(models.clip, caption)
        with torch.no_grad():
            ours = text.encode_context([caption])
        assert (ours - base).norm() > 1e-3 * base.norm(), "the T5 LoRA must change the context for this to mean anything"
        # ComfyUI folds alpha/rank * up @ down into the weight, peft adds the low-rank path: float32
        # rounding of another summation order, measured up to 4.7e-6 of the context's largest entry (~3)
        torch.testing.assert_close(stock, ours, rtol=1e-5, atol=1e-5 * ours.abs().max().item())


def test_resume_of_a_t5_run_ends_bit_identical(comfy_dirs, t5_config):
    models = clip_tests.tiny()
    dataset = dataset_for(models, make_folder(comfy_dirs / "input" / "data"))
    straight, _ = clip_tests._train(models, dataset, comfy_dirs / "straight", 4)
    clip_tests._train(models, dataset, comfy_dirs / "resumed", 2)
    resumed, _ = clip_tests._train(models, dataset, comfy_dirs / "resumed", 4)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and any(k.startswith("lora_te3_") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_t5_without_train_text_encoder_is_refused_naming_both():
    from types import SimpleNamespace

    config = TrainConfig().with_overrides(T5_ON)
    with pytest.raises(ConfigError, match=r"lora.train_t5: needs lora.train_text_encoder on"):
        TextEncoderTraining.for_run(SimpleNamespace(config=config, adapter=SimpleNamespace(family="flux1"),
                                                    text_encoder=None), torch.device("cpu"))


def test_dops_prior_gets_the_base_t5_context_and_the_step_the_lorad_one():
    from types import SimpleNamespace

    from flux_lora_lab.core.train.text_encoder import context_for, text_lora_disabled

    clip = clip_tests.tiny().clip
    config = TrainConfig().with_overrides({"lora": {"rank": 4, "train_text_encoder": True, "train_t5": True}})
    text = TextEncoderTraining.for_run(SimpleNamespace(config=config, adapter=SimpleNamespace(family="flux1"),
                                                       text_encoder=ComfyClipL(clip, torch.device("cpu"), t5=True)),
                                       torch.device("cpu"))
    clip_tests._randomize(text.module)
    batch = SimpleNamespace(captions=CAPTIONS[:1], dop_captions=CAPTIONS[1:], context=None, dop_context=None)
    base = _context(clip, CAPTIONS[1])
    with torch.no_grad():
        with text_lora_disabled(text):
            assert torch.equal(context_for(text, batch, torch.device("cpu"), dop=True), base)
        trained = context_for(text, batch, torch.device("cpu"), dop=True)
    assert (trained - base).norm() > 1e-3 * base.norm()
