"""HDR metrics against pycvvdp (PU21, PU21-PSNR, SSIM, JOD), colour-science (Delta E ITP, PQ)
and closed forms (SSIM of flat images, flicker, frame-to-frame PSNR, peak, dynamic range)."""

import math

import colour
import numpy as np
import pycvvdp
import pytest
import torch
from _devices import OnDevice
from pycvvdp.display_model import vvdp_display_photo_eotf
from pycvvdp.third_party.ssim import ssim as pycvvdp_ssim
from pycvvdp.utils import PU
from pycvvdp.video_source import video_source_array

import comfyui_hdr.hdr.metrics as metrics_module
from comfyui_hdr.hdr import metrics
from comfyui_hdr.hdr.gamut import luminance_weights
from comfyui_hdr.hdr.transfer import pu21_encode

PYCVVDP_PU = PU()
PU_PEAK = float(PYCVVDP_PU.encode(torch.tensor(100.0, dtype=torch.float64)))
# Rec.709 luminance weights from the primaries (pycvvdp's table rounds them to 7 digits,
# 3e-4 relative off, which is why its PU21-PSNR-Y differs from ours by 2e-6 dB).
Y_WEIGHTS = luminance_weights("rec709")


@pytest.fixture(name="metrics")
def _metrics_on_device(device):
    """``metrics`` with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(metrics_module, device)


def pair(shape=(2, 24, 20, 3), seed=0):
    """A reference spanning 1e-4..50 scene-linear (0.01..5000 nits) and a noisy test."""
    rng = np.random.default_rng(seed)
    reference = np.exp(rng.uniform(np.log(1e-4), np.log(50), shape))
    return reference * np.exp(rng.normal(0, 0.1, shape)), reference


def grey_clip(levels, size=12):
    return np.ones((len(levels), size, size, 3)) * np.asarray(levels)[:, None, None, None]


def test_pu21_encoding_equals_pycvvdp_from_a_thousandth_to_20000_nits():
    nits = np.geomspace(1e-3, 2e4, 500)  # beyond both ends of PU21's 0.005..10000 clamp
    expected = PYCVVDP_PU.encode(torch.tensor(nits)).numpy()
    np.testing.assert_allclose(pu21_encode(nits), expected, rtol=0, atol=1e-4)  # measured 0


@pytest.mark.parametrize("colour_name, metric", [
    ("luminance", pycvvdp.pu_psnr_y), ("rgb2020", pycvvdp.pu_psnr_rgb2020)])
def test_pu21_psnr_equals_pycvvdp_on_a_clip(metrics, colour_name, metric):
    test, reference = pair()
    # pycvvdp's linear display model, made transparent: 10000-nit peak, black below
    # PU21's 0.005 nits, no ambient reflection; it takes absolute nits (1.0 -> 100 nits).
    display = vvdp_display_photo_eotf(Y_peak=10000, contrast=1e7, E_ambient=0,
                                      source_colorspace="BT.709-linear", EOTF="linear")
    # pycvvdp's metrics take float32 only; its predict() has a missing import in 0.5, so
    # the video source is built the way predict() builds it.
    source = video_source_array(torch.tensor(test * 100, dtype=torch.float32),
                                torch.tensor(reference * 100, dtype=torch.float32), 24,
                                dim_order="FHWC", display_photometry=display)
    expected = float(metric(display_photometry=display, device=torch.device("cpu"))
                     .predict_video_source(source)[0])
    # float32 in pycvvdp and its rounded XYZ->Rec.2020 matrix: measured 2e-6 dB (Y) and
    # 2.9e-5 dB (RGB2020).
    assert metrics.pu21_psnr(test, reference, colour=colour_name) == pytest.approx(expected,
                                                                                  abs=1e-4)


def test_pu21_psnr_peak_is_pu21_of_100_nits(metrics):
    test, reference = pair((1, 8, 8, 3))
    y = [np.clip(x * 100, 0.005, 1e4) @ Y_WEIGHTS for x in (test, reference)]
    error = PYCVVDP_PU.encode(torch.tensor(y[0])) - PYCVVDP_PU.encode(torch.tensor(y[1]))
    expected = 20 * math.log10(PU_PEAK / math.sqrt(float(error.square().mean())))
    assert metrics.pu21_psnr(test[0], reference[0]) == pytest.approx(expected, abs=1e-9)
    assert PU_PEAK == pytest.approx(256.3839, abs=1e-4)
    assert metrics.pu21_psnr(reference, reference) == math.inf


def pu21_luminance(rgb):
    nits = torch.tensor(np.clip(rgb * 100, 0.005, 1e4) @ Y_WEIGHTS)
    return PYCVVDP_PU.encode(nits)[:, None]


def test_pu21_ssim_equals_pycvvdp_ssim_on_pu21_luminance(metrics):
    test, reference = pair()
    expected = float(pycvvdp_ssim(pu21_luminance(test), pu21_luminance(reference),
                                  data_range=PU_PEAK, win_size=11, win_sigma=1.5))
    # pycvvdp builds its Gaussian window in float32: measured 2.6e-9.
    assert metrics.pu21_ssim(test, reference) == pytest.approx(expected, abs=1e-7)


def test_pu21_ssim_of_flat_images_is_the_luminance_term(metrics):
    # Flat images have no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01 L)^2.
    a = float(PYCVVDP_PU.encode(torch.tensor(18.0, dtype=torch.float64)))
    b = float(PYCVVDP_PU.encode(torch.tensor(36.0, dtype=torch.float64)))
    c1 = (0.01 * PU_PEAK) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    flat = np.full((12, 14, 3), 0.18)
    assert metrics.pu21_ssim(flat * 2, flat) == pytest.approx(expected, abs=1e-12)
    assert metrics.pu21_ssim(flat, flat) == 1.0


def test_delta_e_itp_mean_equals_colour_science(metrics):
    test, reference = pair((16, 16, 3), seed=2)

    def ictcp(rgb):
        rec2020 = colour.RGB_to_RGB(rgb, "ITU-R BT.709", "ITU-R BT.2020")
        return colour.RGB_to_ICtCp(rec2020 * 100, method="ITU-R BT.2100-2 PQ")

    expected = colour.delta_E(ictcp(test), ictcp(reference), method="ITP").mean()
    # Same maths in float64; the Rec.709->Rec.2020 matrices agree to ~1e-12.
    assert metrics.delta_e_itp_mean(test, reference) == pytest.approx(expected, rel=1e-9)
    assert metrics.delta_e_itp_mean(test, reference, nits_at_1=203) != pytest.approx(
        expected, rel=1e-3)


def test_pq_psnr_equals_colour_science_pq_codes(metrics):
    test, reference = pair((16, 16, 3), seed=3)

    def codes(rgb):
        nits = colour.RGB_to_RGB(rgb, "ITU-R BT.709", "ITU-R BT.2020") * 100
        return colour.models.eotf_inverse_ST2084(np.clip(nits, 0, 10000))

    expected = -10 * math.log10(np.mean((codes(test) - codes(reference)) ** 2))
    assert metrics.pq_psnr(test, reference) == pytest.approx(expected, abs=1e-9)


def test_cvvdp_jod_equals_pycvvdp_and_is_10_for_identical_images():
    test, reference = pair((64, 64, 3), seed=4)
    metric = pycvvdp.cvvdp(display_name="standard_hdr_linear", device=torch.device("cpu"))
    expected, _ = metric.predict(torch.tensor(test * 100, dtype=torch.float32),
                                 torch.tensor(reference * 100, dtype=torch.float32),
                                 dim_order="HWC")
    jod = metrics.cvvdp_jod(test, reference)
    assert jod == pytest.approx(float(expected), abs=1e-6) and jod < 9.99
    assert metrics.cvvdp_jod(reference, reference) == pytest.approx(10.0, abs=1e-6)


def test_flicker_equals_std_over_mean_of_frame_luminance(metrics):
    levels = [0.2, 0.25, 0.18, 0.3]
    assert metrics.flicker(grey_clip(levels)) == pytest.approx(
        np.std(levels) / np.mean(levels), rel=1e-12)
    coloured = grey_clip(levels) * np.array([1.5, 0.8, 0.3])
    means = colour.RGB_luminance(coloured, colour.RGB_COLOURSPACES["ITU-R BT.709"].primaries,
                                 colour.RGB_COLOURSPACES["ITU-R BT.709"].whitepoint)
    means = means.mean(axis=(1, 2))
    assert metrics.flicker(coloured) == pytest.approx(np.std(means) / np.mean(means),
                                                      rel=1e-9)
    assert metrics.flicker(grey_clip([0.5, 0.5, 0.5])) == pytest.approx(0.0, abs=1e-15)


def test_frame_to_frame_psnr_equals_its_closed_form_on_grey_frames(metrics):
    levels = np.array([0.18, 0.2, 0.18, 0.5])
    encoded = PYCVVDP_PU.encode(torch.tensor(levels * 100)).numpy()
    expected = 20 * math.log10(PU_PEAK / math.sqrt(np.mean(np.diff(encoded) ** 2)))
    assert metrics.frame_to_frame_psnr(grey_clip(levels)) == pytest.approx(expected, abs=1e-9)
    assert metrics.frame_to_frame_psnr(grey_clip([0.3, 0.3])) == math.inf


def test_peak_luminance_and_dynamic_range_in_stops(metrics):
    image = np.array([[[0.0] * 3, [0.02] * 3, [0.18] * 3, [81.92] * 3]])
    assert metrics.peak_luminance(image) == pytest.approx(8192.0, rel=1e-12)
    assert metrics.peak_luminance(image, nits_at_1=203) == pytest.approx(81.92 * 203,
                                                                         rel=1e-12)
    # Black is floored at 0.005 nits: log2(8192 / 0.005).
    assert metrics.dynamic_range_stops(image) == pytest.approx(math.log2(8192 / 0.005))
    assert metrics.dynamic_range_stops(image[:, 1:]) == pytest.approx(12.0, abs=1e-12)


def test_hdr_metrics_reports_every_metric_and_nan_where_undefined(metrics):
    test, reference = pair((12, 12, 3), seed=5)
    image = metrics.hdr_metrics(test, reference)
    assert image["pu21_psnr"] == metrics.pu21_psnr(test, reference)
    assert math.isnan(image["flicker_test"]) and math.isnan(image["f2f_psnr_reference"])
    clip = metrics.hdr_metrics(np.stack([test, test * 1.1]), np.stack([reference] * 2))
    assert clip["f2f_psnr_reference"] == math.inf and clip["flicker_test"] > 0
    assert math.isnan(metrics.hdr_metrics(test[:8, :8], reference[:8, :8])["pu21_ssim"])


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.pu21_psnr(np.ones((4, 4, 3)), np.ones((4, 5, 3))), "same shape"),
    (lambda: metrics.pu21_psnr(np.full((4, 4, 3), np.nan), np.ones((4, 4, 3))), "NaN"),
    (lambda: metrics.pq_psnr(np.ones((4, 4, 3)), np.ones((4, 4, 3)), nits_at_1=0), "nits_at_1"),
    (lambda: metrics.pu21_ssim(np.ones((8, 8, 3)), np.ones((8, 8, 3))), "at least 11"),
    (lambda: metrics.frame_to_frame_psnr(np.ones((1, 4, 4, 3))), "2 or more frames"),
    (lambda: metrics.flicker(np.ones((4, 4, 4))), "RGB"),
    (lambda: metrics.pu21_psnr(np.ones((4, 4, 3)), np.ones((4, 4, 3)), colour="xyz"), "colour"),
])
def test_bad_input_raises_value_errors_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
