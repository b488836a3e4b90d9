"""Transfer functions against colour-science, pycvvdp, the published specs and autograd."""

from __future__ import annotations

import functools
import math

import colour.models as cm
import numpy as np
import pytest
import torch
from _devices import OnDevice
from colour.models.rgb.transfer_functions import arri as colour_arri
from pycvvdp.utils import PU

import comfyui_hdr.hdr.transfer as transfer_module
from comfyui_hdr.hdr import transfer as tf
from comfyui_hdr.hdr.transfer_blockwise import BLOCK_ELEMENTS

# colour-science evaluates both branches of its np.where, logs of negatives included.
pytestmark = pytest.mark.filterwarnings("ignore:(invalid value|divide by zero):RuntimeWarning")

SWEEP = np.geomspace(1e-4, 1e4, 2001)
SIGNED_SWEEP = np.concatenate([-SWEEP[::-1], [0.0], SWEEP])
CODES = np.linspace(-0.2, 1.3, 1501)

# colour-science oracles are float64; 1e-6 relative, or 1e-7 absolute next to zero where
# a relative error is meaningless, is far below any visible or 16-bit-code difference.
ORACLE = {"rtol": 1e-6, "atol": 1e-7}


@pytest.fixture(name="tf")
def _tf_on_device(device):
    """``tf`` with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(transfer_module, device)


def _relative_or_absolute(ours, reference):
    np.testing.assert_allclose(ours, reference, **ORACLE)


# --- colour-science, float64 -------------------------------------------------------------


@pytest.mark.parametrize("exposure_index", tf.LOGC3_EXPOSURE_INDICES)
def test_logc3_parameters_equal_arri_table_to_its_6_decimals(exposure_index):
    table = colour_arri.DATA_ALEXA_LOG_C_CURVE_CONVERSION["SUP 3.x"][
        "Linear Scene Exposure Factor"
    ][exposure_index]
    derived = tf.logc3_parameters(exposure_index)
    ours = (derived.cut, derived.a, derived.b, derived.c, derived.d, derived.e, derived.f)
    # The table rounds to 6 decimals: half a unit of the last place, plus float slack.
    np.testing.assert_allclose(ours, table[:7], rtol=0, atol=5e-7 + 1e-12)


@pytest.fixture
def colour_logc3_with_derived_parameters(monkeypatch):
    """colour-science's LogC3 formula fed ARRI's unrounded parameters instead of the table."""
    table = colour_arri.DATA_ALEXA_LOG_C_CURVE_CONVERSION["SUP 3.x"]["Linear Scene Exposure Factor"]
    for exposure_index in tf.LOGC3_EXPOSURE_INDICES:
        p = tf.logc3_parameters(exposure_index)
        row = (p.cut, p.a, p.b, p.c, p.d, p.e, p.f, p.e * p.cut + p.f)
        monkeypatch.setitem(table, exposure_index, row)


@pytest.mark.parametrize("exposure_index", tf.LOGC3_EXPOSURE_INDICES)
def test_logc3_matches_colour_science_formula_from_1e_4_to_1e4(
    tf, exposure_index, colour_logc3_with_derived_parameters
):
    reference = cm.log_encoding_ARRILogC3(SIGNED_SWEEP, EI=exposure_index)
    _relative_or_absolute(tf.logc3_encode(SIGNED_SWEEP, exposure_index), reference)
    _relative_or_absolute(
        tf.logc3_decode(CODES, exposure_index),
        cm.log_decoding_ARRILogC3(CODES, EI=exposure_index),
    )


@pytest.mark.parametrize("exposure_index", tf.LOGC3_EXPOSURE_INDICES)
def test_logc3_matches_colour_science_published_table(tf, exposure_index):
    # colour-science evaluates the table's 6-decimal parameters. Rounding d by 5e-7 moves
    # every code value by 5e-7, so codes may differ by ~1e-6 (we allow 2e-6). In decode,
    # rounding c by 5e-7 changes x by up to ln(10) (y - d) / c^2 * 5e-7 relative, 1.7e-5
    # at code 1.3 (we allow 2.5e-5), and near zero b and f move x by ~1e-7 (atol 2e-7).
    ours = tf.logc3_encode(SIGNED_SWEEP, exposure_index)
    reference = cm.log_encoding_ARRILogC3(SIGNED_SWEEP, EI=exposure_index)
    np.testing.assert_allclose(ours, reference, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(
        tf.logc3_decode(CODES, exposure_index),
        cm.log_decoding_ARRILogC3(CODES, EI=exposure_index),
        rtol=2.5e-5,
        atol=2e-7,
    )


def test_logc4_matches_colour_science_from_1e_4_to_1e4(tf):
    reference = cm.log_encoding_ARRILogC4(SIGNED_SWEEP)
    _relative_or_absolute(tf.logc4_encode(SIGNED_SWEEP), reference)
    _relative_or_absolute(tf.logc4_decode(CODES), cm.log_decoding_ARRILogC4(CODES))


def test_acescct_matches_colour_science_from_1e_4_to_1e4(tf):
    reference = cm.log_encoding_ACEScct(SIGNED_SWEEP)
    _relative_or_absolute(tf.acescct_encode(SIGNED_SWEEP), reference)
    _relative_or_absolute(tf.acescct_decode(CODES), cm.log_decoding_ACEScct(CODES))


def test_pq_matches_colour_science_from_1e_4_to_1e4_nits(tf):
    # colour-science defines PQ for non-negative input only (it clamps or returns
    # garbage below 0); our negatives mirror and are tested separately.
    codes = np.linspace(0, 1, 1001)
    _relative_or_absolute(tf.pq_inverse_eotf(SWEEP), cm.eotf_inverse_ST2084(SWEEP))
    _relative_or_absolute(tf.pq_eotf(codes), cm.eotf_ST2084(codes))
    _relative_or_absolute(tf.pq_encode(SWEEP / 203), cm.eotf_inverse_ST2084(SWEEP))
    _relative_or_absolute(tf.pq_decode(codes, nits_at_1=100), cm.eotf_ST2084(codes) / 100)


def test_hlg_oetf_matches_colour_science_down_to_minus_1_12(tf):
    # colour-science mirrors the square-root segment and keeps it for all negatives; we
    # mirror the whole curve, so the two agree from -1/12 (signal -0.5) upwards.
    scene = SIGNED_SWEEP[SIGNED_SWEEP >= -1e4 / 12] / 1e4
    signals = np.linspace(-0.5, 1.2, 1701)
    reference = cm.oetf_BT2100_HLG(scene)
    _relative_or_absolute(tf.hlg_oetf(scene), reference)
    _relative_or_absolute(tf.hlg_inverse_oetf(signals), cm.oetf_inverse_BT2100_HLG(signals))


def _rgb_samples():
    rng = np.random.default_rng(2100)
    grey = np.repeat(SWEEP[::40, None] / 1e4, 3, axis=1)
    colours = rng.uniform(-0.05, 1.0, size=(300, 3)) * np.geomspace(1e-3, 1, 300)[:, None]
    return np.concatenate([grey, colours])


@pytest.mark.parametrize("peak_nits", [400.0, 1000.0, 2000.0])
def test_hlg_ootf_eotf_match_colour_science_on_rgb(tf, peak_nits):
    rgb = _rgb_samples()
    scene_reference = cm.ootf_BT2100_HLG(rgb, L_W=peak_nits)
    _relative_or_absolute(tf.hlg_ootf(rgb, peak_nits), scene_reference)
    _relative_or_absolute(
        tf.hlg_inverse_ootf(scene_reference, peak_nits),
        cm.ootf_inverse_BT2100_HLG(scene_reference, L_W=peak_nits),
    )
    signal = tf.hlg_oetf(rgb)
    _relative_or_absolute(tf.hlg_eotf(signal, peak_nits), cm.eotf_BT2100_HLG(signal, L_W=peak_nits))
    nits = rgb * peak_nits
    _relative_or_absolute(
        tf.hlg_inverse_eotf(nits, peak_nits), cm.eotf_inverse_BT2100_HLG(nits, L_W=peak_nits)
    )


def test_hlg_eotf_black_lift_matches_colour_science(tf):
    rgb = np.abs(_rgb_samples())
    signal = tf.hlg_oetf(rgb)
    _relative_or_absolute(
        tf.hlg_eotf(signal, 1000.0, black_nits=0.005),
        cm.eotf_BT2100_HLG(signal, L_B=0.005, L_W=1000),
    )
    nits = rgb * 1000
    _relative_or_absolute(
        tf.hlg_inverse_eotf(nits, 1000.0, black_nits=0.005),
        cm.eotf_inverse_BT2100_HLG(nits, L_B=0.005, L_W=1000),
    )


def test_srgb_matches_colour_science_where_the_negative_extensions_agree(tf):
    # colour-science continues the linear segment below 0; we mirror like OCIO and ACES.
    # The two agree down to -0.0031308 (linear) / -0.04045 (code).
    linear = SIGNED_SWEEP[SIGNED_SWEEP >= -0.0031308]
    codes = CODES[CODES >= -0.04045]
    _relative_or_absolute(tf.srgb_encode(linear), cm.eotf_inverse_sRGB(linear))
    _relative_or_absolute(tf.srgb_decode(codes), cm.eotf_sRGB(codes))


def diffhdr_lin_to_log(linear, gamma, m):
    """DiffHDR's Lin_to_Log in float64: (ln(gamma x + 1) / ln(gamma M + 1)) ** (1 / gamma)."""
    return (np.log(gamma * linear + 1) / np.log(gamma * m + 1)) ** (1 / gamma)


def diffhdr_log_to_lin(codes, gamma, m):
    """DiffHDR's Log_to_Lin: (exp(y^gamma ln(gamma M + 1)) - 1) / gamma."""
    return (np.exp(codes**gamma * np.log(gamma * m + 1)) - 1) / gamma


def test_loggamma_matches_diffhdr_formula_from_1e_4_to_65536(tf):
    # No colour-science oracle: DiffHDR's formula, transcribed above, with the upstream
    # code's M = 65536.
    linear = SWEEP * 6.5536
    _relative_or_absolute(tf.loggamma_encode(linear, ceiling=65536.0),
                          diffhdr_lin_to_log(linear, 2.2, 65536))
    codes = np.linspace(0, 1, 1001)
    _relative_or_absolute(tf.loggamma_decode(codes, ceiling=65536.0),
                          diffhdr_log_to_lin(codes, 2.2, 65536))


def test_loggamma_defaults_to_gamma_2_2_and_m_1000_and_matches_diffhdr(tf):
    # The seed's implementation README: gamma = 2.2, M = 1000 (about 10 stops over white).
    linear = np.geomspace(1e-4, 1000.0, 801)
    _relative_or_absolute(tf.loggamma_encode(linear), diffhdr_lin_to_log(linear, 2.2, 1000))
    codes = np.linspace(0, 1, 1001)
    _relative_or_absolute(tf.loggamma_decode(codes), diffhdr_log_to_lin(codes, 2.2, 1000))
    assert tf.loggamma_decode(1.0) == pytest.approx(1000.0, rel=1e-13)
    curve = tf.get_curve("loggamma")
    assert dict(curve.parameters) == {"gamma": 2.2, "ceiling": 1000.0}
    assert curve.linear_max == 1000.0


def test_loggamma_m_1000_decodes_its_own_float32_encode_within_2e_6(tf):
    # float32 from 2**-14 to M. The code value is rounded to 2**-24 relative; decoding
    # raises it to gamma and scales by ln(gamma M + 1) = 7.7 before expm1, so the linear
    # value moves by up to 2.2 * 7.7 * 2**-24 ~ 1.0e-6 relative (measured: 8.2e-7); 2e-6
    # allows the encode's own rounding on top.
    linear = torch.exp2(torch.linspace(-14.0, math.log2(1000.0), 4001))
    back = tf.loggamma_decode(tf.loggamma_encode(linear))
    torch.testing.assert_close(back, linear, rtol=2e-6, atol=0.0)
    assert back.dtype == torch.float32


def test_mulaw_matches_g711_formula_for_mu_100_and_5000(tf):
    values = np.linspace(-1, 1, 2001)
    for mu in (100.0, 5000.0):
        reference = np.sign(values) * np.log1p(mu * np.abs(values)) / np.log1p(mu)
        _relative_or_absolute(tf.mulaw_encode(values, mu), reference)
        _relative_or_absolute(tf.mulaw_decode(reference, mu), values)


def test_pu21_matches_pycvvdp_banding_glare(tf):
    # The task's requirement is 1e-4 in PU units (of 0..595); both are float64 formulas.
    nits = torch.from_numpy(np.geomspace(1e-3, 2e4, 2001))
    reference = PU(type="banding_glare")
    np.testing.assert_allclose(tf.pu21_encode(nits), reference.encode(nits), rtol=0, atol=1e-4)
    pu = torch.linspace(0, 595, 1001, dtype=torch.float64)
    np.testing.assert_allclose(tf.pu21_decode(pu), reference.decode(pu), rtol=1e-6, atol=1e-9)


# --- golden values from the specifications -------------------------------------------


def test_logc4_golden_values_from_the_arri_specification(tf):
    assert tf.logc4_encode(0.0) == pytest.approx(95 / 1023, abs=1e-12)
    assert round(tf.logc4_encode(0.18), 5) == 0.27840
    assert round(tf.logc4_decode(0.0), 6) == -0.018057
    assert tf.logc4_decode(0.0) == pytest.approx(tf.LOGC4.t, abs=1e-15)
    assert tf.logc4_encode(tf.LOGC4.t) == pytest.approx(0.0, abs=1e-15)
    assert round(tf.logc4_decode(1.0), 1) == 469.8


def test_logc3_ei800_golden_values_from_the_arri_table(tf):
    p = tf.logc3_parameters(800)
    assert round(tf.logc3_encode(0.18), 6) == 0.391007
    assert round(p.cut, 6) == 0.010591
    assert round(tf.logc3_encode(p.cut), 6) == 0.149658  # the table's e * cut + f
    assert round(tf.logc3_encode(0.0), 6) == 0.092809  # f
    # Both branches meet at the cut, in value and in slope (ARRI's design).
    log_at_cut = p.c * math.log10(p.a * p.cut + p.b) + p.d
    assert log_at_cut == pytest.approx(p.e * p.cut + p.f, abs=1e-12)
    assert p.c * p.a / ((p.a * p.cut + p.b) * math.log(10)) == pytest.approx(p.e, rel=1e-12)


def test_pq_constants_are_the_exact_st2084_rationals_and_golden_values_hold(tf):
    assert (tf.PQ.m1, tf.PQ.m2) == (0.1593017578125, 78.84375)
    assert (tf.PQ.c1, tf.PQ.c2, tf.PQ.c3) == (0.8359375, 18.8515625, 18.6875)
    assert tf.PQ.c1 == tf.PQ.c3 - tf.PQ.c2 + 1
    assert round(tf.pq_inverse_eotf(100.0), 5) == 0.50808
    assert tf.pq_inverse_eotf(10000.0) == pytest.approx(1.0, abs=1e-15)
    assert tf.pq_eotf(1.0) == pytest.approx(10000.0, rel=1e-14)
    assert tf.pq_eotf(0.0) == 0.0
    # ST 2084 maps 0 nits to c1 ** m2 = 7.3e-7, not to 0.
    assert tf.pq_inverse_eotf(0.0) == pytest.approx(tf.PQ.c1**tf.PQ.m2, rel=1e-14)


def test_pq_and_hlg_scene_linear_pairs_put_diffuse_white_where_bt2408_says(tf):
    assert tf.pq_decode(tf.pq_encode(1.0)) == pytest.approx(1.0, rel=1e-12)
    assert tf.pq_eotf(tf.pq_encode(1.0)) == pytest.approx(203.0, rel=1e-12)
    # BT.2408: 203-nit reference white at 75% HLG signal on a 1000-nit display (the
    # report rounds to whole percent; the exact value is 0.7496).
    assert tf.hlg_encode(1.0) == pytest.approx(0.75, abs=1e-3)
    assert tf.hlg_encode(1.0 * 1000 / 203) == pytest.approx(1.0, abs=1e-7)


def test_hlg_golden_values_from_bt2100(tf):
    assert tf.hlg_oetf(1 / 12) == pytest.approx(0.5, abs=1e-15)
    assert tf.hlg_oetf(1.0) == pytest.approx(1.0, abs=1e-7)  # a is given to 8 decimals
    assert tf.hlg_inverse_oetf(0.5) == pytest.approx(1 / 12, abs=1e-15)
    assert (round(tf.HLG.b, 8), round(tf.HLG.c, 8)) == (0.28466892, 0.55991073)
    assert tf.hlg_system_gamma(1000.0) == pytest.approx(1.2, abs=1e-15)
    assert tf.hlg_system_gamma(2000.0) == pytest.approx(1.2 + 0.42 * math.log10(2), abs=1e-15)
    assert tf.hlg_eotf(1.0, peak_nits=1000.0) == pytest.approx(1000.0, rel=1e-7)


def test_srgb_golden_values_at_the_iec_break_points(tf):
    assert tf.srgb_encode(0.0031308) == pytest.approx(12.92 * 0.0031308, abs=1e-15)
    # Just above the break the power segment takes over; IEC's rounded constants leave a
    # 2.9e-8 step there (0.0404499075 vs 0.040449936), which we reproduce, not smooth.
    above = tf.srgb_encode(0.0031308 * (1 + 1e-12))
    assert above == pytest.approx(1.055 * 0.0031308 ** (1 / 2.4) - 0.055, abs=1e-12)
    assert 12.92 * 0.0031308 - above == pytest.approx(2.9e-8, abs=1e-9)
    assert tf.srgb_decode(0.04045) == pytest.approx(0.04045 / 12.92, abs=1e-15)
    assert tf.srgb_encode(1.0) == pytest.approx(1.0, abs=1e-15)
    assert tf.srgb_decode(1.0) == pytest.approx(1.0, abs=1e-15)


def test_acescct_golden_values_from_s_2016_001(tf):
    assert round(tf.acescct_encode(0.18), 7) == 0.4135884
    # The specification's published decimals, reproduced from its defining formula.
    assert tf.ACESCCT.a == pytest.approx(10.5402377416545, abs=1e-13)
    assert tf.ACESCCT.b == pytest.approx(0.0729055341958355, abs=1e-15)
    assert tf.ACESCCT.y_break == pytest.approx(0.155251141552511, abs=1e-15)
    assert tf.acescct_encode(0.0078125) == pytest.approx(0.155251141552511, abs=1e-15)
    assert tf.acescct_decode(0.0) == pytest.approx(-tf.ACESCCT.b / tf.ACESCCT.a, abs=1e-15)


def test_mirrored_negatives_are_exactly_odd():
    values = np.geomspace(1e-5, 1e3, 257)
    for encode in (tf.pq_inverse_eotf, tf.pq_eotf, tf.hlg_oetf, tf.hlg_inverse_oetf,
                   tf.srgb_encode, tf.srgb_decode, tf.loggamma_encode, tf.mulaw_encode):
        np.testing.assert_array_equal(encode(-values), -encode(values))


# --- float32 round trips ---------------------------------------------------------------

ROUND_TRIPS = {
    "logc3": (tf.logc3_encode, tf.logc3_decode, -0.02, 55.0),
    "logc4": (tf.logc4_encode, tf.logc4_decode, -0.018, 469.0),
    "acescct": (tf.acescct_encode, tf.acescct_decode, -0.0069, 222.0),
    "loggamma": (tf.loggamma_encode, tf.loggamma_decode, -65536.0, 65536.0),
    "pq": (tf.pq_encode, tf.pq_decode, -49.0, 49.0),
    "pq_nits": (tf.pq_inverse_eotf, tf.pq_eotf, -1e4, 1e4),
    "hlg": (tf.hlg_encode, tf.hlg_decode, -4.9, 4.9),
    "hlg_oetf": (tf.hlg_oetf, tf.hlg_inverse_oetf, -1.0, 1.0),
    "mulaw": (tf.mulaw_encode, tf.mulaw_decode, -1.0, 1.0),
    "srgb": (tf.srgb_encode, tf.srgb_decode, -1.0, 1.0),
    "pu21": (tf.pu21_encode, tf.pu21_decode, 0.005, 1e4),
}


def _signed_range(low, high, count=4001):
    positive = np.geomspace(1e-4, high, count)
    negative = -np.geomspace(1e-6, -low, count // 4) if low < 0 else np.empty(0)
    values = np.concatenate([negative, [0.0] if low <= 0 else [], positive])
    return values[(values >= low) & (values <= high)]


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_float32_round_trip_is_within_2e_6_relative_plus_one_code_ulp(name):
    encode, decode, low, high = ROUND_TRIPS[name]
    linear = torch.from_numpy(_signed_range(low, high).astype(np.float32))
    code = encode(linear)
    restored = decode(code)
    assert code.dtype == restored.dtype == torch.float32
    # Storing the code value in float32 alone moves the decoded value by up to
    # |dx/dy| * ulp(y); beyond that we allow 2e-6 relative.
    code64 = code.double().requires_grad_()
    (slope,) = torch.autograd.grad(decode(code64).sum(), code64)
    code_ulp = torch.finfo(torch.float32).eps * code.double().abs()
    bound = 2e-6 * linear.double().abs() + slope.abs() * code_ulp + 1e-12
    error = (restored.double() - linear.double()).abs()
    assert bool((error <= bound).all()), f"worst excess {float((error - bound).max()):.3g}"


# --- autograd --------------------------------------------------------------------------

_P3 = tf.logc3_parameters(800)
BRANCH_POINTS = {
    "logc3_encode": (tf.logc3_encode, [_P3.cut]),
    "logc3_decode": (tf.logc3_decode, [_P3.e * _P3.cut + _P3.f]),
    "logc4_encode": (tf.logc4_encode, [tf.LOGC4.t]),
    "logc4_decode": (tf.logc4_decode, [0.0]),
    "acescct_encode": (tf.acescct_encode, [tf.ACESCCT.x_break]),
    "acescct_decode": (tf.acescct_decode, [tf.ACESCCT.y_break]),
    "srgb_encode": (tf.srgb_encode, [0.0031308, -0.0031308]),
    "srgb_decode": (tf.srgb_decode, [0.04045, -0.04045]),
    "hlg_oetf": (tf.hlg_oetf, [1 / 12, -1 / 12]),
    "hlg_inverse_oetf": (tf.hlg_inverse_oetf, [0.5, -0.5]),
    "pq_eotf": (tf.pq_eotf, [0.5, -0.5]),
    "pq_inverse_eotf": (tf.pq_inverse_eotf, [100.0, -100.0]),
    "pq_encode": (tf.pq_encode, [1.0, -1.0]),
    "pq_decode": (tf.pq_decode, [0.5, -0.5]),
    "hlg_encode": (tf.hlg_encode, [1.0, -1.0]),
    "hlg_decode": (tf.hlg_decode, [0.5, -0.5]),
    "loggamma_encode": (tf.loggamma_encode, [1.0, -1.0]),
    "loggamma_decode": (tf.loggamma_decode, [0.5, -0.5]),
    "mulaw_encode": (tf.mulaw_encode, [0.5, -0.5]),
    "mulaw_decode": (tf.mulaw_decode, [0.5, -0.5]),
    "pu21_encode": (tf.pu21_encode, [0.005, 100.0, 1e4]),
    "pu21_decode": (tf.pu21_decode, [256.0]),
}


@pytest.mark.parametrize("name", BRANCH_POINTS)
def test_gradcheck_float64_on_both_sides_of_every_branch_point(name):
    function, points = BRANCH_POINTS[name]
    # 1e-3 relative either side keeps gradcheck's 1e-6 finite-difference step on one branch.
    values = [p + side * max(abs(p), 1.0) * 1e-3 for p in points for side in (-1, 1)]
    values = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(function, (values,))


@pytest.mark.parametrize(
    "function", [tf.hlg_ootf, tf.hlg_inverse_ootf, tf.hlg_eotf, tf.hlg_inverse_eotf]
)
def test_gradcheck_float64_hlg_rgb_functions_including_negatives(function):
    scale = 1000.0 if function in (tf.hlg_inverse_ootf, tf.hlg_inverse_eotf) else 1.0
    rgb = torch.tensor(
        [[0.2, 0.1, 0.05], [0.9, 0.5, 0.7], [-0.01, 0.3, 0.2], [0.04, 0.06, 0.1]],
        dtype=torch.float64,
    )
    assert torch.autograd.gradcheck(function, ((rgb * scale).requires_grad_(),))


C1_SEAMS = [name for name in BRANCH_POINTS if not name.startswith(("pu21", "srgb"))]


@pytest.mark.parametrize("name", C1_SEAMS)
def test_gradient_exactly_at_a_branch_point_is_the_curve_slope(name):
    # These seams are C1, so the slope there is the central difference; neither segment
    # may be dropped or counted twice. (IEC sRGB is only C0: its toe slope 12.92 meets a
    # power segment of slope 12.70; PU21's points are clamps to its luminance range.)
    function, points = BRANCH_POINTS[name]
    at = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(function(at).sum(), at)
    step = 1e-7 * torch.clamp(at.detach().abs(), min=1.0)
    central = (function(at.detach() + step) - function(at.detach() - step)) / (2 * step)
    torch.testing.assert_close(slope, central, rtol=1e-5, atol=0)


def test_hlg_ootf_of_black_has_zero_value_and_finite_gradient(tf):
    rgb = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    nits = tf.hlg_ootf(rgb)
    (gradient,) = torch.autograd.grad(nits.sum(), rgb)
    assert bool((nits == 0).all()) and bool(torch.isfinite(gradient).all())
    assert bool((tf.hlg_inverse_ootf(rgb.detach()) == 0).all())


# --- array types, dtypes, inputs, blocks -----------------------------------------------

PAIRS = {name: (curve.encode, curve.decode) for name, curve in tf.CURVES.items()}
PAIRS.update(
    {
        "pq_nits": (tf.pq_inverse_eotf, tf.pq_eotf),
        "hlg_oetf": (tf.hlg_oetf, tf.hlg_inverse_oetf),
        "hlg_ootf": (tf.hlg_ootf, tf.hlg_inverse_ootf),
        "hlg_eotf": (tf.hlg_inverse_eotf, tf.hlg_eotf),
        "pu21": (tf.pu21_encode, tf.pu21_decode),
    }
)
FRAME = np.random.default_rng(7).uniform(-0.05, 1.5, size=(2, 5, 7, 3))


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_and_torch_agree_exactly_keep_dtype_and_leave_input_alone(name, dtype):
    for function in PAIRS[name]:
        array = FRAME.astype(dtype)
        untouched = array.copy()
        tensor = torch.from_numpy(array.copy())
        from_numpy = function(array)
        from_torch = function(tensor)
        assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == dtype
        assert from_torch.dtype == tensor.dtype
        np.testing.assert_array_equal(from_numpy, from_torch.numpy())
        np.testing.assert_array_equal(array, untouched)
        np.testing.assert_array_equal(tensor.numpy(), untouched)


@pytest.mark.parametrize("name", PAIRS)
def test_blockwise_frames_equal_whole_tensor_evaluation(name):
    frame = torch.from_numpy(
        np.random.default_rng(3).uniform(-0.05, 1.0, size=(BLOCK_ELEMENTS // 3 * 2 + 5, 3))
    ).float()
    tracked = frame.clone().requires_grad_()  # recording autograd: one whole-tensor pass
    for function in PAIRS[name]:
        # Block boundaries move which values land in a SIMD tail, where torch's scalar
        # pow/log/exp can differ from the vector one in the last bit; a later exp can
        # amplify that bit up to ~13x (log-gamma decode), hence 1e-6 rather than 1 ulp.
        torch.testing.assert_close(function(frame), function(tracked).detach(), rtol=1e-6, atol=0)


def test_frames_under_no_grad_or_inference_mode_come_back_without_autograd_history(tf):
    frame = torch.rand(BLOCK_ELEMENTS * 3 + 1, requires_grad=True)
    with torch.no_grad():
        encoded = tf.logc4_encode(frame)
    assert not encoded.requires_grad
    with torch.inference_mode():
        inference_frame = frame.detach().clone()
        decoded = tf.hlg_decode(tf.hlg_encode(inference_frame.view(-1, 1)))
    assert decoded.is_inference() and not decoded.requires_grad


def test_python_floats_come_back_as_floats(tf):
    assert isinstance(tf.logc4_encode(0.18), float)
    assert isinstance(tf.hlg_ootf(0.18), float)


# --- registry --------------------------------------------------------------------------


@pytest.mark.parametrize("name", tf.CURVES)
def test_curve_linear_range_constants_equal_decode_of_code_0_and_1(name):
    curve = tf.get_curve(name)
    assert curve.name == name
    assert curve.linear_min == pytest.approx(curve.decode(0.0), rel=1e-12, abs=1e-15)
    assert curve.linear_max == pytest.approx(curve.decode(1.0), rel=1e-12)
    defaults = functools.partial(curve.encode, **curve.parameters)
    assert defaults(0.18) == curve.encode(0.18)


def test_registry_offers_the_eight_scene_linear_curves():
    assert list(tf.CURVES) == [
        "logc3", "logc4", "acescct", "loggamma", "pq", "hlg", "mulaw", "srgb"
    ]
    assert tf.get_curve("logc4").linear_max == pytest.approx(469.8, abs=0.05)


def test_a_curve_spec_sets_parameters_and_rederives_the_range():
    upstream = tf.parse_curve("loggamma:ceiling=65536")
    assert dict(upstream.parameters) == {"gamma": 2.2, "ceiling": 65536.0}
    assert upstream.linear_max == pytest.approx(65536.0, rel=1e-12)
    assert upstream.label == "DiffHDR log-gamma (ceiling 65536)"
    assert upstream.encode(65536.0, **upstream.parameters) == pytest.approx(1.0, rel=1e-15)
    steeper = tf.parse_curve(" loggamma : gamma=2.4 , ceiling=1000 ")
    assert dict(steeper.parameters) == {"gamma": 2.4, "ceiling": 1000.0}
    assert tf.parse_curve("loggamma") is tf.get_curve("loggamma")
    assert tf.parse_curve("logc3:exposure_index=1600").linear_max == pytest.approx(
        tf.logc3_decode(1.0, exposure_index=1600), rel=1e-12)


def test_lora_curve_reads_m_and_an_old_mapping_without_m_keeps_65536():
    written = {"hdr_transform": "loggamma",
               "curve": {"name": "loggamma", "parameters": {"gamma": 2.2, "ceiling": 1000.0}}}
    assert tf.lora_curve(written).parameters["ceiling"] == 1000.0
    # hdr_lora.json from before M was a parameter: the upstream 65536 it was trained with.
    for old in ({"hdr_transform": "loggamma"},
                {"curve": {"name": "loggamma", "parameters": {"gamma": 2.2}}}):
        curve = tf.lora_curve(old)
        assert dict(curve.parameters) == {"gamma": 2.2, "ceiling": 65536.0}
        assert curve.decode(1.0, **curve.parameters) == pytest.approx(65536.0, rel=1e-12)
    assert tf.lora_curve({"hdr_transform": "logc4"}) is tf.get_curve("logc4")


@pytest.mark.parametrize(("spec", "message"), [
    ("loggamma:ceiling", r"'ceiling' is not parameter=number"),
    ("loggamma:ceiling=big", r"'ceiling=big' is not parameter=number"),
    ("loggamma:m=1000", r"curve loggamma has no parameter m; its parameters are: gamma, ceiling"),
    ("loggamma:ceiling=0", r"ceiling must be positive"),
    ("logc5", r"curve must be one of"),
])
def test_a_bad_curve_spec_names_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        tf.parse_curve(spec)
    with pytest.raises(ValueError, match="names no curve"):
        tf.lora_curve({"curve": {}})


# --- bad input -------------------------------------------------------------------------


def test_unknown_curve_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="curve must be one of logc3, logc4, .*srgb"):
        tf.get_curve("logc5")


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: tf.logc3_encode(0.18, exposure_index=900), "exposure_index"),
        (lambda: tf.logc3_decode(0.4, exposure_index=0), "exposure_index"),
        (lambda: tf.mulaw_encode(0.5, mu=0.0), "mu"),
        (lambda: tf.mulaw_decode(0.5, mu=-5.0), "mu"),
        (lambda: tf.loggamma_encode(1.0, gamma=0.0), "gamma"),
        (lambda: tf.loggamma_decode(0.5, ceiling=-1.0), "ceiling"),
        (lambda: tf.pq_encode(1.0, nits_at_1=0.0), "nits_at_1"),
        (lambda: tf.pq_decode(0.5, nits_at_1=-203.0), "nits_at_1"),
        (lambda: tf.hlg_encode(1.0, nits_at_1=0.0), "nits_at_1"),
        (lambda: tf.hlg_decode(0.5, peak_nits=0.0), "peak_nits"),
        (lambda: tf.hlg_ootf(0.5, peak_nits=-1.0), "peak_nits"),
        (lambda: tf.hlg_eotf(0.5, black_nits=1000.0), "black_nits"),
        (lambda: tf.hlg_inverse_eotf(100.0, black_nits=-0.1), "black_nits"),
    ],
)
def test_bad_parameters_raise_value_error_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=f"^{argument} must"):
        call()
