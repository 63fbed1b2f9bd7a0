"""Rectified-flow maths for Flux: the objective, noise-level (sigma) sampling, loss weighting, previews.

Convention (BFL / ComfyUI / diffusers): sigma in [0, 1] is the noise fraction, 0 = clean, 1 = noise.
    noisy  = (1 - sigma) * x + sigma * eps
    target = eps - x                      (the velocity d noisy / d sigma, what Flux predicts)
ComfyUI's Flux takes sigma itself as `timestep` (it multiplies by 1000 inside), so the trainer feeds
these sigmas to the model unchanged.

Every random draw takes an explicit `torch.Generator`, so a run (and a resumed run that restores the
generator state) draws the same sigmas in the same order.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import FlowSettings

# Resolution-dependent shift of BFL's reference code (and diffusers' FluxPipeline): mu is linear in
# the number of image tokens, 0.5 at 256 tokens (256^2 px) and 1.15 at 4096 tokens (1024^2 px).
BASE_SEQ_LEN, MAX_SEQ_LEN = 256, 4096
BASE_SHIFT, MAX_SHIFT = 0.5, 1.15


def add_noise(x: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, target) for clean latents x, noise eps and per-sample sigmas of shape [B]."""
    if sigmas.ndim != 1 or sigmas.shape[0] != x.shape[0]:
        raise ValueError(f"sigmas must have shape [batch]={[x.shape[0]]}, got {list(sigmas.shape)}")
    s = sigmas.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    return (1 - s) * x + s * noise, noise - x


def image_seq_len(latent_height: int, latent_width: int, patch_size: int) -> int:
    """Number of image tokens Flux sees: (H / patch) * (W / patch) of the latent."""
    return (latent_height // patch_size) * (latent_width // patch_size)


def flux_shift_mu(seq_len: int | float) -> float:
    """mu of the resolution-dependent shift, linear through (256, 0.5) and (4096, 1.15)."""
    slope = (MAX_SHIFT - BASE_SHIFT) / (MAX_SEQ_LEN - BASE_SEQ_LEN)
    return BASE_SHIFT + slope * (seq_len - BASE_SEQ_LEN)


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """sigma' = s*sigma / (1 + (s-1)*sigma): s > 1 moves every sigma up, s = 1 is the identity.

    The flux shift is the same map with s = exp(mu). Evaluated as s*sigma / (s*sigma + 1 - sigma):
    no 1/sigma (sigma = 0 is safe) and the ends map exactly to 0 and 1."""
    scaled = shift * sigmas
    return scaled / (scaled + (1 - sigmas))


def _content_style(u: torch.Tensor, bias: float, toward_high_noise: torch.Tensor | bool) -> torch.Tensor:
    low = u ** bias  # mass near 0: low noise
    return torch.where(torch.as_tensor(toward_high_noise), 1 - low, low)


def sample_sigmas(settings: FlowSettings, batch_size: int, generator: torch.Generator,
                  image_seq_len: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Draw [batch_size] float32 sigmas in [0, 1] by `settings.timestep_sampling`.

    uniform     u ~ U(0, 1).
    sigmoid     sigmoid(sigmoid_scale * n), n ~ N(0, 1)  (logit-normal, SD3 / diffusers).
    shift       shift_sigmas(u, settings.shift).
    flux_shift  shift_sigmas(u, exp(flux_shift_mu(image_seq_len))); needs image_seq_len.
    content     u ** k: bias toward LOW noise (fine detail / the subject), as seed 002 defines it.
    style       1 - u ** k: bias toward HIGH noise (composition / global look), seed 002.
    balanced    per sample, content or style with probability 1/2 each.
    k = settings.content_style_bias (3 = ai-toolkit's cubic). Note: ai-toolkit's `content_or_style`
    uses the opposite naming for flow models (its 'content' indexes a descending schedule with u^3,
    i.e. high noise); we follow the wording users read in seed 002 and the option docs say so.
    """
    mode = settings.timestep_sampling
    kw = dict(generator=generator, device=generator.device, dtype=torch.float32)
    if mode == "sigmoid":
        sigmas = torch.sigmoid(settings.sigmoid_scale * torch.randn(batch_size, **kw))
        return sigmas.to(device)
    u = torch.rand(batch_size, **kw)
    if mode == "uniform":
        sigmas = u
    elif mode == "shift":
        sigmas = shift_sigmas(u, settings.shift)
    elif mode == "flux_shift":
        if image_seq_len is None:
            raise ValueError("flow.timestep_sampling='flux_shift' needs image_seq_len (the number of "
                             "image tokens) to pick the shift; pass it or choose 'shift'")
        sigmas = shift_sigmas(u, math.exp(flux_shift_mu(image_seq_len)))
    elif mode in ("content", "style"):
        sigmas = _content_style(u, settings.content_style_bias, mode == "style")
    elif mode == "balanced":
        coin = torch.rand(batch_size, **kw) < 0.5
        sigmas = _content_style(u, settings.content_style_bias, coin)
    else:  # FlowSettings already refuses unknown modes; this guards a new mode added half-way.
        raise ValueError(f"flow.timestep_sampling={mode!r} has no sampler")
    return sigmas.to(device)


# Bell-shaped weight: w(s) = (exp(-2 (s - 1/2)^2) - exp(-1/2)) / Z, the curve ai-toolkit uses for its
# "weighted" flow-match timesteps: 0 at sigma = 0 and 1, peak ~1.58 at 1/2. Z makes the mean weight
# over uniform sigma exactly 1 (Z = sqrt(pi/2) erf(1/sqrt 2) - exp(-1/2)), so the loss scale and
# therefore the usual learning rates stay comparable with uniform weighting.
_BELL_FLOOR = math.exp(-0.5)
_BELL_Z = math.sqrt(math.pi / 2) * math.erf(1 / math.sqrt(2)) - _BELL_FLOOR


def loss_weights(sigmas: torch.Tensor, weighting: str) -> torch.Tensor:
    """Per-sample weights for `weighting` ('uniform' or 'bell_shaped'); mean 1 under uniform sigma."""
    if weighting == "uniform":
        return torch.ones_like(sigmas)
    if weighting == "bell_shaped":
        return (torch.exp(-2 * (sigmas - 0.5) ** 2) - _BELL_FLOOR) / _BELL_Z
    raise ValueError(f"flow.loss_weighting={weighting!r}: expected 'uniform' or 'bell_shaped'")


def flow_loss(pred: torch.Tensor, target: torch.Tensor, sigmas: torch.Tensor,
              weighting: str = "uniform", mask: torch.Tensor | None = None,
              sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted MSE in fp32: mean over the batch of w(sigma_i) * c_i * mse_i.

    c_i is the sample's folder loss weight (`sample_weights`, (B,); 1 when None). The mean stays over
    the whole batch as in kohya's prior_loss_weight: a reg sample of weight 0 adds nothing, and the
    other samples' gradients are what they are in that batch (not renormalised to the rest).

    mse_i is the mean of (pred - target)^2 over sample i, or with `mask` (broadcastable to pred, e.g.
    (B, 1, h, w) in [0, 1] from alpha channels) the mask-weighted mean sum(m e^2) / sum(m). Why a
    normalised mean rather than ai-toolkit's plain `loss * mask`: a sample whose subject covers a
    fifth of the frame then counts as much as a full-frame one, and the logged loss stays comparable
    with unmasked runs. A sample with an all-zero mask contributes 0."""
    err = (pred.float() - target.float()).pow(2)
    if mask is None:
        per_sample = err.flatten(1).mean(dim=1)
    else:
        m = mask.to(err.device, torch.float32).expand_as(err)
        per_sample = (m * err).flatten(1).sum(dim=1) / m.flatten(1).sum(dim=1).clamp_min(1e-12)
    weighted = loss_weights(sigmas.float().to(per_sample.device), weighting) * per_sample
    if sample_weights is not None:
        weighted = weighted * sample_weights.to(per_sample.device, torch.float32)
    return weighted.mean()


def sigma_schedule(steps: int, shift: float = 1.0, image_seq_len: int | None = None) -> torch.Tensor:
    """steps + 1 descending sigmas from 1 to 0 for sampling, shifted like training.

    With image_seq_len the flux (resolution) shift exp(mu) is used, as BFL's dev sampler does;
    otherwise the fixed `shift` (1 = straight linspace)."""
    if steps < 1:
        raise ValueError(f"preview steps must be >= 1, got {steps}")
    s = math.exp(flux_shift_mu(image_seq_len)) if image_seq_len is not None else shift
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), s)


@torch.no_grad()
def euler_sample(predict_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int, shift: float = 1.0, image_seq_len: int | None = None,
                 sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """Integrate from pure noise (sigma = 1) to sigma = 0 with Euler steps on the velocity.

    predict_fn(x, sigma_batch) returns the predicted velocity eps - x0 (what Flux outputs), where
    sigma_batch has shape [B]. x_next = x + (sigma_next - sigma) * v. For a straight path and a
    perfect predictor this lands exactly on x0 in any number of steps. `sigmas` overrides the
    schedule (descending, ending at 0)."""
    if sigmas is None:
        sigmas = sigma_schedule(steps, shift, image_seq_len)
    x = noise
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        sigma_batch = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
        v = predict_fn(x, sigma_batch)
        x = x + (sigma_next - sigma) * v.to(x.dtype)
    return x
