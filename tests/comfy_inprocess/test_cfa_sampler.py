"""CFA Sampler on a tiny Wan 2.1 loaded by ComfyUI's own loader, sampled by ComfyUI's own
sampler, in-process: windowed sampling keeps a LATENT's noise mask as KSampler does.

The model is :func:`harness.tiny_models.tiny_wan_state_dict` (0.9 M parameters, seeded).
Latent ``[1, 16, 4, 8, 8]`` = 13 frames of 64x64 pixels; windows of 5 pixel frames (2 latent
frames) every 4 (1 latent frame) give three overlapping windows, starting at 0, 1 and 2.
"""

from __future__ import annotations

import comfy.model_management  # noqa: F401  (after conftest set args.cpu)
import comfy.sd
import pytest
import torch
from safetensors.torch import save_file

from comfyui_hdr.harness.tiny_models import tiny_wan_state_dict
from comfyui_hdr.hdr.masks import ExposureMasks
from comfyui_hdr.nodes.cfa import HDRCFASampler

LATENT = (1, 16, 4, 8, 8)
FRAMES, PIXELS = 13, 64
KEPT = 4e-6
"""Largest change allowed where the noise mask is 0: ComfyUI puts the input latent back
after every step, and Wan's latent normalisation in and out (and, in windows, the blend
weights summing to 1) round in float32; 8 float32 steps at the latent's largest values
(about 4). Measured: 6.0e-7 in one pass, 7.2e-7 in windows (12.6 before the fix)."""


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    path = tmp_path_factory.mktemp("wan") / "tiny_wan21_t2v.safetensors"
    save_file(tiny_wan_state_dict(), str(path))
    return comfy.sd.load_diffusion_model(str(path))


def _prompt(seed: int) -> list:
    return [[torch.randn((1, 6, 4096), generator=torch.Generator().manual_seed(seed)), {}]]


def _sample(wan, latent_image: dict, window_frames: int) -> torch.Tensor:
    over = torch.zeros(FRAMES, PIXELS, PIXELS)
    over[:, :PIXELS // 2] = 1.0  # the top half gets the over prompt
    masks = ExposureMasks(over=over, under=torch.zeros(FRAMES, PIXELS, PIXELS))
    output = HDRCFASampler().sample(
        wan, _prompt(1), _prompt(4), latent_image, masks, seed=7, steps=3, cfg=1.0,
        sampler_name="euler", scheduler="simple", denoise=1.0, alpha_over=1.0,
        alpha_under=0.0, window_frames=window_frames, window_stride=4, over=_prompt(2))
    return output["result"][0]["samples"]


def test_windowed_sampling_keeps_the_input_latent_where_the_noise_mask_is_zero(wan):
    latent = torch.randn(LATENT, generator=torch.Generator().manual_seed(3))
    noise_mask = torch.zeros(FRAMES, PIXELS, PIXELS)
    noise_mask[:, :, PIXELS // 2:] = 1.0  # Set Latent Noise Mask: resample the right half
    latent_image = {"samples": latent, "noise_mask": noise_mask}
    kept, resampled = (slice(None, LATENT[-1] // 2), slice(LATENT[-1] // 2, None))

    one_pass = _sample(wan, latent_image, window_frames=0)  # KSampler's own masking
    windowed = _sample(wan, latent_image, window_frames=5)
    for samples in (one_pass, windowed):
        assert (samples[..., kept] - latent[..., kept]).abs().max() <= KEPT
        assert (samples[..., resampled] - latent[..., resampled]).abs().mean() > 0.1
    assert latent_image["noise_mask"] is noise_mask  # the LATENT is handed back unchanged
