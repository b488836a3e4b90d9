"""LumaFlux's RQS tone-field head (hdr/models/rqs.py, hdr/models/tone_field.py).

Oracles: the monotone-by-construction property over 10,000 random parameter draws, the
identity at zero parameters (bit for bit), eq. 4 of Durkan et al. (2019) written out
directly in float64, torch.autograd.gradcheck, and BT.2020 Table 4's Y'CbCr round trip.
"""

from __future__ import annotations

import pytest
import torch

from comfyui_hdr.hdr.models import rqs, tone_field

DRAWS = 10_000
GRID = 1025  # dense: 1024 steps of ~1e-3, finer than any bin (MIN_BIN ~1e-3 of 1)


def _draws(count: int, scale: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((count, rqs.PARAMETERS_PER_CURVE), generator=generator,
                       dtype=torch.float64) * scale


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_every_one_of_10000_random_splines_is_strictly_increasing_from_0_to_1(scale):
    grid = torch.linspace(0, 1, GRID, dtype=torch.float64)
    for start in range(0, DRAWS, 2_000):  # 2,000 curves x 1025 points per chunk
        curves = _draws(2_000, scale, seed=start)
        values = rqs.rational_quadratic_spline(grid, curves[:, None, :])
        assert values.shape == (2_000, GRID)
        steps = values.diff(dim=-1)
        assert steps.min() > 0, f"a curve in draws {start}.. decreases by {steps.min()}"
        assert torch.equal(values[:, 0], torch.zeros(2_000, dtype=torch.float64))
        # 1 -> 1 up to the rounding of the last bin's ratio, whose terms (slopes up to
        # ~1/MIN_BIN) cancel: 1.3e-15 seen at scale 4, bound 1e-14 (45 float64 eps)
        assert (values[:, -1] - 1).abs().max() <= 1e-14


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_zero_parameters_are_the_identity_bit_for_bit(dtype, device):
    x = torch.rand(50_000, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    x = torch.cat([x, torch.tensor([0.0, 1.0], dtype=dtype, device=device)])
    parameters = torch.zeros(rqs.PARAMETERS_PER_CURVE, dtype=dtype, device=device)
    assert torch.equal(rqs.rational_quadratic_spline(x, parameters), x)
    xi, eta, slopes = rqs.spline_knots(parameters)
    assert torch.equal(xi, eta) and torch.equal(slopes, torch.ones_like(slopes))


def _durkan_eq4(x: float, xi, eta, delta) -> float:
    """Neural Spline Flows eq. 4 as printed: s_k = h/w, theta in the bin."""
    k = max(index for index in range(len(xi) - 1) if xi[index] <= x)
    width, height = xi[k + 1] - xi[k], eta[k + 1] - eta[k]
    s, theta = height / width, (x - xi[k]) / width
    numerator = height * (s * theta ** 2 + delta[k] * theta * (1 - theta))
    denominator = s + (delta[k + 1] + delta[k] - 2 * s) * theta * (1 - theta)
    return eta[k] + numerator / denominator


def test_matches_neural_spline_flows_eq4_as_printed():
    curves = _draws(20, 2.0, seed=5)
    points = torch.rand(20, 7, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    values = rqs.rational_quadratic_spline(points, curves[:, None, :])
    xi, eta, delta = (part.tolist() for part in rqs.spline_knots(curves))
    for curve in range(20):
        for index in range(7):
            expected = _durkan_eq4(float(points[curve, index]), xi[curve], eta[curve],
                                   delta[curve])
            # float64, a regrouping of the same terms: a few ulps of values <= 1
            assert abs(float(values[curve, index]) - expected) < 1e-14


def test_knots_follow_the_poster_k8_and_stay_in_the_unit_square():
    xi, eta, slopes = rqs.spline_knots(_draws(100, 5.0, seed=2))
    assert xi.shape == eta.shape == slopes.shape == (100, 8)
    for knots in (xi, eta):
        assert (knots[:, 0] == 0).all() and (knots[:, -1] == 1).all()
        # each bin at least MIN_BIN wide, up to the float64 rounding of the cumulative sum
        assert knots.diff(dim=-1).min() >= rqs.MIN_BIN * (1 - 1e-12)
    assert slopes.min() >= rqs.MIN_DERIVATIVE


def test_gradcheck_in_float64_through_inputs_and_parameters():
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(4, generator=generator, dtype=torch.float64).requires_grad_()
    curves = (torch.randn((4, rqs.PARAMETERS_PER_CURVE), generator=generator,
                          dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(rqs.rational_quadratic_spline, (x, curves))
    assert torch.autograd.gradcheck(lambda c: rqs.spline_smoothness(rqs.spline_knots(c)[2]),
                                    (curves,))


def test_spline_smoothness_is_the_posters_mean_squared_derivative_step():
    slopes = torch.tensor([[1.0, 2.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    # (1 + 4 + 0) / 3 for the first curve, 0 for the second, averaged: 5/6
    assert float(rqs.spline_smoothness(slopes)) == pytest.approx(5 / 6, rel=1e-7)
    assert float(rqs.spline_smoothness(rqs.spline_knots(
        torch.zeros(3, rqs.PARAMETERS_PER_CURVE))[2])) == 0.0


def test_wrong_parameter_count_names_the_expected_layout():
    with pytest.raises(ValueError, match="8-knot spline takes 22"):
        rqs.rational_quadratic_spline(torch.rand(4), torch.zeros(4, 21))


def test_bt2020_ycbcr_round_trips_and_matches_table_4():
    rgb = torch.rand(1000, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ycbcr = tone_field.rgb_to_ycbcr2020(rgb)
    assert torch.allclose(tone_field.ycbcr2020_to_rgb(ycbcr), rgb, atol=1e-14, rtol=0)
    red = tone_field.rgb_to_ycbcr2020(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    # BT.2020 Table 4: Y' = 0.2627, Cb = -0.2627/1.8814, Cr = (1 - 0.2627)/1.4746 = 0.5
    assert red.tolist() == pytest.approx([0.2627, -0.2627 / 1.8814, 0.5], abs=1e-15)


def test_tone_field_head_starts_as_the_bt2408_placement_and_converts_back_to_rgb(device):
    sdr = torch.rand(2, 6, 5, 3, generator=torch.Generator().manual_seed(7)).to(device)
    head = tone_field.ToneFieldHead(feature_channels=4).to(device)
    features = torch.randn(2, 6, 5, 4, generator=torch.Generator().manual_seed(8)).to(device)
    output = head(sdr, features)
    placed = tone_field.sdr_to_pq_ycbcr(sdr)
    # the spline is exact; the +-0.5 chroma shift around it rounds once each way (float32)
    assert torch.allclose(output.ycbcr, placed, atol=2 * 2.0 ** -24, rtol=0)
    assert torch.allclose(tone_field.rgb_to_ycbcr2020(output.pq_rgb), output.ycbcr,
                          atol=1e-6, rtol=0)
    white = head(torch.ones(1, 1, 1, 3, device=device), features[:1, :1, :1])
    # SDR white -> 203 nits = linear 1.0 (BT.2408), to float32 PQ round-trip precision
    assert torch.allclose(white.linear, torch.ones_like(white.linear), atol=2e-5, rtol=0)
    assert output.derivatives.shape == (2, 6, 5, 3, rqs.KNOTS)


def test_trained_tone_field_output_stays_consistent_in_ycbcr_and_rgb():
    head = tone_field.ToneFieldHead(feature_channels=4).double()
    with torch.no_grad():
        head.projection.weight.normal_(generator=torch.Generator().manual_seed(9))
    sdr = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(10),
                     dtype=torch.float64)
    output = head(sdr, torch.randn(1, 8, 8, 4, dtype=torch.float64))
    assert torch.allclose(tone_field.ycbcr2020_to_rgb(output.ycbcr), output.pq_rgb,
                          atol=1e-14, rtol=0)
    assert not torch.allclose(output.ycbcr, tone_field.sdr_to_pq_ycbcr(sdr), atol=1e-3)


@pytest.mark.parametrize("bad, message", [
    (float("nan"), r"sdr contains NaN or infinity at 1 values; .* finite display code"),
    (1.5, r"sdr has values in \[0, 1.5\], outside \[0, 1\]; .* tone map or clamp"),
    (-0.25, r"sdr has values in \[-0.25, 1\], outside \[0, 1\]"),
])
def test_sdr_outside_0_1_or_nan_is_refused_naming_the_input_and_the_fix(bad, message):
    sdr = torch.linspace(0, 1, 12).reshape(1, 2, 2, 3).clone()
    sdr[0, 0, 0, 1] = bad  # keeps 0 and 1 at the ends
    with pytest.raises(ValueError, match=message):
        tone_field.ToneFieldHead(4)(sdr, torch.zeros(1, 2, 2, 4))


def test_linear_tone_field_starts_at_the_same_identity_and_is_the_affine_map():
    sdr = torch.rand(1, 4, 4, 3, generator=torch.Generator().manual_seed(40))
    features = torch.randn(1, 4, 4, 2, generator=torch.Generator().manual_seed(41))
    linear = tone_field.ToneFieldHead(2, curve="linear")
    monotone = tone_field.ToneFieldHead(2)
    assert torch.equal(linear(sdr, features).ycbcr, monotone(sdr, features).ycbcr)
    torch.manual_seed(42)
    torch.nn.init.normal_(linear.projection.weight, std=0.1)
    output = linear(sdr, features)
    a, b = linear.projection(features).unflatten(-1, (3, 2)).unbind(-1)
    shift = torch.tensor([0.0, 0.5, 0.5])
    expected = (tone_field.sdr_to_pq_ycbcr(sdr) + shift) * (1 + a) + b - shift
    torch.testing.assert_close(output.ycbcr, expected, rtol=0, atol=1e-6)
    # the slope is the derivative at every knot: the spline term of the loss is 0
    assert torch.equal(output.derivatives, (1 + a)[..., None].expand(1, 4, 4, 3, 8))
    with pytest.raises(ValueError, match="curve is 'cubic'; pick one of monotone, linear"):
        tone_field.ToneFieldHead(2, curve="cubic")
