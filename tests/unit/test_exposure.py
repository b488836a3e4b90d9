"""hdr.exposure against numpy closed forms."""

from __future__ import annotations

import math

import colour
import numpy as np
import pytest
import torch
from _devices import OnDevice

import comfyui_hdr.hdr.exposure as exposure_module
from comfyui_hdr.hdr import exposure, gamut

REC709_Y = colour.RGB_COLOURSPACES["ITU-R BT.709"].matrix_RGB_to_XYZ[1]
"""Rec.709 luminance weights: the Y row of colour-science's primary matrix."""


@pytest.fixture(name="exposure")
def _exposure_on_device(device):
    """``exposure`` with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(exposure_module, device)


def test_whole_stops_are_exact_powers_of_two_in_float32(exposure):
    grey = torch.full((21,), 0.18, dtype=torch.float32)
    stops = torch.arange(-10, 11, dtype=torch.float32)
    pushed = exposure.apply_stops(grey, stops)
    assert pushed.dtype == torch.float32
    expected = np.float32(0.18) * np.array([2.0**s for s in range(-10, 11)], np.float32)
    np.testing.assert_array_equal(pushed.numpy(), expected)


def test_apply_stops_matches_closed_form_and_keeps_negatives(exposure):
    x = np.random.default_rng(0).uniform(-1.0, 100.0, (8, 3))
    np.testing.assert_allclose(exposure.apply_stops(x, 2.5), x * 2**2.5, rtol=1e-15)
    np.testing.assert_allclose(exposure.apply_stops(x, -1.0), x / 2, rtol=0)
    assert exposure.apply_stops(-0.5, 1.0) == -1.0


def test_apply_stops_is_differentiable_in_x_and_stops(exposure):
    x = torch.tensor([0.18, 1.0], dtype=torch.float64, requires_grad=True)
    stops = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    exposure.apply_stops(x, stops).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2**1.5] * 2, rtol=1e-15)
    # d/ds x * 2**s = ln2 * x * 2**s
    assert stops.grad.item() == pytest.approx(math.log(2) * 1.18 * 2**1.5, rel=1e-14)


def test_stops_between_is_log2_of_the_ratio(exposure):
    a = np.array([0.18, 1.0, 0.01])
    b = np.array([1.44, 0.5, 100.0])
    np.testing.assert_allclose(exposure.stops_between(a, b), np.log2(b / a), rtol=1e-15)
    assert exposure.stops_between(0.18, 0.18 * 2**12) == 12.0


def test_to_stops_reads_mid_grey_as_zero_and_floors_black(exposure):
    x = np.array([0.18, 0.72, 1.0, 0.0, -1.0, 0.18 * 2**-30])
    expected = [0.0, 2.0, math.log2(1 / 0.18), -20.0, -20.0, -20.0]
    np.testing.assert_allclose(exposure.to_stops(x), expected, rtol=1e-15)
    np.testing.assert_allclose(exposure.to_stops(x, reference=1.0, floor_stops=-8.0),
                               [math.log2(0.18), math.log2(0.72), 0.0, -8.0, -8.0, -8.0],
                               rtol=1e-15)
    with pytest.raises(ValueError, match="reference must be > 0"):
        exposure.to_stops(x, reference=0.0)


def test_luminance_is_gamuts_own_function():
    assert exposure.luminance is gamut.luminance


def _reference_stats(rgb: np.ndarray, weights: np.ndarray, diffuse_white: float) -> dict:
    """The statistics in plain numpy, from their definitions."""
    pixels = rgb[..., :3].reshape(-1, 3).astype(np.float64)
    finite = np.isfinite(pixels).all(-1)
    good = pixels[finite]
    lum = good @ weights
    p1, p50, p99, p99_9 = np.percentile(lum, [1, 50, 99, 99.9])
    return dict(
        peak_luminance=lum.max(), peak_channel=good.max(), min_luminance=lum.min(),
        min_channel=good.min(), mean_luminance=lum.mean(), luminance_p1=p1,
        luminance_p50=p50, luminance_p99=p99, luminance_p99_9=p99_9,
        peak_stops=np.log2(lum.max() / diffuse_white), diffuse_white=diffuse_white,
        share_above_diffuse_white=np.mean(good.max(-1) > diffuse_white),
        share_negative=np.mean(good.min(-1) < 0),
        nan_pixels=int(np.isnan(pixels).any(-1).sum()),
        inf_pixels=int((np.isinf(pixels).any(-1) & ~np.isnan(pixels).any(-1)).sum()),
        shape=rgb.shape,
    )


def _hdr_image() -> np.ndarray:
    """A [B, H, W, 4] float32 batch: log-normal light, a few negatives, NaN, Inf, alpha."""
    rng = np.random.default_rng(1)
    image = rng.lognormal(-1.7, 2.0, (2, 32, 48, 4)).astype(np.float32)
    image[..., 3] = 1e6  # alpha must not count
    image[0, 0, :5, 1] = -0.02
    image[0, 1, 0, 0] = np.nan
    image[1, 2, 3, :3] = np.nan
    image[1, 4, 5, 2] = np.inf
    image[1, 4, 6, 0] = -np.inf
    return image


@pytest.mark.parametrize("diffuse_white", [1.0, 2.03])
def test_hdr_stats_match_numpy_closed_forms(diffuse_white):
    image = _hdr_image()
    stats = exposure.hdr_stats(torch.from_numpy(image), diffuse_white=diffuse_white)
    expected = _reference_stats(image, REC709_Y, diffuse_white)
    ours = stats.as_dict()
    assert ours.pop("percentile_samples") is None  # this small image: exact percentiles
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        # float64 on both sides; weights differ from colour-science's by < 1e-15.
        assert ours[key] == pytest.approx(value, rel=1e-12), key
    assert (stats.nan_pixels, stats.inf_pixels, stats.shape) == (2, 2, (2, 32, 48, 4))


def test_hdr_stats_of_numpy_and_other_gamut():
    image = _hdr_image()[0, ..., :3].astype(np.float64)
    stats = exposure.hdr_stats(image, gamut="ACEScg")
    expected = _reference_stats(image, gamut.luminance_weights("ap1"), 1.0)
    assert stats.luminance_p99_9 == pytest.approx(expected["luminance_p99_9"], rel=1e-12)
    assert stats.mean_luminance == pytest.approx(expected["mean_luminance"], rel=1e-12)


def test_sun_at_twelve_stops_reads_as_twelve_stops_in_the_text():
    image = np.full((1, 8, 8, 3), 0.18, np.float32)
    image[0, 3, 3] = 4096.0
    stats = exposure.hdr_stats(image)
    assert stats.peak_stops == 12.0
    assert stats.share_above_diffuse_white == 1 / 64
    text = stats.as_text()
    assert text.splitlines()[0].startswith("peak 4096 (+12.0 stops over diffuse white 1)")
    assert "median 0.18" in text and "NaN 0 pixels, Inf 0 pixels" in text
    assert "shape [1, 8, 8, 3]" in text and len(text.splitlines()) == 5


def test_hdr_stats_of_an_all_nan_image_counts_them_and_reports_nan():
    stats = exposure.hdr_stats(np.full((4, 4, 3), np.nan))
    assert stats.nan_pixels == 16 and math.isnan(stats.peak_luminance)
    assert math.isnan(stats.peak_stops) and math.isnan(stats.share_negative)


def test_hdr_stats_rejects_bad_input():
    with pytest.raises(ValueError, match=r"at least 3 channels.*\(4, 4, 1\)"):
        exposure.hdr_stats(np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="diffuse_white must be > 0"):
        exposure.hdr_stats(np.zeros((4, 4, 3)), diffuse_white=0)


def _large_images() -> dict[str, np.ndarray]:
    """Over EXACT_PIXELS pixels each: natural light, heavy tails, and patterns a strided
    sample would alias (1-pixel stripes every 3rd and 4th column, a checkerboard)."""
    rng = np.random.default_rng(15)
    height, width = 1080, 1024  # 1,105,920 pixels
    natural = rng.lognormal(-1.7, 2.0, (height, width, 3)).astype(np.float32)
    natural[..., 1] -= 0.05  # a few negatives, as wide-gamut conversions give
    stripes = np.full((height, width, 3), 0.18, np.float32)
    stripes[:, ::3] = 40.0
    stripes[:, 1::4] = 1e4
    checker = np.where((np.indices((height, width)).sum(0) % 2)[..., None] == 0,
                       np.float32(0.05), np.float32(3.0)) * np.ones(3, np.float32)
    return {"natural": natural, "stripes": stripes, "checker": checker.astype(np.float32)}


@pytest.mark.parametrize("name", ["natural", "stripes", "checker"])
@pytest.mark.parametrize("gamut_name", ["rec709", "ap0"])  # AP0 has a negative weight
def test_large_image_stats_exact_where_stated_and_percentiles_within_tolerance(name,
                                                                                gamut_name):
    image = _large_images()[name]
    stats = exposure.hdr_stats(torch.from_numpy(image)[None], gamut=gamut_name)
    exact = _reference_stats(image, gamut.luminance_weights(gamut_name), 1.0)
    assert stats.percentile_samples == exposure.PERCENTILE_SAMPLES
    # Exact: the float64 peak (recomputed on every candidate pixel), channel extremes,
    # shares and counts.
    for key in ("peak_luminance", "peak_channel", "min_channel", "peak_stops",
                "share_above_diffuse_white", "share_negative", "nan_pixels", "inf_pixels"):
        assert stats.as_dict()[key] == exact[key], key
    # Mean and minimum from float32 luminances: within 2**-21 of the largest |w . c| term.
    scale = np.abs(image.reshape(-1, 3)).max() * np.abs(gamut.luminance_weights(gamut_name)).sum()
    assert abs(stats.mean_luminance - exact["mean_luminance"]) <= 2**-21 * scale
    assert abs(stats.min_luminance - exact["min_luminance"]) <= 2**-21 * scale
    # Percentiles: between numpy's exact percentiles at p -/+ the stated rank tolerance.
    lum = image.reshape(-1, 3).astype(np.float64) @ gamut.luminance_weights(gamut_name)
    for percentile, ours in zip([1, 50, 99, 99.9], [stats.luminance_p1, stats.luminance_p50,
                                                     stats.luminance_p99,
                                                     stats.luminance_p99_9], strict=True):
        tolerance = exposure.percentile_rank_tolerance(percentile)
        low, high = np.percentile(lum, [percentile - tolerance, percentile + tolerance])
        # (the sampled luminances are float32: 2**-22 relative slack)
        assert low - 2**-22 * abs(low) <= ours <= high + 2**-22 * abs(high), percentile
    assert "sampled pixels, rank within 0.49 pt" in stats.as_text().splitlines()[1]


def test_large_image_with_nan_falls_back_to_exact_counts():
    image = _large_images()["natural"]
    image[3, 4, 1], image[5, 6] = np.nan, np.inf
    stats = exposure.hdr_stats(image[None])
    assert (stats.nan_pixels, stats.inf_pixels, stats.percentile_samples) == (1, 1, None)
