"""hdr.gamut against colour-science and OpenColorIO's studio config."""

from __future__ import annotations

import itertools

import colour
import numpy as np
import PyOpenColorIO as ocio
import pytest
import torch
from _devices import OnDevice

import comfyui_hdr.hdr.gamut as gamut_module
from comfyui_hdr.hdr import gamut

COLOUR_NAMES = {
    "rec709": "ITU-R BT.709",
    "p3d65": "Display P3",
    "rec2020": "ITU-R BT.2020",
    "ap0": "ACES2065-1",
    "ap1": "ACEScg",
    "awg3": "ARRI Wide Gamut 3",
    "awg4": "ARRI Wide Gamut 4",
}
COLOUR_CAT = {"bradford": "Bradford", "cat02": "CAT02", None: None}


@pytest.fixture(name="gamut")
def _gamut_on_device(device):
    """``gamut`` with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(gamut_module, device)


def colour_space(name: str, derived: bool = True):
    """colour-science's colourspace; ``derived`` makes it use the matrix from its primaries."""
    space = colour.RGB_COLOURSPACES[COLOUR_NAMES[name]].copy()
    space.use_derived_transformation_matrices(derived)
    return space


@pytest.fixture(scope="module")
def studio_config():
    return ocio.Config.CreateFromFile("ocio://studio-config-latest")


def ocio_apply(config, src: str, dst: str, rgb: np.ndarray) -> np.ndarray:
    processor = config.getProcessor(src, dst).getOptimizedCPUProcessor(
        ocio.OPTIMIZATION_LOSSLESS)
    out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
    processor.applyRGB(out)
    return out


@pytest.mark.parametrize("name", list(gamut.GAMUTS))
def test_primaries_and_white_equal_colour_science(name):
    space = colour_space(name)
    ours = gamut.GAMUTS[name]
    np.testing.assert_array_equal(np.array([ours.red, ours.green, ours.blue]), space.primaries)
    np.testing.assert_array_equal(np.array(ours.white), space.whitepoint)


@pytest.mark.parametrize("name", list(gamut.GAMUTS))
def test_normalised_primary_matrix_matches_colour_science_to_1e_9(name):
    # Both derive RP 177's matrix in float64 from the same primaries: only rounding differs.
    np.testing.assert_allclose(gamut.rgb_to_xyz_matrix(name),
                               colour_space(name).matrix_RGB_to_XYZ, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gamut.xyz_to_rgb_matrix(name),
                               colour_space(name).matrix_XYZ_to_RGB, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", list(gamut.GAMUTS))
def test_normalised_primary_matrix_matches_the_published_matrix(name):
    # colour-science ships the standards' printed matrices. ARRI prints AWG3's to 6
    # decimals (half an ulp: 5e-7); AP0's is printed to 10 decimals; the others are exact.
    atol = 5e-7 if name == "awg3" else 1e-9
    np.testing.assert_allclose(gamut.rgb_to_xyz_matrix(name),
                               colour_space(name, derived=False).matrix_RGB_to_XYZ,
                               rtol=0, atol=atol)


@pytest.mark.parametrize("adaptation", ["bradford", "cat02", None])
def test_every_rgb_to_rgb_matrix_matches_colour_matrix_rgb_to_rgb_to_1e_9(adaptation):
    for src, dst in itertools.product(gamut.GAMUTS, repeat=2):
        expected = colour.matrix_RGB_to_RGB(colour_space(src), colour_space(dst),
                                            chromatic_adaptation_transform=COLOUR_CAT[adaptation])
        np.testing.assert_allclose(gamut.rgb_to_rgb_matrix(src, dst, adaptation), expected,
                                   rtol=0, atol=1e-9, err_msg=f"{src} -> {dst}")


def test_chromatic_adaptation_matches_colour_von_kries():
    for name, cat in (("bradford", "Bradford"), ("cat02", "CAT02")):
        expected = colour.adaptation.matrix_chromatic_adaptation_VonKries(
            colour.xy_to_XYZ(gamut.D65), colour.xy_to_XYZ(gamut.ACES_WHITE), cat)
        np.testing.assert_allclose(
            gamut.chromatic_adaptation_matrix(gamut.D65, gamut.ACES_WHITE, name), expected,
            rtol=0, atol=1e-12)


def test_rec709_to_rec2020_matches_ocio_studio_config_to_2e_6(gamut, studio_config):
    # OCIO applies its float32 matrix to float32 pixels; so do we. Measured: 0.0.
    rgb = np.random.default_rng(0).uniform(-0.5, 2.0, (4096, 3)).astype(np.float32)
    expected = ocio_apply(studio_config, "Linear Rec.709 (sRGB)", "Linear Rec.2020", rgb)
    ours = gamut.convert_gamut(rgb, "Linear Rec.709 (sRGB)", "Linear Rec.2020")
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("alias", sorted(set(gamut.GAMUT_ALIASES) - {"srgb", "display p3"}))
def test_each_ocio_alias_names_the_gamut_the_studio_config_uses(studio_config, alias):
    # The ACES IDTs adapt with Bradford for Rec.709/P3/Rec.2020 and CAT02 for ARRI's gamuts
    # (ARRI's own matrices). Columns of float32 identity in, float32 out: tolerance 1e-6
    # (measured <= 6e-8).
    ocio_name = studio_config.getCanonicalName(alias)
    assert ocio_name, f"{alias!r} is not a colourspace of the OCIO studio config"
    adaptation = "cat02" if gamut.get_gamut(alias).name.startswith("awg") else "bradford"
    expected = ocio_apply(studio_config, ocio_name, "ACES2065-1", np.eye(3)).T
    np.testing.assert_allclose(gamut.rgb_to_rgb_matrix(alias, "ap0", adaptation), expected,
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("adaptation", ["bradford", "cat02", None])
def test_round_trips_through_every_gamut_are_exact_to_1e_12(gamut, adaptation):
    rgb = np.random.default_rng(1).uniform(-1.0, 100.0, (64, 3))
    for src, dst in itertools.product(gamut.GAMUTS, repeat=2):
        there = gamut.convert_gamut(rgb, src, dst, adaptation)
        # float64 matrices and their inverse: relative error ~1e-14 of values up to 100.
        np.testing.assert_allclose(gamut.convert_gamut(there, dst, src, adaptation), rgb,
                                   rtol=0, atol=1e-12)


def test_negatives_and_highlights_pass_through_unclamped(gamut):
    rec2020_green = np.array([0.0, 1000.0, 0.0])
    rec709 = gamut.convert_gamut(rec2020_green, "rec2020", "rec709")
    assert rec709[0] < -500 and rec709[2] < -50 and rec709[1] > 1000
    np.testing.assert_allclose(rec709, 1000 * gamut.convert_gamut(rec2020_green / 1000,
                                                                  "rec2020", "rec709"),
                               rtol=1e-15)


def test_white_stays_white_with_adaptation_and_tints_without(gamut):
    white = gamut.convert_gamut(np.ones(3), "rec709", "ap0")
    np.testing.assert_allclose(white, np.ones(3), rtol=0, atol=1e-12)
    tinted = gamut.convert_gamut(np.ones(3), "rec709", "ap0", adaptation=None)
    assert np.abs(tinted - 1).max() > 0.01


def test_convert_gamut_keeps_dtype_shape_and_gradient(gamut):
    image = torch.rand(2, 5, 7, 3, dtype=torch.float32, requires_grad=True)
    out = gamut.convert_gamut(image, "rec709", "ap1")
    assert out.shape == image.shape and out.dtype == torch.float32
    out.sum().backward()
    # d(sum)/d(input channel) is the column sum of the matrix.
    np.testing.assert_allclose(image.grad[0, 0, 0].numpy(),
                               gamut.rgb_to_rgb_matrix("rec709", "ap1").sum(0), rtol=1e-6)
    assert gamut.convert_gamut(image.detach().half(), "rec709", "ap1").dtype == torch.float16
    assert gamut.convert_gamut(np.zeros((4, 3), np.float32), "rec709", "ap1").dtype == np.float32


def test_luminance_weights_are_the_y_row_of_colour_science():
    for name in gamut.GAMUTS:
        np.testing.assert_allclose(gamut.luminance_weights(name),
                                   colour_space(name).matrix_RGB_to_XYZ[1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(gamut.luminance_weights("rec709"), [0.2126, 0.7152, 0.0722],
                               atol=5e-5)  # BT.709-6 item 3.2 prints 4 decimals


def test_luminance_of_an_image_batch_matches_colour_rgb_luminance(gamut):
    image = np.random.default_rng(2).uniform(0, 50, (2, 4, 6, 3))
    space = colour_space("rec2020")
    expected = colour.RGB_luminance(image, space.primaries, space.whitepoint)
    np.testing.assert_allclose(gamut.luminance(image, "rec2020"), expected, rtol=1e-13)
    assert gamut.luminance(torch.from_numpy(image)).shape == (2, 4, 6)


def _ictcp_samples() -> np.ndarray:
    random = np.random.default_rng(3).uniform(0.0, 100.0, (1000, 3))
    edges = [[0, 0, 0], [1e-6] * 3, [1, 1, 1], [100, 100, 100], [1, 0, 0], [0, 1, 0],
             [0, 0, 1], [1e-4, 0, 0], [0, 0, 100]]
    return np.concatenate([random, edges])


def test_ictcp_matches_colour_science_bt2100_pq_to_1e_12(gamut):
    # Scene-linear at 100 nits per 1.0 up to 10000 nits, plus black, primaries and peak.
    # Same maths in float64: measured 8e-14.
    rgb = _ictcp_samples()
    expected = colour.RGB_to_ICtCp(rgb * 100, method="ITU-R BT.2100-2 PQ")
    np.testing.assert_allclose(gamut.rgb2020_to_ictcp(rgb), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gamut.rgb2020_to_ictcp(rgb * 100, nits_at_1=1.0), expected,
                               rtol=0, atol=1e-12)


def test_ictcp_inverse_matches_colour_science_and_round_trips(gamut):
    rgb = _ictcp_samples()
    ictcp = colour.RGB_to_ICtCp(rgb * 203, method="ITU-R BT.2100-2 PQ")
    expected = colour.ICtCp_to_RGB(ictcp, method="ITU-R BT.2100-2 PQ") / 203
    # PQ's EOTF raises to 1/m1 = 6.27: relative error ~1e-12 of values up to 100; near
    # black it subtracts c1 from ~c1, leaving ~1e-15 absolute error on 1e-12 values.
    np.testing.assert_allclose(gamut.ictcp_to_rgb2020(ictcp, nits_at_1=203), expected,
                               rtol=1e-11, atol=1e-14)
    # The LMS matrices mix channels, so a round trip's error scales with the pixel's
    # brightest channel (up to 100): 1e-11 of it.
    np.testing.assert_allclose(gamut.ictcp_to_rgb2020(gamut.rgb2020_to_ictcp(rgb)), rgb,
                               rtol=0, atol=1e-9)


def test_ictcp_in_float32_is_within_1e_4_of_float64(gamut):
    # float32 PQ: 24-bit mantissa through x**0.159 and x**78.8; measured 7e-5 at worst.
    rgb = _ictcp_samples()
    ours = gamut.rgb2020_to_ictcp(torch.tensor(rgb, dtype=torch.float32))
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), gamut.rgb2020_to_ictcp(rgb), rtol=0, atol=1e-4)


def test_delta_e_itp_matches_colour_science_and_bt2124_example(gamut):
    rng = np.random.default_rng(4)
    low, high = [0.0, -0.5, -0.5], [1.0, 0.5, 0.5]
    a, b = rng.uniform(low, high, (1000, 3)), rng.uniform(low, high, (1000, 3))
    np.testing.assert_allclose(gamut.delta_e_itp(a, b), colour.delta_E(a, b, method="ITP"),
                               rtol=1e-13)
    example = ([0.4885468072, -0.04739350675, 0.07475401302],
               [0.4899203231, -0.04567508203, 0.07361341775])
    assert gamut.delta_e_itp(*example) == pytest.approx(1.42657228, abs=1e-8)
    assert float(gamut.delta_e_itp(a[0], a[0])) == 0.0
    batch = gamut.delta_e_itp(torch.tensor(a).reshape(10, 100, 3), b.reshape(10, 100, 3))
    assert isinstance(batch, torch.Tensor) and batch.shape == (10, 100)


def test_one_nit_step_at_100_nits_grey_is_a_small_delta_e_itp(gamut):
    # BT.2124: ~1 is a just-noticeable difference; 1% luminance at 100 nits is below 1.
    grey = gamut.rgb2020_to_ictcp(np.array([1.0, 1.0, 1.0]))
    brighter = gamut.rgb2020_to_ictcp(np.array([1.01, 1.01, 1.01]))
    assert 0.1 < float(gamut.delta_e_itp(grey, brighter)) < 1.0


def test_unknown_names_raise_value_error_listing_valid_ones(gamut):
    with pytest.raises(ValueError, match="'rec2021' is unknown.*rec709.*awg4"):
        gamut.get_gamut("rec2021")
    with pytest.raises(ValueError, match="gamut 'nope'"):
        gamut.convert_gamut(np.ones(3), "rec709", "nope")
    with pytest.raises(ValueError, match="adaptation 'cat16'.*'bradford', 'cat02' or None"):
        gamut.rgb_to_rgb_matrix("rec709", "ap0", "cat16")


def test_names_are_case_insensitive_and_gamuts_pass_through():
    assert gamut.get_gamut("LINEAR REC.2020") is gamut.GAMUTS["rec2020"]
    assert gamut.get_gamut(gamut.GAMUTS["ap1"]) is gamut.GAMUTS["ap1"]


def test_wrong_channel_count_and_nits_raise_value_error(gamut):
    with pytest.raises(ValueError, match=r"rgb must have 3 channels.*\(2, 4\).*\[\.\.\., :3\]"):
        gamut.convert_gamut(np.ones((2, 4)), "rec709", "rec2020")
    with pytest.raises(ValueError, match="nits_at_1 must be > 0"):
        gamut.rgb2020_to_ictcp(np.ones(3), nits_at_1=0)
