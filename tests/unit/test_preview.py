"""hdr.preview: the viewer's area-downsampled float proxy and its SDR picture, against
PyTorch's own area interpolation and the sRGB curve evaluated per pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comfyui_hdr.hdr import preview


def _reference(rgb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    out = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")
    return out[0].permute(1, 2, 0)


def _frame(height: int, width: int, channels: int = 3) -> torch.Tensor:
    """Log-normal light from 1e-3 to ~1e4 (a 20-stop range), so relative error is tested."""
    rng = np.random.default_rng(height * width)
    return torch.from_numpy(rng.lognormal(-1.7, 2.5, (height, width, channels)).astype(np.float32))


@pytest.mark.parametrize("size, out", [
    ((2160, 3840), (576, 1024)),   # UHD: period 15 -> 4 both ways
    ((1080, 1920), (576, 1024)),   # period 15 -> 8
    ((2160, 4096), (540, 1024)),   # DCI 4K: a whole-number factor (4)
    ((288, 512), (144, 256)),
    ((777, 1001), (511, 658)),     # periods 777 and 1001: the F.interpolate fallback
])
def test_area_downsample_equals_torch_area_interpolation(size, out):
    rgb = _frame(*size)
    ours = preview.area_downsample(rgb, *out)
    # The same windows and weights; only the order of float32 additions differs (window
    # sums of <= 5 x 5 values: a few units of 2**-24 relative).
    torch.testing.assert_close(ours, _reference(rgb, *out), rtol=2**-20, atol=0)


def test_non_finite_pixels_stay_in_their_own_window():
    rgb = _frame(2160, 3840)
    rgb[100, 200, 0], rgb[1000, 3000, 1] = float("nan"), float("inf")
    ours = preview.area_downsample(rgb, 576, 1024)
    reference = _reference(rgb, 576, 1024)
    assert torch.equal(ours.isnan(), reference.isnan()) and int(ours.isnan().sum()) == 1
    assert torch.equal(ours.isinf(), reference.isinf()) and int(ours.isinf().sum()) == 1


def test_sdr_picture_of_a_proxy_is_the_curve_of_every_pixel():
    proxy = preview.float_proxy(_frame(2160, 3840) / 50)
    proxy.reshape(-1, 3)[:6] = [[np.nan] * 3, [np.inf] * 3, [-1.0] * 3, [0.0] * 3,
                                [65504.0] * 3, [0.0031308] * 3]
    expected = preview.srgb_picture(torch.from_numpy(proxy.astype(np.float32)))
    np.testing.assert_array_equal(preview.srgb_picture_of_proxy(proxy), expected)


def test_float_proxy_is_the_area_mean_rounded_to_half_as_numpy_rounds():
    frame = _frame(2160, 3840) * 40  # peaks above 65504 become +Inf, as the viewer expects
    proxy = preview.float_proxy(frame)
    with np.errstate(over="ignore"):
        expected = preview.area_downsample(frame, 576, 1024).numpy().astype("<f2")
    assert proxy.dtype == np.dtype("<f2") and np.isinf(proxy).any()
    np.testing.assert_array_equal(proxy.view(np.uint16), expected.view(np.uint16))
