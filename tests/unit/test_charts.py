"""hdr.charts: ColorChecker values against colour-science, exact stops, determinism."""

from __future__ import annotations

import colour
import numpy as np
import pytest
import torch

from comfyui_hdr.hdr import charts, gamut

CHECKER = colour.CCS_COLOURCHECKERS["ColorChecker24 - After November 2014"]
COLOUR_NAMES = {
    "rec709": "ITU-R BT.709", "p3d65": "Display P3", "rec2020": "ITU-R BT.2020",
    "ap0": "ACES2065-1", "ap1": "ACEScg", "awg3": "ARRI Wide Gamut 3",
    "awg4": "ARRI Wide Gamut 4",
}
STEPS = np.arange(-10, 11)
STEP_VALUES = np.float32(0.18) * np.array([2.0**s for s in STEPS], np.float32)
"""float32(0.18) * 2**s: exact in float32, so equal to float32(0.18 * 2**s)."""


def colour_checker_rgb(name: str) -> np.ndarray:
    """colour-science: checker xyY (D50) -> XYZ -> RGB with Bradford to the gamut's white."""
    space = colour.RGB_COLOURSPACES[COLOUR_NAMES[name]].copy()
    space.use_derived_transformation_matrices(True)
    xyz = colour.xyY_to_XYZ(np.array(list(CHECKER.data.values())))
    rgb = colour.XYZ_to_RGB(xyz, space, CHECKER.illuminant,
                            chromatic_adaptation_transform="Bradford")
    return rgb.reshape(4, 6, 3)


def test_patch_names_follow_colour_science_order():
    assert charts.COLORCHECKER_24.names == tuple(CHECKER.data)


@pytest.mark.parametrize("name", list(gamut.GAMUTS))
def test_colorchecker_matches_colour_science_to_1e_6(name):
    expected = colour_checker_rgb(name)
    # Same float64 maths (colour derives its xyY from the same L*a*b*): measured ~1e-15.
    np.testing.assert_allclose(charts.colorchecker_24(name, torch.float64).numpy(), expected,
                               rtol=0, atol=1e-12)
    # The default float32 rounds values <= 1 to 6e-8.
    ours = charts.colorchecker_24(name)
    assert ours.dtype == torch.float32 and ours.shape == (4, 6, 3)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)


def test_white_and_neutral_5_have_their_published_luminance():
    y = gamut.luminance(charts.colorchecker_24("rec709", torch.float64))
    # L* 95.19 -> Y 0.8807 and L* 50.76 -> Y 0.1905 (CIE 15:2004 L* -> Y, D50). Bradford
    # to D65 keeps Y only for the exact white; these near-neutrals move by < 0.1%.
    assert float(y[3, 0]) == pytest.approx(((95.19 + 16) / 116) ** 3, rel=1e-3)
    assert float(y[3, 3]) == pytest.approx(((50.76 + 16) / 116) ** 3, rel=1e-3)
    assert 0.85 < float(y[3, 0]) < 0.95 and 0.18 < float(y[3, 3]) < 0.2


def test_stepped_ramp_is_exact_powers_of_two_of_mid_grey():
    ramp = charts.stop_ramp(210, 4)
    assert ramp.shape == (4, 210, 3) and ramp.dtype == torch.float32
    row = ramp[0, :, 0].numpy()
    np.testing.assert_array_equal(row.reshape(21, 10), np.repeat(STEP_VALUES[:, None], 10, 1))
    assert (ramp == ramp[:1, :, :1]).all()  # neutral and the same in every row


def test_stepped_ramp_with_uneven_width_keeps_every_step():
    row = charts.stop_ramp(100, 1)[0, :, 0].numpy()
    values, counts = np.unique(row, return_counts=True)
    np.testing.assert_array_equal(values, STEP_VALUES)
    assert counts.min() >= 100 // 21 and np.all(np.diff(row) >= 0)


def test_smooth_ramp_spans_low_to_high_in_stops():
    row = charts.stop_ramp(101, 1, low=-4, high=6, stepped=False, dtype=torch.float64)[0, :, 0]
    np.testing.assert_allclose(np.log2(row.numpy() / 0.18), np.linspace(-4, 6, 101),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("stops", [10.0, 6.5, 14.0])
def test_sun_peak_is_mid_grey_pushed_by_its_stops(stops):
    sun = charts.sun_disk(128, 96, stops=stops, softness=0.5)
    assert sun.max().item() == np.float32(0.18 * 2.0**stops)
    # Centre pixel (0.85 * 128, 0.2 * 96) is inside the core.
    assert sun[19, 108, 1].item() == np.float32(0.18 * 2.0**stops)


def test_sun_soft_edge_blends_between_sky_and_sun():
    hard = charts.sun_disk(128, 128, softness=0.0)
    soft = charts.sun_disk(128, 128, softness=0.8)
    sun = np.float32(0.18 * 2**10)
    hard_sun, soft_sun = (hard[..., 0] == sun).sum(), (soft[..., 0] == sun).sum()
    between = ((soft[..., 0] > 1.0) & (soft[..., 0] < sun)).sum()
    assert soft_sun < hard_sun and between > 0


def test_sun_sky_is_converted_into_the_gamut():
    rec709 = charts.sun_disk(64, 64, gamut="rec709", dtype=torch.float64)
    ap1 = charts.sun_disk(64, 64, gamut="ap1", dtype=torch.float64)
    np.testing.assert_allclose(ap1[0, 0].numpy(),
                               gamut.convert_gamut(rec709[0, 0].numpy(), "rec709", "ap1"),
                               rtol=1e-12)


@pytest.mark.parametrize("size", [(512, 288), (64, 64), (333, 97), (1920, 1080)])
def test_chart_patch_centres_equal_the_patch_values(size):
    chart = charts.test_chart(*size, gamut="rec2020")
    assert chart.shape == (size[1], size[0], 3) and chart.dtype == torch.float32
    layout = charts.chart_layout(*size)
    patches = charts.colorchecker_24("rec2020").reshape(24, 3)
    for (x0, y0, x1, y1), value in zip(layout.patches, patches, strict=True):
        assert x1 - x0 >= 4 and y1 - y0 >= 4
        assert torch.equal(chart[(y0 + y1) // 2, (x0 + x1) // 2], value)
        assert (chart[y0:y1, x0:x1] == value).all()


@pytest.mark.parametrize("size", [(512, 288), (64, 64), (333, 97)])
def test_chart_ramp_runs_minus_10_to_plus_10_with_zero_at_0_18(size):
    chart = charts.test_chart(*size)
    x0, y0, x1, y1 = charts.chart_layout(*size).ramp
    assert y1 == size[1] and (x0, x1) == (0, size[0])
    row = chart[(y0 + y1) // 2, :, 0].numpy()
    np.testing.assert_array_equal(np.unique(row), STEP_VALUES)
    assert row[size[0] // 2] == np.float32(0.18)  # the middle step of 21 is 0 stops
    assert (chart[y0:y1] == chart[y0:y0 + 1, :, :1]).all()


@pytest.mark.parametrize("sun_stops", [10.0, 12.5])
def test_chart_peak_is_the_sun(sun_stops):
    chart = charts.test_chart(sun_stops=sun_stops)
    assert chart.max().item() == np.float32(0.18 * 2.0**sun_stops)
    layout = charts.chart_layout()
    x, y = layout.sun_center
    assert chart[int(y * 288), int(x * 512), 0].item() == np.float32(0.18 * 2.0**sun_stops)


def test_chart_layout_keeps_parts_apart_and_inside():
    layout = charts.chart_layout(512, 288)
    bx0, by0, bx1, by1 = layout.board
    assert all(bx0 <= x0 < x1 <= bx1 and by0 <= y0 < y1 <= by1
               for x0, y0, x1, y1 in layout.patches)
    assert by1 <= layout.ramp[1] and bx1 < layout.sun_center[0] * 512 - 0.06 * 288


def test_chart_is_deterministic():
    assert torch.equal(charts.test_chart(), charts.test_chart())
    assert torch.equal(charts.test_chart(96, 80, "awg4", 7.0),
                       charts.test_chart(96, 80, "awg4", 7.0))


def test_too_small_or_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="height must be an integer >= 64 pixels, got 32"):
        charts.test_chart(512, 32)
    with pytest.raises(ValueError, match="width must be an integer"):
        charts.test_chart(512.0, 288)
    with pytest.raises(ValueError, match="gamut 'rec2021' is unknown"):
        charts.test_chart(gamut="rec2021")
    with pytest.raises(ValueError, match="whole stops"):
        charts.stop_ramp(64, 4, low=-2.5)
    with pytest.raises(ValueError, match="width must be >= 21 pixels"):
        charts.stop_ramp(20, 4)
    with pytest.raises(ValueError, match="covers no pixel centre"):
        charts.sun_disk(64, 64, radius_fraction=0.001, center=(0.5 + 0.3 / 64, 0.5))
