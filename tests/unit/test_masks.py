"""hdr.masks against a numpy transcription of DiffHDR's exposure-mask definition.

The oracle below is written from the definition (issue 8; DiffHDR ``utils/color_utils.py``
and ``infer_video.py``), not by calling ``hdr``: sRGB decode from IEC 61966-2-1, Rec.709
luminance from colour-science's primary matrix, morphology and box blur from
scipy.ndimage. Max/min filters with ``mode="nearest"`` never let outside pixels win, as
``max_pool2d``'s -inf padding does; the box blur pads with zeros (``uniform_filter``
``mode="constant"``), as DiffHDR's ``avg_pool2d`` does.
"""

from __future__ import annotations

import colour
import numpy as np
import pytest
import torch
from _devices import back, on
from scipy import ndimage

from comfyui_hdr.hdr import masks

REC709_Y = colour.RGB_COLOURSPACES["ITU-R BT.709"].matrix_RGB_to_XYZ[1]
DEFAULTS = dict(over_threshold=0.95, under_threshold=0.01, softness=0.02, clip_tolerance=0.02,
                close_size=3, ema_alpha=0.7, blur_size=9, open_close_size=9,
                binarise_threshold=0.2)
OTHER = dict(over_threshold=0.9, under_threshold=0.05, softness=0.03, clip_tolerance=0.05,
             close_size=5, ema_alpha=0.6, blur_size=5, open_close_size=7,
             binarise_threshold=0.35)
"""Non-default settings. With these and the defaults, every stabilised value of the
synthetic clip stays >= 0.001 away from the threshold, so rounding cannot flip a pixel
between oracle and library (an EMA of 0.5 would make exact ties at 0.3)."""


def _srgb_decode(code):
    return np.where(code <= 0.04045, code / 12.92, ((code + 0.055) / 1.055) ** 2.4)


def _smoothstep(x, edge0, edge1):
    t = np.clip((x - edge0) / (edge1 - edge0), 0, 1)
    return t * t * (3 - 2 * t)


def _dilate(frames, size):
    return ndimage.grey_dilation(frames, size=(1, size, size), mode="nearest")


def _erode(frames, size):
    return ndimage.grey_erosion(frames, size=(1, size, size), mode="nearest")


def oracle_soft(clip, over_threshold, under_threshold, softness, clip_tolerance, close_size,
                **_):
    code = np.clip(clip, 0, 1)
    y = _srgb_decode(code) @ REC709_Y
    over = (0.7 * _smoothstep(y, _srgb_decode(over_threshold - softness),
                              _srgb_decode(over_threshold + softness))
            + 0.3 * ((code >= 1 - clip_tolerance).sum(-1) >= 2))
    under = (0.7 * (1 - _smoothstep(y, _srgb_decode(max(0, under_threshold - softness)),
                                    _srgb_decode(under_threshold + softness)))
             + 0.3 * (code <= under_threshold).all(-1))
    return tuple(np.clip(_erode(_dilate(np.clip(m, 0, 1), close_size), close_size), 0, 1)
                 for m in (over, under))


def oracle_stabilise(soft, ema_alpha, blur_size, open_close_size, binarise_threshold, **_):
    ema = np.empty_like(soft)
    ema[0] = soft[0]
    for t in range(1, len(soft)):
        ema[t] = ema_alpha * soft[t] + (1 - ema_alpha) * ema[t - 1]
    blurred = ndimage.uniform_filter(ema, size=(1, blur_size, blur_size), mode="constant")
    k = open_close_size
    steady = _erode(_dilate(_dilate(_erode(blurred, k), k), k), k)
    return (np.clip(steady, 0, 1) > binarise_threshold).astype(np.float64)


def synthetic_clip(frames: int = 6, size: int = 64) -> np.ndarray:
    """Mid-grey ramp with a blown disc moving right, a yellow patch with red and green
    clipped, a crushed corner, a near-threshold grey patch and mild noise."""
    rng = np.random.default_rng(8)
    rows, columns = np.mgrid[0:size, 0:size]
    clip = np.empty((frames, size, size, 3))
    for t in range(frames):
        frame = np.repeat((0.2 + 0.5 * columns / size)[..., None], 3, axis=-1)
        frame = frame + rng.normal(0, 0.01, frame.shape)
        disc = (rows - 20) ** 2 + (columns - 16 - 3 * t) ** 2 < 11 ** 2
        frame[disc] = 1.0
        frame[40:60, 36:60] = [1.0, 0.99, 0.5]
        frame[44:64, 0:22] = np.clip(rng.normal(0.004, 0.004, (20, 22, 3)), 0, None)
        frame[4:14, 44:60] = 0.95
        clip[t] = frame
    return clip


@pytest.mark.parametrize("settings", [DEFAULTS, OTHER], ids=["diffhdr_defaults", "other"])
def test_soft_masks_match_numpy_transcription_of_diffhdr(settings, device):
    clip = synthetic_clip()
    soft_settings = {k: settings[k] for k in ("over_threshold", "under_threshold",
                                              "softness", "clip_tolerance", "close_size")}
    over, under = masks.soft_exposure_masks(on(device, clip), **soft_settings)
    expected_over, expected_under = oracle_soft(clip, **settings)
    # float64 in and out: only summation order differs (luminance dot product).
    np.testing.assert_allclose(back(over), expected_over, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back(under), expected_under, rtol=0, atol=1e-12)


@pytest.mark.parametrize("settings", [DEFAULTS, OTHER], ids=["diffhdr_defaults", "other"])
def test_binary_masks_equal_numpy_transcription_of_diffhdr(settings, device):
    clip = synthetic_clip()
    result = masks.exposure_masks(on(device, clip), **settings)
    soft_over, soft_under = oracle_soft(clip, **settings)
    assert result.over.device.type == device.type
    np.testing.assert_array_equal(back(result.over), oracle_stabilise(soft_over, **settings))
    np.testing.assert_array_equal(back(result.under),
                                  oracle_stabilise(soft_under, **settings))


def test_known_blown_and_crushed_regions_land_in_the_right_mask():
    result = masks.exposure_masks(torch.from_numpy(synthetic_clip()).float())
    assert result.over.dtype == torch.float32 and result.over.shape == (6, 64, 64)
    over, under = result.over[-1], result.under[-1]
    assert over[20, 31] == 1 and over[50, 48] == 1  # blown disc centre, clipped yellow
    assert under[56, 8] == 1  # crushed corner
    assert over[28, 60] == 0 and under[28, 60] == 0  # mid-grey ramp
    assert over[9, 52] == 0  # code 0.95 alone: 0.7 * smoothstep mid-ramp, then blurred off
    assert under[50, 48] == 0 and over[56, 8] == 0


def test_float32_masks_equal_float64_masks():
    clip = synthetic_clip()
    single = masks.exposure_masks(clip.astype(np.float32))
    double = masks.exposure_masks(clip)
    assert torch.equal(single.over.double(), double.over)
    assert torch.equal(single.under.double(), double.under)


@pytest.mark.parametrize("alpha", [0.7, 0.5, 0.3])
def test_ema_lag_on_a_step_change_matches_the_closed_form(alpha, device):
    # A 40-pixel blown square shows for frames 3..8 on a mid-grey clip.
    clip = np.full((16, 64, 64, 3), 0.5)
    clip[3:9, 12:52, 12:52] = 1.0
    over = back(masks.exposure_masks(on(device, clip), ema_alpha=alpha).over[:, 32, 32])
    lit = np.flatnonzero(over)
    # Rising edge: ema = alpha > 0.2 on the first blown frame, so no lag. Falling edge:
    # after 6 blown frames ema = 1 - (1 - alpha)**6, then it decays by (1 - alpha) per
    # dark frame; the mask is off from the first dark frame where ema <= 0.2.
    ema, dark_frames = 1 - (1 - alpha) ** 6, 0
    while ema > 0.2:
        ema, dark_frames = ema * (1 - alpha), dark_frames + 1
    assert lit[0] == 3
    assert lit[-1] == 8 + dark_frames - 1
    assert dark_frames - 1 == {0.7: 1, 0.5: 2, 0.3: 4}[alpha]


def test_stabilise_without_ema_blur_or_morphology_is_a_plain_threshold():
    soft = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steady = masks.stabilise_mask(soft, ema_alpha=1.0, blur_size=1, open_close_size=1)
    assert torch.equal(steady, (soft > 0.2).double())


def test_input_is_not_modified_and_values_outside_0_1_are_clamped_first():
    clip = torch.from_numpy(synthetic_clip())
    pushed = clip.clone()
    pushed[pushed >= 1] = 3.0
    pushed[pushed <= 0] = -0.5
    before = pushed.clone()
    result = masks.exposure_masks(pushed)
    assert torch.equal(pushed, before)
    reference = masks.exposure_masks(clip)
    assert torch.equal(result.over, reference.over)
    assert torch.equal(result.under, reference.under)


def test_exposure_masks_is_a_frozen_pair_of_equal_shapes():
    pair = masks.ExposureMasks(over=torch.zeros(2, 4, 4), under=torch.ones(2, 4, 4))
    with pytest.raises(AttributeError):
        pair.over = torch.ones(2, 4, 4)
    with pytest.raises(ValueError, match=r"over \(2, 4, 4\) and .under \(2, 4, 5\)"):
        masks.ExposureMasks(over=torch.zeros(2, 4, 4), under=torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="under must be a"):
        masks.ExposureMasks(over=torch.zeros(2, 4, 4), under=torch.zeros(4, 4))


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(blur_size=8), "blur_size must be an odd number"),
    (dict(open_close_size=0), "open_close_size must be an odd number"),
    (dict(close_size=2), "close_size must be an odd number"),
    (dict(softness=0.0), "softness must be > 0"),
    (dict(ema_alpha=0.0), "ema_alpha must be in"),
])
def test_bad_settings_raise_value_errors_naming_the_setting(arguments, message):
    with pytest.raises(ValueError, match=message):
        masks.exposure_masks(np.zeros((2, 16, 16, 3)), **arguments)


def test_rgba_or_unbatched_images_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\].*drop alpha"):
        masks.exposure_masks(np.zeros((2, 16, 16, 4)))
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\]"):
        masks.exposure_masks(np.zeros((16, 16, 3)))
