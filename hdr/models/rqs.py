"""Monotone rational-quadratic splines (RQS): LumaFlux's per-pixel tone-field curve.

A spline with ``K`` knots maps ``[0, 1]`` onto ``[0, 1]`` through ``K - 1`` bins; each bin
is the ratio of two quadratics fixed by the knot positions ``xi``, the knot heights ``eta``
and the derivatives ``s`` at the knots (Durkan et al. 2019, eq. 4). Widths and heights
come from a softmax and the derivatives from a softplus of unconstrained parameters, so
every parameter draw gives a strictly increasing curve: monotone by construction, which is
what keeps an inverse tone map from folding highlights back onto shadows.

The last axis of a parameter tensor holds ``K - 1`` width logits, ``K - 1`` height logits
and ``K`` derivative parameters (:data:`PARAMETERS_PER_CURVE` for the poster's ``K = 8``).
bfloat16 and float16 inputs are computed in float32 (softmax and the bin ratio need its
precision) and rounded once. All zeros is the identity curve, *exactly* (bit for bit):
the widths and heights are equal, so every bin's slope is 1 and the bin formula, written
as below, reduces to ``x_k + (x - x_k)``, which float arithmetic returns exactly.

References
----------
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios (2019), Neural Spline Flows, NeurIPS,
section 3.1 and eq. 4 (the bin formula) and Appendix A (its derivative); nflows'
``rational_quadratic_spline`` (the softmax/softplus parametrisation and minimum bin
sizes). LumaFlux poster: the tone-field head's ``K = 8`` knots ``(xi, eta, s)`` and the
smoothness term ``L_spline``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._array import half_in_float32

KNOTS = 8
"""LumaFlux poster: the tone-field spline has K = 8 knots (xi, eta, s)."""

PARAMETERS_PER_CURVE = 3 * KNOTS - 2
"""``K - 1`` width logits, ``K - 1`` height logits and ``K`` derivative parameters."""

MIN_BIN = 2.0 ** -10
"""Smallest bin width and height, as a share of the unit interval: nflows' default 1e-3,
rounded to a power of two so that the identity parameters give bins of exactly ``1/(K-1)``
of the same float value in width and height (what makes the identity exact)."""

MIN_DERIVATIVE = 2.0 ** -10
"""Smallest knot derivative: nflows' default 1e-3 rounded to a power of two, so that the
identity derivative ``MIN_DERIVATIVE + (1 - MIN_DERIVATIVE) * 1`` is exactly 1."""


def _check_parameters(parameters: torch.Tensor, knots: int) -> None:
    if not isinstance(parameters, torch.Tensor) or not parameters.is_floating_point():
        raise ValueError("parameters must be a floating-point tensor; pass the tone-field "
                         "head's output")
    if knots < 2:
        raise ValueError(f"knots is {knots}; a spline needs at least 2 knots (the poster "
                         f"uses {KNOTS})")
    if parameters.shape[-1:] != (3 * knots - 2,):
        raise ValueError(f"parameters have {tuple(parameters.shape[-1:])} values on the last "
                         f"axis; a {knots}-knot spline takes {3 * knots - 2} ({knots - 1} "
                         f"widths, {knots - 1} heights, {knots} derivatives)")


def _knot_positions(logits: torch.Tensor) -> torch.Tensor:
    bins = logits.shape[-1]
    sizes = MIN_BIN + (1 - MIN_BIN * bins) * torch.softmax(logits, dim=-1)
    positions = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    # nflows pins the ends so rounding in the sum cannot move the domain.
    return torch.cat([torch.zeros_like(positions[..., :1]), positions[..., 1:-1],
                      torch.ones_like(positions[..., :1])], dim=-1)


@half_in_float32
def spline_knots(parameters: torch.Tensor, knots: int = KNOTS
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn unconstrained parameters into the knots ``(xi, eta, s)`` of a monotone spline.

    Parameters
    ----------
    parameters
        ``[..., 3 * knots - 2]``: width logits, height logits, derivative parameters.
    knots
        Number of knots ``K`` (poster: 8).

    Returns
    -------
    ``xi`` (positions) and ``eta`` (heights), each ``[..., K]`` strictly increasing from
    exactly 0 to exactly 1, and ``s`` (derivatives) ``[..., K]``, each at least
    :data:`MIN_DERIVATIVE`; all zeros gives the identity (``xi == eta``, ``s == 1``).

    References
    ----------
    Durkan et al. (2019), Neural Spline Flows, section 3.1.

    >>> xi, eta, s = spline_knots(torch.zeros(3 * KNOTS - 2))
    >>> bool((xi == eta).all()), s.tolist() == [1.0] * KNOTS
    (True, True)
    """
    _check_parameters(parameters, knots)
    widths, heights, derivatives = parameters.split((knots - 1, knots - 1, knots), dim=-1)
    softplus_zero = F.softplus(torch.zeros_like(derivatives[..., :1]))
    slopes = MIN_DERIVATIVE + (1 - MIN_DERIVATIVE) * (F.softplus(derivatives) / softplus_zero)
    return _knot_positions(widths), _knot_positions(heights), slopes


@half_in_float32
def rational_quadratic_spline(x: torch.Tensor, parameters: torch.Tensor,
                              knots: int = KNOTS) -> torch.Tensor:
    """Apply the monotone rational-quadratic spline of ``parameters`` to ``x`` in ``[0, 1]``.

    Parameters
    ----------
    x
        Values in ``[0, 1]`` (a few ulps outside extend the end bins' formula).
    parameters
        ``[..., 3 * knots - 2]``, broadcastable against ``x`` (one curve per value, per
        pixel, or one for all).
    knots
        Number of knots ``K`` (poster: 8).

    Returns
    -------
    The spline of ``x``, strictly increasing in ``x``, ``x``'s dtype; 0 -> 0 exactly and
    1 -> 1 up to a few ulps.

    References
    ----------
    Durkan et al. (2019), Neural Spline Flows, eq. 4, with ``s_k = (eta_{k+1} - eta_k) /
    (xi_{k+1} - xi_k)`` the bin's slope, ``delta`` the knot derivatives and ``theta`` the
    position in the bin::

        g = eta_k + (x - xi_k) s_k (delta_k + (s_k - delta_k) theta)
                    / (s_k + (delta_{k+1} + delta_k - 2 s_k) theta (1 - theta))

    (the numerator ``h [s theta^2 + delta theta (1 - theta)]`` of eq. 4 regrouped, with
    ``h theta = (x - xi_k) s_k``), which is exact at the identity.

    >>> curve = torch.zeros(3 * KNOTS - 2)
    >>> rational_quadratic_spline(torch.tensor([0.0, 0.3, 1.0]), curve).tolist()
    [0.0, 0.30000001192092896, 1.0]
    """
    rank = max(x.ndim, parameters.ndim - 1)
    x = x.reshape((1,) * (rank - x.ndim) + x.shape)
    parameters = parameters.reshape((1,) * (rank + 1 - parameters.ndim) + parameters.shape)
    xi, eta, derivative = spline_knots(parameters, knots)
    inner = xi[..., 1:-1]
    index = (x.unsqueeze(-1) >= inner).sum(dim=-1, keepdim=True)

    def at(values: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return torch.take_along_dim(values, index + offset, dim=-1).squeeze(-1)

    left, right = at(xi), at(xi, 1)
    bottom, top = at(eta), at(eta, 1)
    slope = (top - bottom) / (right - left)
    delta_left, delta_right = at(derivative), at(derivative, 1)
    offset = x - left
    theta = offset / (right - left)
    curvature = theta * (1 - theta)
    numerator = offset * slope * (delta_left + (slope - delta_left) * theta)
    denominator = slope + (delta_right + delta_left - 2 * slope) * curvature
    return bottom + numerator / denominator


@half_in_float32
def spline_smoothness(derivatives: torch.Tensor) -> torch.Tensor:
    """LumaFlux's spline regulariser ``L_spline = 1/(K-1) sum_k (s_{k+1} - s_k)^2``.

    Parameters
    ----------
    derivatives
        Knot derivatives ``s`` (``[..., K]``, from :func:`spline_knots`).

    Returns
    -------
    A scalar: the sum over each curve's ``K - 1`` neighbouring derivative differences
    squared, divided by ``K - 1``, averaged over all curves; 0 for the identity.

    References
    ----------
    LumaFlux poster, training loss (weight 0.01 on ``L_spline``).

    >>> float(spline_smoothness(torch.tensor([1.0, 1.0, 3.0])))
    2.0
    """
    if derivatives.shape[-1] < 2:
        raise ValueError(f"derivatives have {derivatives.shape[-1]} knots on the last axis; "
                         "pass the K >= 2 derivatives s from spline_knots")
    steps = torch.diff(derivatives, dim=-1)
    return steps.square().sum(dim=-1).div(derivatives.shape[-1] - 1).mean()
