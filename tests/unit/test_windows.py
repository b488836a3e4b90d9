"""Temporal windows for long clips (DiffHDR: 33 frames, stride 16, linear blending)."""

from __future__ import annotations

import pytest
import torch

from comfyui_hdr.hdr.windows import blend_weights, window_starts


def test_diffhdr_windows_of_an_81_frame_wan_clip():
    # 81 pixel frames -> 21 latent frames; 33 frames -> 9 latent, stride 16 -> 4 latent.
    assert window_starts(21, 9, 4) == [0, 4, 8, 12]


def test_the_last_window_is_aligned_to_the_end_so_every_frame_is_covered():
    assert window_starts(20, 9, 4) == [0, 4, 8, 11]
    assert window_starts(5, 9, 4) == [0]


@pytest.mark.parametrize(("length", "window", "stride"), [(21, 9, 4), (20, 9, 4), (3, 2, 1),
                                                          (50, 7, 7)])
def test_blend_weights_sum_to_one_everywhere_and_ramp_linearly(length, window, stride,
                                                               device):
    starts = window_starts(length, window, stride)
    weights = blend_weights(length, starts, window, device=device)
    total = torch.zeros(length, dtype=torch.float64, device=device)
    for start, weight in zip(starts, weights, strict=True):
        assert weight.device.type == device.type and weight.dtype == torch.float64
        total[start:start + window] += weight
        assert (weight > 0).all()
    torch.testing.assert_close(total.cpu(), torch.ones(length, dtype=torch.float64), rtol=0,
                               atol=1e-12)


def test_two_windows_cross_fade_linearly_over_their_overlap():
    # Windows [0, 4) and [2, 6): frames 2 and 3 are shared; ramps 1/3, 2/3.
    first, second = blend_weights(6, [0, 2], 4)
    torch.testing.assert_close(first, torch.tensor([1, 1, 2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(second, torch.tensor([1 / 3, 2 / 3, 1, 1], dtype=torch.float64))


def test_bad_window_or_stride_is_refused():
    with pytest.raises(ValueError, match="window"):
        window_starts(10, 0, 4)
