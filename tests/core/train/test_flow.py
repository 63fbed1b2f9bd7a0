"""Flow matching: objective identities, sigma samplers, loss weights and the Euler preview sampler."""

import math

import pytest
import torch

from flux_lora_lab.core.train import flow
from flux_lora_lab.core.config import FlowSettings

N = 200_000  # samples for distribution checks: standard error of a mean ~ 0.3 / sqrt(N) ~ 7e-4


def draw(mode, n=N, seed=0, **kw):
    settings = FlowSettings(timestep_sampling=mode, **{k: v for k, v in kw.items() if k != "seq"})
    return flow.sample_sigmas(settings, n, torch.Generator().manual_seed(seed), image_seq_len=kw.get("seq"))


def test_noisy_and_target_identities():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    sigmas = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    noisy, target = flow.add_noise(x, eps, sigmas)
    torch.testing.assert_close(noisy[0], x[0], rtol=0, atol=0)  # sigma 0: clean
    torch.testing.assert_close(noisy[2], eps[2], rtol=0, atol=0)  # sigma 1: pure noise
    torch.testing.assert_close(noisy[1], 0.7 * x[1] + 0.3 * eps[1], rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(target, eps - x, rtol=0, atol=0)
    # the target is the velocity of the straight path: noisy(s + h) - noisy(s) = h * target
    later, _ = flow.add_noise(x, eps, sigmas + 1e-3)
    torch.testing.assert_close((later - noisy) / 1e-3, target, rtol=1e-9, atol=1e-9)
    # from the noisy point and the target, x and eps are recovered
    s = sigmas.view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy - s * target, x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="sigmas must have shape"):
        flow.add_noise(x, eps, sigmas[:2])


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (4, 1.0), (7, 3.0)])
def test_euler_with_perfect_predictor_reaches_x_exactly(steps, shift):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 16, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 16, 8, 8, generator=g, dtype=torch.float64)
    calls = []

    def predict(x, sigma):  # knows x0; reads the velocity off the current state, as a model would
        calls.append(sigma[0].item())
        return (x - x0) / sigma.view(-1, 1, 1, 1)

    out = flow.euler_sample(predict, eps, steps, shift=shift)
    torch.testing.assert_close(out, x0, rtol=1e-12, atol=1e-12)
    assert len(calls) == steps and calls[0] == 1.0 and all(a > b > 0 for a, b in zip(calls, calls[1:]))
    # an imperfect predictor does not (guards against a sampler that ignores the prediction)
    wrong = flow.euler_sample(lambda x, s: torch.zeros_like(x), eps, steps)
    assert (wrong - x0).abs().max() > 0.5


def test_sigma_schedule_ends_and_shift():
    plain = flow.sigma_schedule(4)
    torch.testing.assert_close(plain, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = flow.sigma_schedule(4, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0 and bool((shifted[1:-1] > plain[1:-1]).all())
    by_size = flow.sigma_schedule(4, image_seq_len=4096)
    torch.testing.assert_close(by_size, flow.shift_sigmas(plain, math.exp(1.15)))


def test_shift_is_monotone_and_moves_mass_up():
    s = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for shift in (0.3, 1.0, 3.0):
        out = flow.shift_sigmas(s, shift)
        assert bool((out[1:] > out[:-1]).all()) and out[0] == 0 and out[-1] == 1
    torch.testing.assert_close(flow.shift_sigmas(s, 1.0), s)
    assert bool((flow.shift_sigmas(s[1:-1], 3.0) > s[1:-1]).all())
    # the flux form exp(mu) / (exp(mu) + 1/sigma - 1) is the same map with shift = exp(mu)
    mu, mid = 0.8, s[1:-1]
    torch.testing.assert_close(flow.shift_sigmas(mid, math.exp(mu)), math.exp(mu) / (math.exp(mu) + (1 / mid - 1)))
    assert draw("shift", shift=3.0).mean() > draw("uniform").mean() + 0.15


def test_flux_shift_mu_at_reference_sizes():
    assert flow.flux_shift_mu(256) == pytest.approx(0.5, abs=1e-12)
    assert flow.flux_shift_mu(4096) == pytest.approx(1.15, abs=1e-12)
    assert flow.flux_shift_mu(2176) == pytest.approx(0.825, abs=1e-12)  # midpoint
    assert flow.image_seq_len(128, 128, 2) == 4096  # 1024 px Flux.1 latent (patch 2)
    assert flow.image_seq_len(64, 64, 1) == 4096  # Flux.2 latent (patch 1, 16x VAE)
    small, large = draw("flux_shift", seq=256), draw("flux_shift", seq=4096)
    assert large.mean() > small.mean() > draw("uniform").mean()
    with pytest.raises(ValueError, match="image_seq_len"):
        draw("flux_shift", n=4)


def test_content_is_low_noise_style_is_high_noise_balanced_is_both():
    uniform, content, style, balanced = (draw(m) for m in ("uniform", "content", "style", "balanced"))
    # with u^3: mean sigma 1/4 (content), 3/4 (style); balanced mixes them 50/50 -> mean 1/2
    assert content.mean().item() == pytest.approx(0.25, abs=0.005)
    assert style.mean().item() == pytest.approx(0.75, abs=0.005)
    assert balanced.mean().item() == pytest.approx(0.5, abs=0.005)
    assert abs((balanced < 0.1).float().mean() - (balanced > 0.9).float().mean()) < 0.01
    assert (balanced < 0.1).float().mean() > 2 * (uniform < 0.1).float().mean()  # both ends heavy
    assert draw("content", content_style_bias=1.0).mean().item() == pytest.approx(0.5, abs=0.005)


def test_sigmoid_is_logit_normal():
    sig = draw("sigmoid", sigmoid_scale=1.5)
    logits = torch.logit(sig.double())
    assert logits.mean().item() == pytest.approx(0.0, abs=0.01)
    assert logits.std().item() == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("mode", ["uniform", "sigmoid", "shift", "flux_shift", "content", "style", "balanced"])
def test_samplers_are_reproducible_and_in_range(mode):
    a, b, c = draw(mode, n=1000, seed=5, seq=1024), draw(mode, n=1000, seed=5, seq=1024), draw(mode, n=1000, seed=6, seq=1024)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (1000,) and bool(((a >= 0) & (a <= 1)).all())


def test_loss_weights():
    s = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    bell = flow.loss_weights(s, "bell_shaped")
    assert torch.trapezoid(bell, s).item() == pytest.approx(1.0, abs=1e-9)  # mean 1 under uniform sigma
    assert bell[0].item() == pytest.approx(0, abs=1e-12) and bell[-1].item() == pytest.approx(0, abs=1e-12)
    assert bell.argmax().item() == 50_000 and bell.max().item() == pytest.approx(1.5798, abs=1e-3)
    assert torch.equal(flow.loss_weights(s, "uniform"), torch.ones_like(s))


def test_flow_loss_is_weighted_per_sample_mse():
    pred = torch.zeros(2, 3, 4)
    target = torch.stack([torch.ones(3, 4), 2 * torch.ones(3, 4)])
    sig = torch.tensor([0.5, 0.0])
    assert flow.flow_loss(pred, target, sig, "uniform").item() == pytest.approx((1 + 4) / 2)
    w = flow.loss_weights(sig, "bell_shaped")
    assert flow.flow_loss(pred, target, sig, "bell_shaped").item() == pytest.approx((w[0] * 1 + w[1] * 4).item() / 2)
    p = torch.zeros(2, 3, 4, requires_grad=True)
    flow.flow_loss(p.bfloat16(), target.bfloat16(), sig).backward()  # bf16 inputs, fp32 loss, grads flow
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_masked_loss_is_the_mean_over_the_masked_region():
    pred = torch.zeros(2, 4, 3, 3)
    target = torch.ones(2, 4, 3, 3)
    target[:, :, 0, :] = 5.0  # the first row is wrong by 5, the rest by 1
    mask = torch.ones(2, 1, 3, 3)
    mask[0, :, 0, :] = 0.0  # sample 0 ignores the first row
    mask[1] = 0.0  # sample 1 is fully masked out: contributes 0
    sig = torch.tensor([0.2, 0.7])
    assert flow.flow_loss(pred, target, sig, mask=mask).item() == pytest.approx((1.0 + 0.0) / 2)
    full = torch.ones(2, 1, 3, 3)
    assert flow.flow_loss(pred, target, sig, mask=full).item() == pytest.approx(flow.flow_loss(pred, target, sig).item())
    soft = torch.full((2, 1, 3, 3), 0.5)  # a uniform soft mask is the plain mean
    assert flow.flow_loss(pred, target, sig, "bell_shaped", mask=soft).item() == pytest.approx(
        flow.flow_loss(pred, target, sig, "bell_shaped").item())
