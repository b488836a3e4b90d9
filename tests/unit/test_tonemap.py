"""Tone mapping: Reinhard's closed form, the ITU-R reports' equations evaluated
independently here (with colour-science for PQ and colorimetry), and ACES 2.0 against an
OCIO processor built in the test."""

import math

import colour
import numpy as np
import PyOpenColorIO as ocio
import pytest
import torch
from _devices import OnDevice

import comfyui_hdr.hdr.tonemap as tonemap_module
from comfyui_hdr.hdr.tonemap import (
    TONE_MAPPERS,
    aces2_sdr,
    bt2390_eetf,
    bt2446a,
    bt2446c,
    get_tone_mapper,
    reinhard,
)

SCENE = np.geomspace(1e-4, 1e4, 41)


@pytest.fixture(name="tm")
def _tm_on_device(device):
    """``tm`` with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(tonemap_module, device)


def test_reinhard_equals_its_closed_form(tm):
    np.testing.assert_allclose(tm.reinhard(SCENE), SCENE / (1 + SCENE), rtol=1e-15)
    white = 16.0
    np.testing.assert_allclose(tm.reinhard(SCENE, white=white),
                               SCENE * (1 + SCENE / white**2) / (1 + SCENE), rtol=1e-15)
    assert tm.reinhard(white, white=white) == 1.0
    tensor = torch.tensor(SCENE, requires_grad=True)
    tm.reinhard(tensor).sum().backward()
    np.testing.assert_allclose(tensor.grad.numpy(), 1 / (1 + SCENE) ** 2, rtol=1e-12)


def test_max_rgb_tone_maps_the_peak_and_keeps_channel_ratios(tm):
    rgb = np.array([[8.0, 2.0, 0.5], [0.1, 0.3, 0.2], [0.0, 0.0, 0.0]])
    result = tm.max_rgb(rgb, reinhard)
    np.testing.assert_allclose(result.max(-1)[:2], tm.reinhard(rgb.max(-1)[:2]), rtol=1e-15)
    np.testing.assert_allclose(result[:2] / result[:2].max(-1, keepdims=True),
                               rgb[:2] / rgb[:2].max(-1, keepdims=True), rtol=1e-15)
    assert np.all(result[2] == 0)


# --- BT.2446 Method A, written out from Report ITU-R BT.2446-1 section 4.1 ---------------

def bt2446a_reference(rgb, l_hdr=1000.0, l_sdr=100.0):
    r, g, b = (max(value, 0.0) ** (1 / 2.4) for value in rgb)
    y = 0.2627 * r + 0.6780 * g + 0.0593 * b
    rho_hdr = 1 + 32 * (l_hdr / 10000) ** (1 / 2.4)
    y_p = math.log(1 + (rho_hdr - 1) * y) / math.log(rho_hdr)
    if y_p <= 0.7399:
        y_c = 1.0770 * y_p
    elif y_p < 0.9909:
        y_c = -1.1510 * y_p**2 + 2.7811 * y_p - 0.6302
    else:
        y_c = 0.5 * y_p + 0.5
    rho_sdr = 1 + 32 * (l_sdr / 10000) ** (1 / 2.4)
    y_sdr = (rho_sdr**y_c - 1) / (rho_sdr - 1)
    f = y_sdr / (1.1 * y) if y > 0 else 0.0
    cb, cr = f * (b - y) / 1.8814, f * (r - y) / 1.4746
    y_tmo = y_sdr - max(0.1 * cr, 0.0)
    red, blue = y_tmo + 1.4746 * cr, y_tmo + 1.8814 * cb
    return [red, (y_tmo - 0.2627 * red - 0.0593 * blue) / 0.6780, blue]


def pq_to_display(codes, peak=1000.0):
    """PQ code values to linear display light normalised to ``peak`` (colour-science)."""
    return colour.models.eotf_ST2084(np.asarray(codes, dtype=np.float64)) / peak


BT2446_SAMPLES = pq_to_display([
    [0.0, 0.0, 0.0], [0.58, 0.58, 0.58], [0.7518, 0.7518, 0.7518],  # grey, 1000 cd/m^2 peak
    [0.75, 0.40, 0.30], [0.30, 0.60, 0.20], [0.20, 0.35, 0.70], [0.65, 0.65, 0.05],
    [0.10, 0.05, 0.02], [0.70, 0.71, 0.72]])


def test_bt2446a_matches_the_report_equations(tm):
    expected = np.array([bt2446a_reference(pixel) for pixel in BT2446_SAMPLES])
    # Same equations in float64: only rounding separates them.
    np.testing.assert_allclose(tm.bt2446a(BT2446_SAMPLES), expected, atol=1e-12)
    # The report's anchor: HDR peak white lands on SDR peak white.
    np.testing.assert_allclose(tm.bt2446a(np.ones(3)), np.ones(3), atol=1e-12)


# --- BT.2446 Method C, section 6.1, with colour-science for RGB <-> XYZ <-> xyY -------------

def test_bt2446c_curve_matches_the_report_constants(tm):
    k1, k2, k3, k4 = 0.83802, 15.09968, 0.74204, 78.99439
    knee = 58.5 / k1
    nits = np.array([0.0, 1.0, 30.0, 69.0, 70.0, 203.0, 1000.0, 4000.0])
    expected = np.where(nits < knee, k1 * nits,
                        k2 * np.log(np.maximum(nits / knee - k3, 1e-300)) + k4)
    np.testing.assert_allclose(tm.bt2446c_curve(nits), expected, rtol=1e-12)
    # The tabulated k2 and k4 are the report's continuity formulas at Y_SDR,ip = 58.535.
    knee_535 = 58.535 / k1
    assert k1 * (1 - k3) * knee_535 == pytest.approx(k2, rel=1e-6)
    assert k1 * knee_535 - k2 * math.log(1 - k3) == pytest.approx(k4, rel=1e-6)


def bt2446c_reference(rgb_nits, alpha):
    bt2020 = colour.RGB_COLOURSPACES["ITU-R BT.2020"]
    crosstalk = np.full((3, 3), alpha) + (1 - 3 * alpha) * np.eye(3)
    mixed = rgb_nits @ crosstalk.T
    xyz = colour.RGB_to_XYZ(mixed, bt2020, apply_cctf_decoding=False)
    x, y, luminance = np.moveaxis(colour.XYZ_to_xyY(xyz), -1, 0)
    k1, k2, k3, k4, knee = 0.83802, 15.09968, 0.74204, 78.99439, 58.5 / 0.83802
    mapped = np.where(luminance < knee, k1 * luminance,
                      k2 * np.log(np.maximum(luminance / knee - k3, 1e-300)) + k4)
    xyz_sdr = colour.xyY_to_XYZ(np.stack([x, y, mapped], -1))
    sdr = colour.XYZ_to_RGB(xyz_sdr, bt2020, apply_cctf_encoding=False) / 100
    return sdr @ np.linalg.inv(crosstalk).T


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.2])
def test_bt2446c_matches_the_report_steps_through_colour_science(tm, alpha):
    rgb_nits = BT2446_SAMPLES[1:] * 1000  # colour's xyY is undefined at black
    # Both BT.2020 matrices derive from the primaries; measured agreement is 3e-15
    # absolute, so 1e-10 leaves room only for float64 rounding.
    np.testing.assert_allclose(tm.bt2446c(rgb_nits, crosstalk=alpha),
                               bt2446c_reference(rgb_nits, alpha), atol=1e-10)


# --- BT.2390 EETF, section 5.4.1, with colour-science's PQ ----------------------------------

def bt2390_reference(code, source_peak, source_black, target_peak, target_black):
    pq = colour.models.eotf_inverse_ST2084
    l_w, l_b = float(pq(source_peak)), float(pq(source_black))
    max_lum = (float(pq(target_peak)) - l_b) / (l_w - l_b)
    min_lum = (float(pq(target_black)) - l_b) / (l_w - l_b)
    ks = 1.5 * max_lum - 0.5
    e1 = min(max((code - l_b) / (l_w - l_b), 0.0), 1.0)
    if e1 < ks:
        e2 = e1
    else:
        t = (e1 - ks) / (1 - ks)
        e2 = ((2 * t**3 - 3 * t**2 + 1) * ks + (t**3 - 2 * t**2 + t) * (1 - ks)
              + (-2 * t**3 + 3 * t**2) * max_lum)
    e3 = e2 + min_lum * (1 - e2) ** 4
    return e3 * (l_w - l_b) + l_b


@pytest.mark.parametrize("displays", [(1000.0, 0.0, 100.0, 0.0), (4000.0, 0.005, 600.0, 0.1),
                                      (1000.0, 0.0, 300.0, 0.05)])
def test_bt2390_eetf_matches_the_report_closed_form(tm, displays):
    source_peak, source_black, target_peak, target_black = displays
    codes = np.linspace(0.0, 1.0, 101)
    expected = [bt2390_reference(code, *displays) for code in codes]
    result = tm.bt2390_eetf(codes, source_peak_nits=source_peak, source_black_nits=source_black,
                         target_peak_nits=target_peak, target_black_nits=target_black)
    # Same closed form, same ST 2084 constants: agreement to float64 rounding, far inside
    # the 1e-4 a 12-bit PQ code step (2.4e-4) would tolerate.
    np.testing.assert_allclose(result, expected, atol=1e-12)
    peak = float(colour.models.eotf_ST2084(tm.bt2390_eetf(
        colour.models.eotf_inverse_ST2084(1000.0), target_peak_nits=100.0)))
    assert peak == pytest.approx(100.0, rel=1e-9)


# --- ACES 2.0 through OCIO ------------------------------------------------------------------

def test_aces2_sdr_equals_an_ocio_processor_built_here(tm):
    rng = np.random.default_rng(2)
    scene = np.exp2(rng.uniform(-8, 6, (4, 5, 3))).astype(np.float32)
    config = ocio.Config.CreateFromFile("ocio://studio-config-latest")
    transform = ocio.DisplayViewTransform(src="Linear Rec.709 (sRGB)", display="sRGB - Display",
                                          view="ACES 2.0 - SDR 100 nits (Rec.709)")
    processor = config.getProcessor(transform).getDefaultCPUProcessor()
    expected = scene.reshape(-1, 3).copy()
    processor.applyRGB(expected)
    np.testing.assert_array_equal(tm.aces2_sdr(scene), expected.reshape(scene.shape))


def test_registry_maps_an_image_batch_and_names_every_mapper_when_unknown():
    batch = torch.exp2(torch.linspace(-8, 6, 2 * 4 * 4 * 3)).reshape(2, 4, 4, 3)
    for name, mapper in TONE_MAPPERS.items():
        result = mapper(batch)
        assert result.shape == batch.shape and torch.isfinite(result).all(), name
        assert get_tone_mapper(name) is mapper
    with pytest.raises(ValueError, match="reinhard.*aces2_sdr"):
        get_tone_mapper("filmic")


@pytest.mark.parametrize(("call", "name"), [
    (lambda: reinhard(1.0, white=0.0), "white"),
    (lambda: bt2446a(np.ones(4)), "rgb"),
    (lambda: bt2446c(np.ones(3), crosstalk=0.4), "crosstalk"),
    (lambda: bt2390_eetf(0.5, target_peak_nits=5.0), "target_peak_nits"),
    (lambda: aces2_sdr(np.ones(3), colourspace="Not A Space"), "colourspace"),
])
def test_bad_input_raises_value_error_naming_the_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()
