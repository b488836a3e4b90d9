"""GMODiff's gain map against the paper's Eq. 1, transcribed here in numpy.

Hu et al., "GMODiff: One-Step Gain Map Refinement with Diffusion Priors for HDR
Reconstruction", arXiv:2512.16357 (2025), Eq. 1:

    H = (L + alpha) * exp2(1 + G * Q_max),   alpha = 1/64,

and, in training, exp2 replaced by the inverse mu-law R(x) = (e^(x log(1 + mu)) - 1) / mu
with mu = 100. The transcriptions below are written from those two lines alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr.models import gmodiff

ALPHA, MU = 1 / 64, 100.0


def paper_decode_exp2(gain, ldr, q_max):
    return (ldr + ALPHA) * 2.0 ** (1.0 + gain * q_max)


def paper_r(x):
    return (np.exp(x * np.log(1.0 + MU)) - 1.0) / MU


def paper_decode_mulaw(gain, ldr, q_max):
    return (ldr + ALPHA) * paper_r(1.0 + gain * q_max)


def bracket_pair(seed: int = 18):
    """An LDR base in [0, 1] and an HDR image 1..9 stops above twice (L + alpha)."""
    rng = np.random.default_rng(seed)
    ldr = rng.uniform(0.0, 1.0, (16, 16, 3))
    hdr = (ldr + ALPHA) * 2.0 ** (1.0 + rng.uniform(0.0, 8.0, ldr.shape))
    return hdr, ldr


def test_constants_are_the_papers():
    assert gmodiff.GMODIFF.alpha == 1 / 64 and gmodiff.GMODIFF.mu == 100.0


def test_inverse_mulaw_is_the_papers_r():
    x = np.linspace(-2.0, 3.0, 101)
    # float64 throughout: agreement to 1e-13 relative is rounding of e^x alone.
    np.testing.assert_allclose(gmodiff.gmodiff_inverse_mulaw(x), paper_r(x), rtol=1e-13,
                               atol=1e-15)
    np.testing.assert_allclose(gmodiff.gmodiff_mulaw(paper_r(x)), x, rtol=1e-12, atol=1e-12)
    assert gmodiff.gmodiff_inverse_mulaw(1.0) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize(("form", "paper_decode"), [("exp2", paper_decode_exp2),
                                                    ("mulaw", paper_decode_mulaw)])
def test_decode_is_eq_1_and_encode_its_exact_inverse(form, paper_decode):
    hdr, ldr = bracket_pair()
    gain, q_max = gmodiff.gmodiff_encode(hdr, ldr, form=form)
    # Q_max is the data's largest gain: the gain map reaches exactly 1 and no further.
    assert gain.max() == pytest.approx(1.0, abs=1e-15)
    assert gain.min() >= 0.0
    # The pack's decode is the paper's equation (float64: 1e-12 relative).
    np.testing.assert_allclose(gmodiff.gmodiff_decode(gain, ldr, q_max, form=form),
                               paper_decode(gain, ldr, q_max), rtol=1e-12)
    np.testing.assert_allclose(paper_decode(gain, ldr, q_max), hdr, rtol=1e-12)
    # And a random gain map in [0, 1] decodes and re-encodes to itself.
    codes = np.random.default_rng(3).uniform(0.0, 1.0, ldr.shape)
    rebuilt = paper_decode(codes, ldr, 5.0)
    again, used = gmodiff.gmodiff_encode(rebuilt, ldr, 5.0, form=form)
    assert used == 5.0
    np.testing.assert_allclose(again, codes, rtol=1e-12, atol=1e-12)


def test_exp2_q_max_is_the_largest_log2_gain_less_one():
    hdr, ldr = bracket_pair(7)
    expected = np.max(np.log2(hdr / (ldr + ALPHA)) - 1.0)
    q_max = gmodiff.gmodiff_q_max(hdr, ldr, form="exp2")
    assert float(q_max) == pytest.approx(expected, rel=1e-14)
    # G = 0 at H = 2 (L + alpha): the "1 +" of Eq. 1 (the pack's old decode dropped it).
    assert float(gmodiff.gmodiff_decode(np.zeros(1), np.zeros(1), 3.0, form="exp2")[0]) == \
        pytest.approx(2 * ALPHA, rel=1e-15)


def test_float32_round_trip_is_within_4_ulp_of_the_hdr():
    hdr, ldr = (torch.from_numpy(value).float() for value in bracket_pair(11))
    gain, q_max = gmodiff.gmodiff_encode(hdr, ldr, form="exp2")
    assert gain.dtype == torch.float32
    back = gmodiff.gmodiff_decode(gain, ldr, q_max, form="exp2")
    # log2, a division and exp2 of gains up to 2**9 in float32: each step rounds by half an
    # ulp, and exp2 magnifies the exponent's rounding by ln 2 * 9 ~ 6 ulp at worst.
    torch.testing.assert_close(back, hdr, rtol=8 * 2.0**-23, atol=0.0)


def test_bracket_inputs_are_ldr_and_its_gamma_linearised_exposure():
    rng = np.random.default_rng(4)
    frames = [torch.from_numpy(rng.uniform(0, 1, (4, 6, 3))) for _ in range(3)]
    stack = gmodiff.gmodiff_bracket_inputs(frames, [-2.0, 0.0, 2.0])
    assert stack.shape == (3, 4, 6, 6)
    for index, (frame, stops) in enumerate(zip(frames, (-2.0, 0.0, 2.0), strict=True)):
        np.testing.assert_array_equal(stack[index, ..., :3].numpy(), frame.numpy())
        np.testing.assert_allclose(stack[index, ..., 3:].numpy(),
                                   frame.numpy() ** 2.2 / 2.0**stops, rtol=1e-14)


def test_bad_input_names_the_input_and_the_fix():
    hdr, ldr = bracket_pair()
    same = [torch.zeros(4, 4, 3), torch.zeros(4, 4, 3)]
    cases = [
        (lambda: gmodiff.gmodiff_encode(ldr * 0.5, ldr, form="exp2"),
         r"Q_max .*must exceed twice its base"),
        (lambda: gmodiff.gmodiff_decode(hdr, ldr, 0.0), r"q_max is 0\.0; .*pass the q_max"),
        (lambda: gmodiff.gmodiff_encode(hdr, ldr, -1.0), r"q_max is -1\.0"),
        (lambda: gmodiff.gmodiff_encode(hdr, ldr[:8]), r"ldr_linear has shape .*resize"),
        (lambda: gmodiff.gmodiff_encode(hdr * 0, ldr, form="exp2"), r"hdr_linear must be > 0"),
        (lambda: gmodiff.gmodiff_encode(hdr, ldr, form="log2"), r"form must be one of"),
        (lambda: gmodiff.gmodiff_bracket_inputs([same[0], torch.zeros(4, 5, 3)], [0, 1]),
         r"brackets\[1\] has shape \(4, 5, 3\) but brackets\[0\] has \(4, 4, 3\).*resize"),
        (lambda: gmodiff.gmodiff_bracket_inputs(same, [0.0]), r"one exposure value"),
        (lambda: gmodiff.gmodiff_bracket_inputs(same, [0.0, float("nan")]),
         r"exposure_values must be finite"),
    ]
    for make, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            make()
