"""Warm-start an HDR VAE from a pretrained diffusers ``AutoencoderKL`` (16 or 4 channels).

The source's weights go into the first latent channels; the new channels start at zero
wherever they would change the source's output, so the display head decodes the source
latent exactly as the source decoder does. The 1x1 quant convs get identity on the new
channels' diagonal: with zeros there too, no gradient could ever reach the new channels.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["copy_autoencoder_kl"]


def _moment_rows(old: int, new: int) -> list[int]:
    """Where the source's ``[mean(old), logvar(old)]`` moments go among ``2 * new``."""
    return list(range(old)) + [new + index for index in range(old)]


def _copy_quant_conv(source: nn.Conv2d, target: nn.Conv2d, rows: list[int]) -> None:
    """Place a 1x1 conv on ``rows`` x ``rows``; identity on the new channels, zero elsewhere."""
    weight = torch.zeros_like(target.weight)
    fresh = [index for index in range(weight.shape[0]) if index not in set(rows)]
    weight[fresh, fresh] = 1.0
    index = torch.tensor(rows, device=weight.device)
    weight[index[:, None], index[None, :]] = source.weight
    bias = torch.zeros_like(target.bias)
    bias[index] = source.bias
    target.weight.copy_(weight)
    target.bias.copy_(bias)


def _copy_decoder(source_decoder: nn.Module, source_post_quant: nn.Conv2d | None,
                  head: nn.Module, old: int) -> None:
    state = source_decoder.state_dict()
    conv_in = torch.zeros_like(head.decoder.conv_in.weight)
    conv_in[:, :old] = state.pop("conv_in.weight")
    state["conv_in.weight"] = conv_in
    head.decoder.load_state_dict(state)
    if source_post_quant is not None:
        _copy_quant_conv(source_post_quant, head.post_quant_conv, list(range(old)))


@torch.no_grad()
def copy_autoencoder_kl(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source`` (an ``AutoencoderKL`` or ``AutoencoderKLQwenImage``) into ``target``
    (an ``HDRAutoencoder`` or ``QwenHDRAutoencoder``) in place.

    ``target`` must have been built with the source's block layout and at least as many
    latent channels (``from_autoencoder_kl`` / ``from_qwen_image`` do both). The 1x1 quant
    convs may be 2D or 3D (Qwen-Image's are 1x1x1 causal Conv3d): the same placement.
    """
    # AutoencoderKL names its latent width latent_channels, AutoencoderKLQwenImage z_dim.
    old = getattr(source.config, "latent_channels", None) or source.config.z_dim
    new = target.config.latent_channels
    if old > new:
        raise ValueError(f"the source VAE has {old} latent channels, more than the HDR VAE's "
                         f"{new}; build the HDR VAE with latent_channels >= {old}")
    state = source.encoder.state_dict()
    for name in ("conv_out.weight", "conv_out.bias"):
        widened = torch.zeros_like(target.encoder.state_dict()[name])
        rows = torch.tensor(_moment_rows(old, new), device=widened.device)
        widened[rows] = state[name]
        state[name] = widened
    target.encoder.load_state_dict(state)
    if source.quant_conv is not None:
        _copy_quant_conv(source.quant_conv, target.quant_conv, _moment_rows(old, new))
    for head in (target.display_head, target.linear_head):
        _copy_decoder(source.decoder, source.post_quant_conv, head, old)
