"""Transfer functions against OpenColorIO processors of the ACES studio config.

Each test takes the config's own colourspace (or display colourspace) transform, drops its
gamut matrices so that only the curve remains, and runs it with OCIO's CPU processor
(float32, lossless optimisation) against our float64 result on the same float32 input.
"""

from __future__ import annotations

import numpy as np
import PyOpenColorIO as OCIO
import pytest
import torch

from comfyui_hdr.hdr import transfer as tf

CONFIG = OCIO.Config.CreateFromFile("ocio://studio-config-latest")
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _curve_steps(colourspace: str) -> list:
    """A colourspace's conversion steps without its gamut (non-diagonal) matrices."""
    space = CONFIG.getColorSpace(colourspace)
    to_reference = space.getTransform(OCIO.COLORSPACE_DIR_TO_REFERENCE)
    transform = to_reference or space.getTransform(OCIO.COLORSPACE_DIR_FROM_REFERENCE)
    steps = CONFIG.getProcessor(transform).createGroupTransform()
    return [step for step in steps if not _is_gamut_matrix(step)]


def _is_gamut_matrix(step) -> bool:
    """True for a matrix that mixes channels; uniform scales (nits) belong to the curve."""
    if not isinstance(step, OCIO.MatrixTransform):
        return False
    matrix = step.getMatrix()
    return any(matrix[i] != 0 for i in (1, 2, 4, 6, 8, 9))


def _processor(steps: list, direction=OCIO.TRANSFORM_DIR_FORWARD):
    processor = CONFIG.getProcessor(OCIO.GroupTransform(steps), direction)
    return processor.getOptimizedCPUProcessor(OCIO.OptimizationFlags.OPTIMIZATION_LOSSLESS)


def _apply(processor, values: np.ndarray) -> np.ndarray:
    """Run OCIO on a packed float32 RGB buffer; grey input, one channel back."""
    rgb = np.ascontiguousarray(np.repeat(values.astype(np.float32)[:, None], 3, axis=1))
    processor.applyRGB(rgb)
    return rgb[:, 0].astype(np.float64)


def _float32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _decode_tolerance(decode, codes: np.ndarray) -> np.ndarray:
    """2e-6 relative, plus what one float32 ulp of a unit-scale code value moves the result.

    OCIO evaluates in float32: rounding its O(1) intermediates (the code value, the log
    offset, a LUT index) shifts the scene-linear answer by the curve's slope times
    1.2e-7, which near zero, or on PQ's steep top, exceeds any fixed relative tolerance.
    """
    code = torch.from_numpy(codes).requires_grad_()
    (slope,) = torch.autograd.grad(decode(code).sum(), code)
    reference = decode(codes)
    return 2e-6 * np.abs(reference) + np.abs(slope.numpy()) * FLOAT32_EPS * np.maximum(
        np.abs(codes), 1.0
    )


def _assert_decode_matches(ocio, decode, codes):
    error = np.abs(ocio - decode(codes))
    tolerance = _decode_tolerance(decode, codes)
    assert (error <= tolerance).all(), f"worst excess {np.max(error - tolerance):.3g}"


# Codes are O(1): 2e-6 absolute is 1/500 of a 10-bit code; OCIO's measured error is <2e-7.
ENCODE = {"rtol": 2e-6, "atol": 2e-6}

LINEAR = _float32(
    np.concatenate([-np.geomspace(1e-5, 0.0175, 200), [0.0], np.geomspace(1e-5, 400, 3000)])
)
CODES = _float32(np.linspace(-0.1, 1.0, 2201))

LOG_CURVES = {
    "ARRI LogC3 (EI800)": (tf.logc3_encode, tf.logc3_decode, OCIO.LogCameraTransform),
    "ARRI LogC4": (tf.logc4_encode, tf.logc4_decode, OCIO.LogCameraTransform),
    "ACEScct": (tf.acescct_encode, tf.acescct_decode, OCIO.LogCameraTransform),
}


@pytest.mark.parametrize("colourspace", LOG_CURVES)
def test_log_curves_match_the_studio_config_colourspace_curve(colourspace):
    encode, decode, kind = LOG_CURVES[colourspace]
    steps = _curve_steps(colourspace)
    assert [type(step) for step in steps] == [kind]  # the curve alone, gamut removed
    _assert_decode_matches(_apply(_processor(steps), CODES), decode, CODES)
    ocio_encode = _apply(_processor(steps, OCIO.TRANSFORM_DIR_INVERSE), LINEAR)
    np.testing.assert_allclose(encode(LINEAR), ocio_encode, **ENCODE)


def test_pq_display_colourspace_shows_1_0_at_100_nits():
    steps = _curve_steps("Rec.2100-PQ - Display")
    assert [type(step) for step in steps] == [OCIO.Lut1DTransform]
    processor = _processor(steps)
    # The display reference is CIE XYZ with Y = 1.0 at 100 nits; PQ 0.50808 is 100 nits.
    assert _apply(processor, np.array([1.0]))[0] == pytest.approx(
        tf.pq_encode(1.0, nits_at_1=100.0), abs=1e-7
    )


def test_pq_encode_matches_ocio_half_float_lut_on_its_samples_and_between():
    processor = _processor(_curve_steps("Rec.2100-PQ - Display"))
    # OCIO's PQ is a 65536-entry half-float-domain LUT: exact at half-float inputs...
    halves = np.arange(0x7BFF, dtype=np.uint16).view(np.float16).astype(np.float64)
    halves = halves[(halves > 0) & (halves <= 100)]
    np.testing.assert_allclose(
        tf.pq_encode(halves, nits_at_1=100.0), _apply(processor, halves), rtol=2e-6, atol=0
    )
    # ...and linearly interpolated in between.
    nits_over_100 = _float32(np.geomspace(1e-6, 100, 4001))
    np.testing.assert_allclose(
        tf.pq_encode(nits_over_100, nits_at_1=100.0), _apply(processor, nits_over_100), **ENCODE
    )


def test_pq_decode_matches_ocio_st2084_to_linear_at_its_lut_nodes():
    processor = _processor([OCIO.BuiltinTransform("CURVE - ST-2084_to_LINEAR")])
    # A 4096-entry LUT: exact at its nodes i / 4095 (linear interpolation in between
    # is OCIO's approximation, not the curve).
    nodes = _float32(np.arange(1, 4096) / 4095)
    _assert_decode_matches(_apply(processor, nodes), lambda c: tf.pq_decode(c, 100.0), nodes)
    assert _apply(processor, np.zeros(1))[0] == tf.pq_decode(0.0) == 0.0


def test_hlg_display_colourspace_matches_hlg_inverse_eotf_on_rgb():
    steps = _curve_steps("Rec.2100-HLG - Display")
    kinds = [type(step) for step in steps]
    assert kinds[-2:] == [OCIO.FixedFunctionTransform, OCIO.Lut1DTransform]
    processor = _processor(steps)
    rng = np.random.default_rng(2100)
    grey = np.repeat(np.geomspace(1e-3, 10, 300)[:, None], 3, axis=1)
    colours = rng.random((700, 3)) * np.geomspace(1e-3, 10, 700)[:, None]
    rgb = np.concatenate([grey, colours]).astype(np.float32)
    # OCIO's surround (OOTF) step floors luminance at 1e-4 of its scale, 0.027 nits;
    # compare above that.
    visible = rgb.astype(np.float64) @ tf.HLG.luminance_weights * 100 > 0.03
    rgb = rgb[visible]
    nits = rgb.astype(np.float64) * 100
    ocio = rgb.copy()
    processor.applyRGB(ocio)
    np.testing.assert_allclose(tf.hlg_inverse_eotf(nits, 1000.0), ocio, **ENCODE)


def test_srgb_matches_ocio_mirrored_display_curve_on_its_power_segment():
    steps = _curve_steps("sRGB - Display")
    assert [type(step) for step in steps] == [OCIO.ExponentWithLinearTransform]
    assert steps[0].getNegativeStyle() == OCIO.NEGATIVE_MIRROR
    # OCIO's sRGB is the C1-continuous "moncurve" form (toe slope 12.923 meeting at
    # 0.0030399), not IEC's 12.92 / 0.0031308, so only the power segment is shared.
    magnitude = np.geomspace(0.0032, 4.0, 1500)
    linear = _float32(np.concatenate([-magnitude, magnitude]))
    np.testing.assert_allclose(tf.srgb_encode(linear), _apply(_processor(steps), linear), **ENCODE)
    codes = _float32(np.concatenate([-np.linspace(0.041, 1.5, 800), np.linspace(0.041, 1.5, 800)]))
    decoded = _apply(_processor(steps, OCIO.TRANSFORM_DIR_INVERSE), codes)
    _assert_decode_matches(decoded, tf.srgb_decode, codes)
