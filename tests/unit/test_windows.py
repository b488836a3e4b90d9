"""Temporal windows for long clips (DiffHDR: 33 frames overlapping by 8, linear blending)."""

from __future__ import annotations

import pytest
import torch

from comfyui_hdr.hdr.windows import (
    DIFFHDR_WINDOWS,
    blend_weights,
    stride_for_overlap,
    window_starts,
)


def test_diffhdr_windows_of_an_81_frame_wan_clip():
    # 81 pixel frames -> 21 latent frames; 33 frames -> 9 latent, stride 16 -> 4 latent.
    assert window_starts(21, 9, 4) == [0, 4, 8, 12]


def test_diffhdr_33_frames_overlapping_by_8_are_9_latent_frames_every_7():
    assert (DIFFHDR_WINDOWS.frames, DIFFHDR_WINDOWS.overlap) == (33, 8)
    stride = stride_for_overlap(33, 8)
    assert stride == 28
    # 81 pixel frames -> 21 latent frames: windows at latent 0, 7, 12 (the last aligned to
    # the end). Latent frame k >= 1 holds pixel frames 4k-3 .. 4k, so windows 0 and 7
    # share latent frames 7 and 8 = pixel frames 25..32: exactly 8.
    starts = window_starts(21, 9, stride // 4)
    assert starts == [0, 7, 12]
    shared = set(range(0, 9)) & set(range(7, 16))
    assert sorted(pixel for k in shared for pixel in range(4 * k - 3, 4 * k + 1)) == list(
        range(25, 33))
    # Overlaps that are not whole latent frames round up; no overlap is a stride of 9 latent.
    assert stride_for_overlap(33, 9) == 24 and stride_for_overlap(33, 0) == 36
    assert stride_for_overlap(5, 4) == 4


@pytest.mark.parametrize(("window", "overlap", "message"), [
    (32, 8, r"window_frames \(32\) must be 1 \+ 4k"), (33, 33, "overlap_frames"),
    (33, -4, "overlap_frames")])
def test_bad_window_or_overlap_names_the_input(window, overlap, message):
    with pytest.raises(ValueError, match=message):
        stride_for_overlap(window, overlap)


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
