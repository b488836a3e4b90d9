"""A small standalone LumaFlux training loop: adapters + tone-field head on a frozen Flux.

Not the ``train-lora`` machinery (no latent cache, accelerate or resume): :func:`fit`
fits one batch of SDR images to BT.2020 PQ targets, so the adapters, the hooks, the head
and the poster's loss can be proven to train together, and :func:`fit_batches` a batch
per step, as ``train-lumaflux`` (:mod:`.lumaflux_cli`) runs it.
The transformer reads the SDR image itself, ``patch x patch`` pixels per token (a
pixel-space stand-in for the VAE latents the real trainer will use), and its output,
unpacked back to pixels, is the per-pixel feature map the tone-field head reads its
spline parameters from.

References
----------
LumaFlux poster: AdamW at 1e-4 with cosine decay and warm-up; the loss of
:mod:`comfyui_hdr.hdr.models.lumaflux_loss`. I. Loshchilov, F. Hutter (2019), Decoupled
Weight Decay Regularization (AdamW), ICLR; (2017) SGDR (cosine decay), ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..hdr.models.lumaflux import LumaFluxAdapters
from ..hdr.models.lumaflux_loss import lumaflux_loss
from ..hdr.models.tone_field import ToneFieldHead, ToneFieldOutput


@dataclass(frozen=True)
class FitOptions:
    """Optimiser settings; defaults are the poster's (AdamW, 1e-4, cosine, warm-up)."""

    steps: int = 20
    learning_rate: float = 1e-4
    warmup_steps: int = 2
    weight_decay: float = 0.01  # torch's AdamW default
    seed: int = 0


def cosine_with_warmup(step: int, steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup_steps``, then cosine to 0.

    >>> [round(cosine_with_warmup(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pack_pixels(image: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B, (H/patch)(W/patch), C patch^2]`` tokens, row-major, each
    token's features ordered (channel, row, column) as diffusers' Flux pipeline packs."""
    b, h, w, c = image.shape
    if h % patch or w % patch:
        raise ValueError(f"the image is {h} x {w}; both sides must be multiples of the "
                         f"patch size {patch} (crop or pad it)")
    grid = image.reshape(b, h // patch, patch, w // patch, patch, c).permute(0, 1, 3, 5, 2, 4)
    return grid.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpack_pixels(tokens: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """Invert :func:`pack_pixels`: tokens -> ``[B, height, width, C]``."""
    b, _, features = tokens.shape
    c = features // (patch * patch)
    grid = tokens.reshape(b, height // patch, width // patch, c, patch, patch)
    return grid.permute(0, 1, 4, 2, 5, 3).reshape(b, height, width, c)


def image_ids(height: int, width: int, patch: int, device) -> torch.Tensor:
    """Flux's position ids of the image tokens: ``(0, row, column)``."""
    rows, columns = torch.meshgrid(torch.arange(height // patch, device=device),
                                   torch.arange(width // patch, device=device), indexing="ij")
    return torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).reshape(-1, 3).float()


@dataclass
class LumaFluxPipeline:
    """The frozen transformer, the attached adapters and the head, with the prompt."""

    transformer: torch.nn.Module
    adapters: LumaFluxAdapters
    head: ToneFieldHead
    prompt: torch.Tensor
    pooled_prompt: torch.Tensor
    patch: int

    def __call__(self, sdr: torch.Tensor, siglip_tokens: torch.Tensor,
                 timestep: torch.Tensor) -> ToneFieldOutput:
        """SDR ``[B, H, W, 3]`` -> the head's HDR output, through the adapted Flux."""
        batch, height, width, _ = sdr.shape
        # a one-prompt conditioning (batch 1) serves any batch
        prompt = self.prompt.expand(batch, -1, -1) if len(self.prompt) == 1 else self.prompt
        pooled = (self.pooled_prompt.expand(batch, -1) if len(self.pooled_prompt) == 1
                  else self.pooled_prompt)
        with self.adapters.conditioned(sdr, timestep, siglip_tokens):
            tokens = self.transformer(
                hidden_states=pack_pixels(sdr, self.patch), timestep=timestep,
                encoder_hidden_states=prompt, pooled_projections=pooled,
                img_ids=image_ids(height, width, self.patch, sdr.device),
                txt_ids=torch.zeros(self.prompt.shape[1], 3, device=sdr.device)).sample
        return self.head(sdr, unpack_pixels(tokens, height, width, self.patch))


def fit(pipeline: LumaFluxPipeline, sdr: torch.Tensor, siglip_tokens: torch.Tensor,
        target_pq: torch.Tensor, options: FitOptions = FitOptions()) -> list[float]:
    """Train the adapters and head on one batch (the transformer stays frozen); return
    each step's loss."""
    return fit_batches(pipeline, lambda step: (sdr, siglip_tokens, target_pq), options)


def fit_batches(pipeline: LumaFluxPipeline,
                batches: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                options: FitOptions = FitOptions()) -> list[float]:
    """Train the adapters and head on ``batches(step)`` = (SDR, SigLIP tokens, PQ target)
    for each step; return each step's loss."""
    pipeline.transformer.requires_grad_(False)
    parameters = [*pipeline.adapters.parameters(), *pipeline.head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate,
                                  weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_with_warmup(step, options.steps, options.warmup_steps))
    generator = torch.Generator().manual_seed(options.seed)
    losses = []
    for step in range(options.steps):
        sdr, siglip_tokens, target_pq = batches(step)
        timestep = torch.rand(sdr.shape[0], generator=generator).to(sdr.device)
        loss = lumaflux_loss(pipeline(sdr, siglip_tokens, timestep), target_pq).total
        if not torch.isfinite(loss):
            raise ValueError(f"the LumaFlux loss became {float(loss)} at step {len(losses)}; "
                             "lower --learning-rate or check the targets")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses
