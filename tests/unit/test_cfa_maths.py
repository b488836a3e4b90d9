"""hdr.models.cfa: the CFA blend against its closed form, and the token-grid resampling
against a transcription of DiffHDR's ``utils/token_utils.py`` (pixel unshuffle 8x8,
nearest-exact in time, mean over the 64 cells, 2x2 patch average)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _devices import on

from comfyui_hdr.hdr.models import cfa


def _outputs(seed: int = 0, shape=(2, 12, 8), dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype) for _ in range(3)]


def test_cfa_combine_matches_the_closed_form_with_overlapping_fractional_masks(device):
    base, over, under = _outputs()
    generator = torch.Generator().manual_seed(1)
    m_over = torch.rand((2, 12), generator=generator, dtype=torch.float64) * 1.2
    m_under = torch.rand((2, 12), generator=generator, dtype=torch.float64)
    result = cfa.cfa_combine(*(on(device, t) for t in (base, over, under, m_over, m_under)),
                             0.8, 1.3).cpu()
    b, o, u = (t.numpy() for t in (base, over, under))
    mo, mu = np.clip(m_over.numpy(), 0, 1), np.clip(m_under.numpy(), 0, 1)
    norm = np.maximum(mo + mu, 1)[..., None]
    expected = b + 0.8 * (mo[..., None] / norm) * (o - b) + 1.3 * (mu[..., None] / norm) * (u - b)
    assert (mo + mu > 1).any() and (mo + mu < 1).any()  # both regimes of the normaliser
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-14, atol=1e-14)


def test_full_mask_at_strength_1_gives_that_prompt_and_overlap_gives_the_mean():
    base, over, under = _outputs(dtype=torch.float32)
    ones, zeros = torch.ones(2, 12), torch.zeros(2, 12)
    # float32 rounding of base + (over - base): within 2 ulp of O(1) values.
    torch.testing.assert_close(cfa.cfa_combine(base, over, under, ones, zeros, 1.0, 1.0), over,
                               rtol=0, atol=5e-7)
    torch.testing.assert_close(cfa.cfa_combine(base, over, under, ones, ones, 1.0, 1.0),
                               (over + under) / 2, rtol=0, atol=5e-7)


def test_strength_zero_missing_prompt_or_zero_masks_leave_base_untouched():
    base, over, under = _outputs(dtype=torch.float32)
    ones, zeros = torch.ones(2, 12), torch.zeros(2, 12)
    assert cfa.cfa_combine(base, over, under, ones, ones, 0.0, 0.0) is base
    assert cfa.cfa_combine(base, None, None, None, None, 1.0, 1.0) is base
    assert torch.equal(cfa.cfa_combine(base, over, under, zeros, zeros, 1.0, 2.0), base)
    only_over = cfa.cfa_combine(base, over, None, ones, None, 1.0, 1.0)
    torch.testing.assert_close(only_over, over, rtol=0, atol=5e-7)


def test_token_weights_may_carry_a_trailing_channel_axis():
    base, over, under = _outputs()
    weights = torch.rand((2, 12), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    flat = cfa.cfa_combine(base, over, None, weights, None, 1.0, 0.0)
    trailing = cfa.cfa_combine(base, over, None, weights[..., None], None, 1.0, 0.0)
    assert torch.equal(flat, trailing)


def test_bad_blend_inputs_raise_value_errors():
    base, over, under = _outputs()
    with pytest.raises(ValueError, match=r"m_over \(2, 11\) does not match.*\(2, 12, 8\)"):
        cfa.cfa_combine(base, over, None, torch.ones(2, 11), None, 1.0, 0.0)
    with pytest.raises(ValueError, match="m_under is missing"):
        cfa.cfa_combine(base, None, under, None, None, 0.0, 1.0)
    with pytest.raises(ValueError, match="alpha_over must be in"):
        cfa.cfa_combine(base, over, None, torch.ones(2, 12), None, 5.01, 0.0)
    with pytest.raises(ValueError, match="alpha_under must be in"):
        cfa.check_alpha(-0.5, "alpha_under")
    # DiffHDR's paper tests strengths 1, 3 and 5.
    assert [cfa.check_alpha(alpha, "alpha_over") for alpha in (1, 3, 5)] == [1.0, 3.0, 5.0]


def diffhdr_token_gate(mask_video: torch.Tensor) -> torch.Tensor:
    """DiffHDR ``build_mask_latents`` + ``mask_latents_to_gate`` for ``[T, H, W]`` masks:
    [T, H, W] -> [1, 64, T, H/8, W/8] (8x8 pixel unshuffle) -> nearest-exact to
    (T + 3) // 4 frames -> mean over the 64 cells -> 2x2 average -> [1, tokens]."""
    frames, height, width = mask_video.shape
    cells = (mask_video.reshape(frames, height // 8, 8, width // 8, 8)
             .permute(2, 4, 0, 1, 3).reshape(1, 64, frames, height // 8, width // 8))
    cells = F.interpolate(cells, size=((frames + 3) // 4, height // 8, width // 8),
                          mode="nearest-exact")
    grid = F.avg_pool3d(cells.mean(dim=1, keepdim=True), (1, 2, 2), (1, 2, 2))
    return grid.flatten(2).transpose(1, 2)[..., 0]


def test_wan_token_grid_equals_diffhdr_token_utils(device):
    masks = (torch.rand((33, 64, 96), generator=torch.Generator().manual_seed(4)) > 0.6).float()
    grid = cfa.masks_to_token_grid(masks.to(device), (1, 16, 9, 8, 12), (1, 2, 2)).cpu()
    assert grid.shape == (1, 9, 4, 6)
    # Same averages, different summation order: float32 agreement to a few ulp.
    torch.testing.assert_close(grid.flatten(1), diffhdr_token_gate(masks), rtol=0, atol=1e-6)


def test_wan_time_resampling_picks_diffhdrs_nearest_exact_frames():
    # Frame f of the clip is filled with f / 32; 33 frames -> 9 latent frames.
    masks = (torch.arange(33, dtype=torch.float32) / 32).reshape(33, 1, 1).expand(33, 16, 16)
    grid = cfa.masks_to_token_grid(masks, (1, 16, 9, 2, 2), (1, 2, 2))
    frames = (grid[0, :, 0, 0] * 32).round().int().tolist()
    # nearest-exact: frame floor((i + 0.5) * 33 / 9) for latent frame i.
    assert frames == [1, 5, 9, 12, 16, 20, 23, 27, 31]


@pytest.mark.parametrize(("masks_shape", "latent_shape", "patch", "compression", "grid_shape"), [
    ((33, 480, 832), (1, 16, 9, 60, 104), (1, 2, 2), 8, (1, 9, 30, 52)),  # Wan 2.1 480p
    ((81, 64, 64), (2, 16, 21, 8, 8), (1, 2, 2), 8, (1, 21, 4, 4)),  # Wan, 81 frames
    ((2, 5, 64, 64), (2, 16, 2, 8, 8), (1, 2, 2), 8, (2, 2, 4, 4)),  # one clip per row
    ((5, 128, 128), (1, 48, 2, 8, 8), (1, 2, 2), 16, (1, 2, 4, 4)),  # Wan 2.2 16x VAE
    ((2, 128, 128), (2, 16, 16, 16), 2, 8, (2, 1, 8, 8)),  # Flux, one mask per image
    ((1, 1024, 768), (1, 16, 128, 96), 2, 8, (1, 1, 64, 48)),  # Flux 1024x768
    ((1, 128, 128), (1, 16, 1, 16, 16), (1, 2, 2), 8, (1, 1, 8, 8)),  # Qwen-Image (5-D)
    ((1, 72, 56), (1, 16, 9, 7), 2, 8, (1, 1, 5, 4)),  # odd latent: partial patches
])
def test_token_grid_shapes(masks_shape, latent_shape, patch, compression, grid_shape):
    grid = cfa.masks_to_token_grid(torch.ones(masks_shape), latent_shape, patch,
                                   spatial_compression=compression)
    assert grid.shape == grid_shape
    assert torch.equal(grid, torch.ones(grid_shape))  # partial patches average what they cover


def test_masks_at_another_resolution_with_the_same_aspect_are_area_resampled(device):
    full = torch.zeros(1, 64, 64, device=device)
    full[:, :, :32] = 1.0
    half = full[:, ::2, ::2]
    latent = (1, 16, 8, 8)
    assert torch.equal(cfa.masks_to_token_grid(half, latent, 2),
                       cfa.masks_to_token_grid(full, latent, 2))


def test_masks_already_at_the_latent_frame_rate_are_used_as_they_are():
    masks = torch.zeros(9, 16, 16)
    masks[4] = 1.0
    grid = cfa.masks_to_token_grid(masks, (1, 16, 9, 2, 2), (1, 2, 2))
    assert grid[0, :, 0, 0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]


def test_masks_that_do_not_fit_the_latent_fail_naming_both_shapes():
    with pytest.raises(ValueError, match=r"17 frames \(5 latent frames.*\(1, 16, 9, 8, 8\)"):
        cfa.masks_to_token_grid(torch.ones(17, 64, 64), (1, 16, 9, 8, 8), (1, 2, 2))
    with pytest.raises(ValueError, match=r"64x32 pixels.*\(1, 16, 8, 8\) decodes to 64x64"):
        cfa.masks_to_token_grid(torch.ones(1, 64, 32), (1, 16, 8, 8), 2)
    with pytest.raises(ValueError, match=r"\[batch, height, width\]"):
        cfa.masks_to_token_grid(torch.ones(1, 1, 64, 64), (1, 16, 8, 8), 2)
    with pytest.raises(ValueError, match="latent_shape must be"):
        cfa.masks_to_token_grid(torch.ones(1, 64, 64), (16, 8, 8), 2)
