"""Which Flux a module is: the traits read once from ComfyUI's Flux transformer, and the refusal
of everything whose forward core/model/flux.py does not prove equal to ComfyUI's.

Duck typing only: nothing here imports comfy; the owner is read by attribute.
"""

from dataclasses import dataclass

from torch import nn

from ..errors import FluxLabError

SUPPORTED = "ComfyUI's text-to-image Flux transformers (comfy.ldm.flux.model.Flux): Flux.1 dev/schnell/Krea, Flux.2 dev and Flux.2 klein"
_REQUIRED = ("params", "img_in", "txt_in", "time_in", "double_blocks", "single_blocks", "final_layer")


class UnsupportedModelError(FluxLabError, ValueError):
    """The module handed in is not a Flux.1 / Flux.2 transformer this engine can train."""


@dataclass(frozen=True)
class FluxArch:
    """Everything that differs between Flux families, read once from the owner module."""

    family: str  # "flux1" or "flux2"
    latent_channels: int
    patch_size: int
    hidden_size: int
    num_heads: int
    axes_dim: tuple
    theta: float
    pooled_dim: int | None  # width of the pooled text vector (CLIP-L); None for Flux.2
    has_guidance: bool  # guidance-distilled (dev) models embed the guidance value
    global_modulation: bool  # Flux.2: one modulation shared by all blocks
    gated_mlp: bool  # Flux.2: SiLU-gated MLP (linear -> silu(a) * b -> linear)
    text_position_axes: tuple  # RoPE axes on which text tokens count 0, 1, 2, ... (Flux.2: the 4th)

    @classmethod
    def of(cls, owner: nn.Module) -> "FluxArch":
        """Describe `owner` or raise UnsupportedModelError naming what was found."""
        found = type(owner).__name__
        if hasattr(owner, "diffusion_model") or hasattr(getattr(owner, "model", None), "diffusion_model"):
            raise UnsupportedModelError(
                f"got a {found} wrapper; pass the transformer itself "
                "(ModelPatcher.model.diffusion_model). Supported: " + SUPPORTED
            )
        missing = [name for name in _REQUIRED if not hasattr(owner, name)]
        if missing:
            raise UnsupportedModelError(f"{found} is not a Flux transformer (no {', '.join(missing)}). Supported: {SUPPORTED}")
        if hasattr(owner, "distilled_guidance_layer"):
            raise UnsupportedModelError(f"{found} is Chroma (distilled_guidance_layer), not Flux. Supported: {SUPPORTED}")
        p = owner.params
        if found != "Flux":
            raise UnsupportedModelError(f"{found} is not ComfyUI's Flux class (comfy.ldm.flux.model.Flux). Supported: {SUPPORTED}")
        if p.in_channels != p.out_channels:
            raise UnsupportedModelError(
                f"{found} takes {p.in_channels} input channels for {p.out_channels} output channels "
                "(Fill / Depth / Canny concat-conditioned Flux); only plain text-to-image Flux is supported. "
                "Supported: " + SUPPORTED
            )
        axes = tuple(p.axes_dim)
        traits = _variant_traits(owner)
        family = next((name for name, known in _PROVEN_VARIANTS.items() if traits == known), None)
        if family is None:
            raise UnsupportedModelError(_unknown_variant_message(traits))
        return cls(
            family=family,
            latent_channels=p.in_channels,
            patch_size=p.patch_size,
            hidden_size=p.hidden_size,
            num_heads=p.num_heads,
            axes_dim=axes,
            theta=p.theta,
            pooled_dim=p.vec_in_dim if getattr(owner, "vector_in", None) is not None else None,
            has_guidance=bool(p.guidance_embed),
            global_modulation=bool(p.global_modulation),
            gated_mlp=bool(p.mlp_silu_act),
            text_position_axes=traits["txt_ids_dims"],
        )


_PROVEN_VARIANTS = {
    # The variants whose forward is proven equal to ComfyUI's (tests/core/model/test_flux_parity.py).
    "flux1": dict(rope_axes=3, txt_ids_dims=(), pooled_text=True, global_modulation=False, mlp_silu_act=False,
                  yak_mlp=False, txt_norm=False),
    "flux2": dict(rope_axes=4, txt_ids_dims=(3,), pooled_text=False, global_modulation=True, mlp_silu_act=True,
                  yak_mlp=False, txt_norm=False),
}


def _variant_traits(owner: nn.Module) -> dict:
    """What tells Flux-class models apart. Current ComfyUI reuses its Flux class for other models
    (Ovis: gated "yak" MLP + text RMSNorm; LongCat-Image: no pooled text, text ids on axes 1 and 2),
    which only these switches distinguish. Hosts before `txt_ids_dims` existed (ComfyUI < 0.4) put
    text positions on axis 3 exactly when RoPE has four axes."""
    p = owner.params
    axes = len(p.axes_dim)
    return dict(
        rope_axes=axes,
        txt_ids_dims=tuple(getattr(p, "txt_ids_dims", (3,) if axes == 4 else ())),
        pooled_text=getattr(owner, "vector_in", None) is not None,
        global_modulation=bool(p.global_modulation),
        mlp_silu_act=bool(getattr(p, "mlp_silu_act", False)),
        yak_mlp=bool(getattr(p, "yak_mlp", False)),
        txt_norm=getattr(owner, "txt_norm", None) is not None,
    )


def _unknown_variant_message(traits: dict) -> str:
    if traits["yak_mlp"] and traits["txt_norm"]:
        guess = "Ovis-Image"
    elif traits["txt_ids_dims"] == (1, 2) and not traits["pooled_text"]:
        guess = "LongCat-Image"
    else:
        guess = "a model"
    listed = ", ".join(f"{key}={value}" for key, value in traits.items())
    return (f"this is {guess} built on ComfyUI's Flux class ({listed}), not a Flux variant this engine trains "
            f"with a forward proven equal to ComfyUI's. Supported: {SUPPORTED}")


