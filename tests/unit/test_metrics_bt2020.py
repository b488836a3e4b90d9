"""The LumaFlux poster's evaluation columns on linear BT.2020 inputs (``gamut="rec2020"``,
1.0 = 203 nits as LumaFlux's head outputs), each against an independent oracle:
colour-science (PQ, ICtCp, Delta E ITP, BT.2020 luminance) and pycvvdp (PU21, SSIM)."""

import csv
import math

import colour
import numpy as np
import pytest
import torch
from _devices import OnDevice
from pycvvdp.third_party.ssim import ssim as pycvvdp_ssim
from pycvvdp.utils import PU

import comfyui_hdr.hdr.metrics as metrics_module
from comfyui_hdr.training.evaluate import main

NITS = 203.0  # ITU-R BT.2408 reference white: LumaFlux's linear 1.0
PYCVVDP_PU = PU()
PU_PEAK = float(PYCVVDP_PU.encode(torch.tensor(100.0, dtype=torch.float64)))
BT2020 = colour.RGB_COLOURSPACES["ITU-R BT.2020"]


@pytest.fixture(name="metrics")
def _metrics_on_device(device):
    return OnDevice(metrics_module, device)


def bt2020_pair(shape=(24, 20, 3), seed=0):
    """Linear BT.2020, each channel log-uniform over 1e-4..40 (0.02..8120 nits): most
    pixels are saturated colours outside Rec.709, where the gamut matters."""
    rng = np.random.default_rng(seed)
    reference = np.exp(rng.uniform(np.log(1e-4), np.log(40), shape))
    return reference * np.exp(rng.normal(0, 0.1, shape)), reference


def luminance_2020(rgb):
    return colour.RGB_luminance(rgb, BT2020.primaries, BT2020.whitepoint)


def test_fixture_is_mostly_outside_rec709():
    _, reference = bt2020_pair()
    rec709 = colour.RGB_to_RGB(reference, "ITU-R BT.2020", "ITU-R BT.709")
    assert (rec709.min(axis=-1) < 0).mean() > 0.3


def test_pq_psnr_of_bt2020_equals_colour_science_st2084_codes(metrics):
    test, reference = bt2020_pair(seed=1)

    def codes(rgb):
        return colour.models.eotf_inverse_ST2084(np.clip(rgb * NITS, 0, 10000))

    expected = -10 * math.log10(np.mean((codes(test) - codes(reference)) ** 2))
    got = metrics.pq_psnr(test, reference, nits_at_1=NITS, gamut="rec2020")
    assert got == pytest.approx(expected, abs=1e-9)  # same float64 maths
    # read as Rec.709 the same numbers are other colours: a different PSNR
    assert metrics.pq_psnr(test, reference, nits_at_1=NITS) != pytest.approx(expected,
                                                                            abs=1e-3)


def test_delta_e_itp_of_bt2020_equals_colour_science_delta_e_itp(metrics):
    test, reference = bt2020_pair(seed=2)

    def ictcp(rgb):
        return colour.RGB_to_ICtCp(rgb * NITS, method="ITU-R BT.2100-2 PQ")

    expected = colour.difference.delta_E_ITP(ictcp(test), ictcp(reference)).mean()
    got = metrics.delta_e_itp_mean(test, reference, nits_at_1=NITS, gamut="rec2020")
    assert got == pytest.approx(expected, rel=1e-9)  # float64 both; matrices agree ~1e-12
    assert metrics.delta_e_itp_mean(test, reference, nits_at_1=NITS) != pytest.approx(
        expected, rel=1e-3)


def pu21_luminance(rgb):
    """pycvvdp's PU21 of the BT.2020 luminance of the light a display can emit."""
    return PYCVVDP_PU.encode(torch.tensor(luminance_2020(np.clip(rgb * NITS, 0.005, 1e4))))


@pytest.mark.parametrize("colour_name", ["luminance", "rgb2020"])
def test_pu21_psnr_of_bt2020_equals_pycvvdp_pu21(metrics, colour_name):
    test, reference = bt2020_pair(seed=3)
    if colour_name == "luminance":
        encoded = [pu21_luminance(x) for x in (test, reference)]
    else:
        encoded = [PYCVVDP_PU.encode(torch.tensor(np.clip(x * NITS, 0.005, 1e4)))
                   for x in (test, reference)]
    mse = float((encoded[0] - encoded[1]).square().mean())
    expected = 20 * math.log10(PU_PEAK / math.sqrt(mse))
    got = metrics.pu21_psnr(test, reference, nits_at_1=NITS, colour=colour_name,
                            gamut="rec2020")
    # pycvvdp's PU21 matches ours to 1e-4 in value (test_metrics.py): 1e-6 dB here
    assert got == pytest.approx(expected, abs=1e-6)


def test_pu21_ssim_of_bt2020_equals_pycvvdp_ssim(metrics):
    test, reference = bt2020_pair(seed=4)
    planes = [pu21_luminance(x)[None, None] for x in (test, reference)]
    expected = float(pycvvdp_ssim(*planes, data_range=PU_PEAK, win_size=11, win_sigma=1.5))
    got = metrics.pu21_ssim(test, reference, nits_at_1=NITS, gamut="rec2020")
    assert got == pytest.approx(expected, abs=1e-7)  # pycvvdp's float32 window: 1e-9


def test_hdr_peak_of_bt2020_is_colour_science_luminance_max(metrics):
    _, reference = bt2020_pair(seed=5)
    expected = float(luminance_2020(reference).max()) * NITS
    got = metrics.peak_luminance(reference, nits_at_1=NITS, gamut="rec2020")
    assert got == pytest.approx(expected, rel=1e-12)


def test_in_gamut_colours_measure_the_same_in_either_gamut(metrics):
    rng = np.random.default_rng(6)
    test, reference = (np.exp(rng.uniform(np.log(1e-3), np.log(20), (16, 16, 3)))
                       for _ in range(2))
    as_2020 = [colour.RGB_to_RGB(x, "ITU-R BT.709", "ITU-R BT.2020") for x in (test,
                                                                               reference)]
    for name in ("pq_psnr", "delta_e_itp", "pu21_psnr", "pu21_ssim", "peak_nits_test"):
        rec709 = metrics.hdr_metrics(test, reference, NITS)[name]
        rec2020 = metrics.hdr_metrics(*as_2020, NITS, gamut="rec2020")[name]
        assert rec2020 == pytest.approx(rec709, rel=1e-9), name


def test_unknown_gamut_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="gamut is 'p3'; pass 'rec709'"):
        metrics_module.pq_psnr(np.ones((2, 2, 3)), np.ones((2, 2, 3)), gamut="p3")


def test_evaluate_reads_bt2020_pq_predictions_and_reports_the_posters_columns(tmp_path,
                                                                             capsys):
    test, reference = bt2020_pair((16, 16, 3), seed=7)
    codes = [colour.models.eotf_inverse_ST2084(x * NITS) for x in (test, reference)]
    for folder, code in (("pred", codes[0]), ("gt", codes[1])):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "frame.npy", code)
    assert main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--out", str(tmp_path / "out"), "--gamut", "rec2020", "--encoding", "pq",
                 "--nits-at-1", "203"]) == 0
    with open(tmp_path / "out" / "metrics.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    # PSNR of the PQ code values themselves (all under 10,000 nits): decode + re-encode
    # in float64 loses < 1e-12 per code value
    expected = -10 * math.log10(np.mean((codes[0] - codes[1]) ** 2))
    assert float(row["pq_psnr"]) == pytest.approx(expected, abs=1e-6)
    ictcp = [colour.RGB_to_ICtCp(x * NITS, method="ITU-R BT.2100-2 PQ")
             for x in (test, reference)]
    assert float(row["delta_e_itp"]) == pytest.approx(
        colour.difference.delta_E_ITP(*ictcp).mean(), rel=1e-6)
    assert float(row["peak_nits_test"]) == pytest.approx(
        float(luminance_2020(test).max()) * NITS, rel=1e-9)
    printed = capsys.readouterr().out
    assert "rec2020 pq with 1.0 = 203 nits" in printed
    assert printed.index("pq_psnr") < printed.index("delta_e_itp") < printed.index(
        "pu21_psnr")


def test_evaluate_refuses_pq_encoding_of_linear_files(tmp_path, capsys):
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "frame.npy", np.full((4, 4, 3), 2.0))
    assert main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--out", str(tmp_path / "out"), "--encoding", "pq"]) == 2
    assert "not PQ code values; drop --encoding pq" in capsys.readouterr().err
