"""A tiny Flux.1 VAE whose pictures show colour: ComfyUI's TAESD network, set by hand to pool and upsample.

Why: the seeded random KL autoencoder of tiny_models.py decodes every latent to noise, so a demo on it
cannot show a LoRA learning anything. Built by hand, ComfyUI's own TAESD class (which both hosts
detect from its `taesd_decoder.*` keys, 16 latent channels at /8) encodes a picture to the
8 x 8 average of its colours, spread over the 16 channels by a seeded orthonormal 16 x 3 matrix, and
decodes a latent back to those colours, one flat 8 x 8 block per latent pixel. Every other weight is
small seeded noise (another seed, other weights), which leaves each residual Block close to the
identity (its branch adds about 1e-9) and the whole network close to that pair.
`vae_shift` is Flux.1's latent shift and `vae_scale` its scale / BOOST, so the latent the model sees
(`Flux.process_in`) is BOOST x the network's own: about unit size, while the decoder's tanh clamp
(TAESD's first layer) sees the network's small values and stays nearly linear.
"""

import torch

LATENT_CHANNELS = 16
GAIN = 2.0  # the network's latent = GAIN * W (rgb - 0.5): small, where TAESD's tanh clamp is nearly linear
BOOST = 3.0  # the model's latent = BOOST x the network's: about unit size per channel
NOISE = 1e-3  # the seeded perturbation of every weight
FLUX1_SCALE, FLUX1_SHIFT = 0.3611, 0.1159  # comfy.latent_formats.Flux
# Indices of the convolutions in ComfyUI's TAESD Encoder / Decoder (nn.Sequential).
ENCODER_IN, ENCODER_STRIDED, ENCODER_OUT = 0, (2, 6, 10), 14
DECODER_IN, DECODER_UPSAMPLED, DECODER_OUT = 1, (7, 12, 17), 19


def build_tiny_colour_vae(seed: int = 0):
    """comfy.sd.VAE around the hand-set TAESD (Flux.1 latents: 16 channels at /8), seeded with seed."""
    import comfy.sd
    import comfy.taesd.taesd

    network = comfy.taesd.taesd.TAESD(latent_channels=LATENT_CHANNELS)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.parameters():
            fan_in = param[0].numel() if param.ndim >= 2 else 1
            param.copy_(NOISE * torch.randn(param.shape, generator=generator) / fan_in ** 0.5)
        mixing, _ = torch.linalg.qr(torch.randn(LATENT_CHANNELS, 3, generator=generator))  # orthonormal columns
        _set_encoder(network.taesd_encoder, mixing)
        _set_decoder(network.taesd_decoder, mixing)
        network.vae_scale.fill_(FLUX1_SCALE / BOOST)
        network.vae_shift.fill_(FLUX1_SHIFT)
    return comfy.sd.VAE(sd=network.state_dict())


def _identity(conv, channels, value: float = 1.0) -> None:
    for c in channels:
        conv.weight[c, c, 1, 1] += value


def _set_encoder(encoder, mixing: torch.Tensor) -> None:
    """RGB in [0, 1] -> three 2 x 2 average pools -> GAIN * mixing @ (rgb - 0.5)."""
    _identity(encoder[ENCODER_IN], range(3))
    for index in ENCODER_STRIDED:  # stride 2, padding 1: taps 1..2 cover input rows / columns 2i, 2i + 1
        for c in range(3):
            encoder[index].weight[c, c, 1:3, 1:3] += 0.25
    out = encoder[ENCODER_OUT]
    out.weight[:, :3, 1, 1] += GAIN * mixing
    out.bias += -GAIN * 0.5 * mixing.sum(dim=1)


def _set_decoder(decoder, mixing: torch.Tensor) -> None:
    """latent -> mixing.T @ latent split into positive / negative parts (ReLU) -> nearest upsampling
    three times -> rgb = (positive - negative) / GAIN + 0.5, which TAESD maps to [-1, 1]."""
    first = decoder[DECODER_IN]
    first.weight[:3, :, 1, 1] += mixing.T
    first.weight[3:6, :, 1, 1] -= mixing.T
    for index in DECODER_UPSAMPLED:
        _identity(decoder[index], range(6))
    out = decoder[DECODER_OUT]
    for c in range(3):
        out.weight[c, c, 1, 1] += 1.0 / GAIN
        out.weight[c, 3 + c, 1, 1] -= 1.0 / GAIN
    out.bias += 0.5
