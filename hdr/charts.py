"""Deterministic HDR test charts: a ColorChecker, a stop ramp and a sun, in scene-linear.

Nothing is read from disk and nothing is random: the same arguments give the same pixels,
so a chart is a test input whose every value is known. Values follow the pack's contract:
scene-linear, 18% grey at 0.18, diffuse white at 1.0, the sun far above it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .gamut import Gamut, chromatic_adaptation_matrix, get_gamut, rgb_to_rgb_matrix
from .gamut import xyz_to_rgb_matrix as _xyz_to_rgb_matrix

MID_GREY = 0.18
MIN_SIZE = 64
"""Smallest chart side in pixels: room for 24 patches and a 21-step ramp."""

Box = tuple[int, int, int, int]
"""Pixel rectangle ``(x0, y0, x1, y1)``, half-open: columns x0..x1-1, rows y0..y1-1."""


@dataclass(frozen=True)
class _ColorChecker24:
    """ColorChecker Classic (after November 2014), CIE L*a*b* under ICC D50, 2 degree.

    X-Rite (2016), New color specifications for ColorChecker SG and Classic Charts; the
    data of colour-science's ``'ColorChecker24 - After November 2014'``.
    """

    names: tuple = (
        "dark skin", "light skin", "blue sky", "foliage", "blue flower", "bluish green",
        "orange", "purplish blue", "moderate red", "purple", "yellow green", "orange yellow",
        "blue", "green", "red", "yellow", "magenta", "cyan",
        "white 9.5 (.05 D)", "neutral 8 (.23 D)", "neutral 6.5 (.44 D)", "neutral 5 (.70 D)",
        "neutral 3.5 (1.05 D)", "black 2 (1.5 D)",
    )
    lab: tuple = (
        (37.54, 14.37, 14.92), (64.66, 19.27, 17.5), (49.32, -3.82, -22.54),
        (43.46, -12.74, 22.72), (54.94, 9.61, -24.79), (70.48, -32.26, -0.37),
        (62.73, 35.83, 56.5), (39.43, 10.75, -45.17), (50.57, 48.64, 16.67),
        (30.1, 22.54, -20.87), (71.77, -24.13, 58.19), (71.51, 18.24, 67.37),
        (28.37, 15.42, -49.8), (54.38, -39.72, 32.27), (42.43, 51.05, 28.62),
        (81.8, 2.67, 80.41), (50.63, 51.28, -14.12), (49.57, -29.71, -28.32),
        (95.19, -1.03, 2.93), (81.29, -0.57, 0.44), (66.89, -0.75, -0.06),
        (50.76, -0.13, 0.14), (35.63, -0.46, -0.48), (20.64, 0.07, -0.46),
    )
    white_xyz: tuple = (0.9642, 1.0, 0.8249)
    """ICC.1:2010 section 7.2.16: the PCS illuminant (D50) in XYZ."""


COLORCHECKER_24 = _ColorChecker24()

SKY_REC709 = {"zenith": (0.20, 0.35, 0.80), "horizon": (0.60, 0.70, 0.85)}
"""A clear-sky-ish gradient in scene-linear Rec.709: one to two stops above 18% grey."""


def _lab_to_xyz(lab: np.ndarray, white_xyz: np.ndarray) -> np.ndarray:
    """CIE 15:2004 section 8.2.1, inverted (with CIE's exact epsilon and kappa)."""
    epsilon, kappa = 216 / 24389, 24389 / 27
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    fy = (lightness + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    linear = np.where(f**3 > epsilon, f**3, (116 * f - 16) / kappa)
    linear[:, 1] = np.where(lightness > kappa * epsilon, fy**3, lightness / kappa)
    return linear * white_xyz


@functools.cache
def _colorchecker_rgb(gamut: Gamut) -> np.ndarray:
    white = np.array(COLORCHECKER_24.white_xyz)
    xyz = _lab_to_xyz(np.array(COLORCHECKER_24.lab), white)
    adapt = chromatic_adaptation_matrix(tuple(white[:2] / white.sum()), gamut.white, "bradford")
    rgb = xyz @ (_xyz_to_rgb_matrix(gamut) @ adapt).T
    rgb.flags.writeable = False
    return rgb.reshape(4, 6, 3)


def colorchecker_24(gamut: str | Gamut = "rec709", dtype=torch.float32) -> torch.Tensor:
    """Return the 24 ColorChecker patches as scene-linear RGB, laid out as the chart.

    Parameters
    ----------
    gamut
        Gamut of the result; the D50 measurements are adapted to its white with Bradford.
    dtype
        Torch float dtype of the result.

    Returns
    -------
    Tensor ``[4, 6, 3]``: rows top to bottom, columns left to right as the chart is
    printed; ``[3, 0]`` is white 9.5 (Y ~0.88), ``[3, 3]`` neutral 5 (Y ~0.19).

    References
    ----------
    X-Rite (2016), New color specifications for ColorChecker SG and Classic Charts;
    CIE 15:2004 section 8.2.1 (L*a*b* -> XYZ); Lam (1985) Bradford adaptation.

    >>> colorchecker_24()[3, 3]
    tensor([0.1901, 0.1908, 0.1898])
    """
    return torch.tensor(_colorchecker_rgb(get_gamut(gamut)), dtype=dtype)


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < MIN_SIZE:
            raise ValueError(f"{name} must be an integer >= {MIN_SIZE} pixels, got {value!r}")


def stop_ramp(width: int, height: int, low: int = -10, high: int = 10,
              reference: float = MID_GREY, stepped: bool = True,
              dtype=torch.float32) -> torch.Tensor:
    """Return a neutral horizontal ramp of ``reference * 2**s`` from ``low`` to ``high`` stops.

    Parameters
    ----------
    width, height
        Size in pixels.
    low, high
        Stops at the left and right ends (whole stops when ``stepped``).
    reference
        Scene-linear value of 0 stops; 18% grey by default.
    stepped
        One flat step per whole stop (step ``k`` covers the columns ``c`` with
        ``c * steps // width == k``), or a smooth ramp in stops from edge to edge.

    Returns
    -------
    Tensor ``[height, width, 3]``; every step is exactly ``reference * 2**s`` rounded once
    to ``dtype`` (0.18 * 2**s is an exact power-of-two scaling of 0.18 in float32).

    >>> stop_ramp(21, 1, stepped=True)[0, 10, 0].item() == torch.tensor(0.18).item()
    True
    """
    if not low < high:
        raise ValueError(f"low ({low}) must be below high ({high}) stops")
    if stepped:
        if int(low) != low or int(high) != high:
            raise ValueError(f"stepped ramps need whole stops, got low={low}, high={high}; "
                             "round them or pass stepped=False")
        steps = int(high - low) + 1
        if width < steps:
            raise ValueError(f"width must be >= {steps} pixels for {steps} steps, got {width}")
        stops = low + torch.arange(width, dtype=torch.float64).mul(steps).div(width).floor()
    else:
        stops = torch.linspace(low, high, width, dtype=torch.float64)
    row = (reference * torch.exp2(stops)).to(dtype)
    return row[None, :, None].expand(height, width, 3).clone()


def sun_disk(width: int, height: int, stops: float = 10.0, radius_fraction: float = 0.06,
             center: tuple[float, float] = (0.85, 0.2), softness: float = 0.0,
             gamut: str | Gamut = "rec709", reference: float = MID_GREY,
             dtype=torch.float32) -> torch.Tensor:
    """Return a neutral sun disk of ``reference * 2**stops`` on a sky-ish gradient.

    Parameters
    ----------
    width, height
        Size in pixels.
    stops
        Sun brightness in stops above ``reference`` (10 stops over 0.18 is 184.32).
    radius_fraction
        Disk radius as a fraction of the shorter side.
    center
        Disk centre ``(x, y)`` as fractions of width and height from the top-left.
    softness
        Width of a linear edge blend as a fraction of the radius (0: hard edge); the core
        inside it is exactly the sun value.
    gamut
        Gamut of the result; the sky (:data:`SKY_REC709`) is converted into it.

    Returns
    -------
    Tensor ``[height, width, 3]``.

    >>> sun_disk(64, 64).max().item()
    184.32000732421875
    """
    if not 0 <= softness <= 1:
        raise ValueError(f"softness must be within 0..1 of the radius, got {softness}")
    if not all(0 <= value <= 1 for value in center):
        raise ValueError(f"center must be (x, y) fractions within 0..1, got {center}")
    to_gamut = torch.tensor(rgb_to_rgb_matrix("rec709", gamut), dtype=torch.float64).T
    zenith, horizon = (torch.tensor(SKY_REC709[key], dtype=torch.float64) @ to_gamut
                       for key in ("zenith", "horizon"))
    depth = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    sky = torch.lerp(zenith, horizon, depth[:, None])[:, None, :].expand(height, width, 3)
    rows = torch.arange(height, dtype=torch.float64)[:, None] + 0.5 - center[1] * height
    cols = torch.arange(width, dtype=torch.float64)[None, :] + 0.5 - center[0] * width
    radius = radius_fraction * min(width, height)
    distance = torch.hypot(rows, cols)
    if softness > 0:
        cover = ((radius - distance) / (softness * radius)).clamp(0, 1)
    else:
        cover = (distance <= radius).to(torch.float64)
    if not bool((cover == 1).any()):
        raise ValueError(f"radius_fraction {radius_fraction} covers no pixel centre at "
                         f"{width}x{height}; make it larger")
    sun = reference * 2.0**stops
    blend = torch.lerp(sky, torch.full_like(sky, sun), cover[..., None])
    return torch.where(cover[..., None] == 1, sun, blend).to(dtype)


@dataclass(frozen=True)
class ChartLayout:
    """Where :func:`test_chart` puts things, in pixels (boxes) and fractions (sun)."""

    board: Box
    """The ColorChecker's dark surround."""
    patches: tuple[Box, ...]
    """The 24 patches, row by row as :func:`colorchecker_24` orders them."""
    ramp: Box
    """The stepped -10..+10 stop ramp along the bottom."""
    sun_center: tuple[float, float]
    sun_radius_fraction: float


def chart_layout(width: int = 512, height: int = 288) -> ChartLayout:
    """Return the layout of :func:`test_chart` at ``width`` x ``height`` pixels.

    >>> chart_layout().patches[0]
    (18, 18, 64, 64)
    """
    _check_size(width, height)
    ramp_height = max(8, round(0.15 * height))
    margin = max(2, round(0.03 * min(width, height)))
    board_width, upper = round(0.68 * width), height - ramp_height
    pitch = min((board_width - 2 * margin) // 6, (upper - 2 * margin) // 4)
    gap = max(1, pitch // 6)
    patches = tuple((margin + gap + col * pitch, margin + gap + row * pitch,
                     margin + (col + 1) * pitch, margin + (row + 1) * pitch)
                    for row in range(4) for col in range(6))
    board = (margin, margin, margin + 6 * pitch + gap, margin + 4 * pitch + gap)
    sun_center = ((board_width + width) / 2 / width, 0.3 * upper / height)
    return ChartLayout(board, patches, (0, upper, width, height), sun_center, 0.06)


SURROUND = 0.02
"""Scene-linear grey of the ColorChecker's surround (about -3.2 stops from 18% grey)."""


def test_chart(width: int = 512, height: int = 288, gamut: str | Gamut = "rec709",
               sun_stops: float = 10.0) -> torch.Tensor:
    """Return the HDR test chart: ColorChecker, -10..+10 stop ramp and a sun on a sky.

    Parameters
    ----------
    width, height
        Size in pixels, each at least 64.
    gamut
        Gamut of the scene-linear result.
    sun_stops
        Sun brightness in stops above 18% grey.

    Returns
    -------
    Tensor ``[height, width, 3]`` float32, laid out as :func:`chart_layout` says: the
    ColorChecker top left, the sun top right, and the stepped ramp along the bottom
    with its 0-stop step exactly 0.18.

    >>> chart = test_chart()
    >>> chart.shape, chart.max().item()
    (torch.Size([288, 512, 3]), 184.32000732421875)
    """
    layout = chart_layout(width, height)
    chart = sun_disk(width, height, sun_stops, layout.sun_radius_fraction, layout.sun_center,
                     gamut=gamut)
    x0, y0, x1, y1 = layout.board
    chart[y0:y1, x0:x1] = SURROUND
    for (x0, y0, x1, y1), colour in zip(layout.patches, colorchecker_24(gamut).reshape(24, 3),
                                    strict=True):
        chart[y0:y1, x0:x1] = colour
    x0, y0, x1, y1 = layout.ramp
    chart[y0:y1, x0:x1] = stop_ramp(x1 - x0, y1 - y0)
    return chart


test_chart.__test__ = False  # a chart maker, not a pytest test, whatever its name says
