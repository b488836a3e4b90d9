"""Colour gamuts: primaries, RGB <-> XYZ, chromatic adaptation, luminance and ICtCp.

Every matrix is derived in float64 from the published primaries and white point (the
normalised primary matrix of SMPTE RP 177), never pasted, so the seven gamuts here agree
with each other to the last bit a float64 allows. Conversions between gamuts keep
negative and above-1.0 values: they are scene-linear data, not errors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ._array import array_function, half_in_float32, to_tensor
from .transfer import pq_eotf, pq_inverse_eotf

XY = tuple[float, float]

D65: XY = (0.3127, 0.3290)
"""CIE D65 white as rounded by ITU-R BT.709-6 (item 1.4) and BT.2020-2 (Table 3)."""

ACES_WHITE: XY = (0.32168, 0.33767)
"""ACES white (~D60): SMPTE ST 2065-1:2012 and Academy S-2014-004 (ACEScg)."""


@dataclass(frozen=True)
class Gamut:
    """An additive RGB gamut: CIE 1931 xy of its red, green, blue primaries and white."""

    name: str
    red: XY
    green: XY
    blue: XY
    white: XY
    reference: str


GAMUTS: dict[str, Gamut] = {
    gamut.name: gamut
    for gamut in (
        Gamut("rec709", (0.640, 0.330), (0.300, 0.600), (0.150, 0.060), D65,
              "ITU-R BT.709-6 (2015), items 1.3-1.4 (also sRGB, IEC 61966-2-1)"),
        Gamut("p3d65", (0.680, 0.320), (0.265, 0.690), (0.150, 0.060), D65,
              "SMPTE EG 432-1:2010 P3 primaries with D65 white (Apple Display P3)"),
        Gamut("rec2020", (0.708, 0.292), (0.170, 0.797), (0.131, 0.046), D65,
              "ITU-R BT.2020-2 (2015), Table 3, items 3.3-3.4 (also used by BT.2100)"),
        Gamut("ap0", (0.7347, 0.2653), (0.0, 1.0), (0.0001, -0.0770), ACES_WHITE,
              "SMPTE ST 2065-1:2012, ACES primaries 0 (ACES2065-1, AP0)"),
        Gamut("ap1", (0.713, 0.293), (0.165, 0.830), (0.128, 0.044), ACES_WHITE,
              "Academy S-2014-004 (ACEScg), ACES primaries 1 (AP1)"),
        Gamut("awg3", (0.6840, 0.3130), (0.2210, 0.8480), (0.0861, -0.1020), D65,
              "ARRI (2017), ALEXA Log C Curve - Usage in VFX (ARRI Wide Gamut 3)"),
        Gamut("awg4", (0.7347, 0.2653), (0.1424, 0.8576), (0.0991, -0.0308), D65,
              "ARRI (2022), ARRI LogC4 Logarithmic Color Space Specification "
              "(ARRI Wide Gamut 4)"),
    )
}
"""The gamuts this pack knows, keyed by short name."""

GAMUT_ALIASES: dict[str, str] = {
    "srgb": "rec709", "linear rec.709 (srgb)": "rec709", "lin_rec709_srgb": "rec709",
    "lin_rec709": "rec709", "lin_srgb": "rec709",
    "display p3": "p3d65", "linear p3-d65": "p3d65", "lin_p3d65": "p3d65",
    "lin_displayp3": "p3d65",
    "linear rec.2020": "rec2020", "lin_rec2020": "rec2020",
    "aces2065-1": "ap0", "lin_ap0": "ap0",
    "acescg": "ap1", "lin_ap1": "ap1",
    "linear arri wide gamut 3": "awg3", "lin_arri_wide_gamut_3": "awg3",
    "lin_alexawide": "awg3",
    "linear arri wide gamut 4": "awg4", "lin_arri_wide_gamut_4": "awg4", "lin_awg4": "awg4",
}
"""Other names for the gamuts (matched case-insensitively): OCIO studio-config colourspace
names and aliases of the scene-linear spaces, so a colourspace widget value resolves."""


SCENE_LINEAR_COLOURSPACES: dict[str, str] = {
    "rec709": "Linear Rec.709 (sRGB)", "p3d65": "Linear P3-D65", "rec2020": "Linear Rec.2020",
    "ap0": "ACES2065-1", "ap1": "ACEScg", "awg3": "Linear ARRI Wide Gamut 3",
    "awg4": "Linear ARRI Wide Gamut 4",
}
"""The OCIO (ACES studio config) name of the scene-linear colourspace of each gamut."""

CHROMATICITY_TOLERANCE = 1e-3
"""How far (in CIE xy) a file's chromaticities may be from a gamut's and still name it:
covers float32 storage and the 4- vs 5-digit D65 some writers use (0.3127, 0.329 vs 0.31271,
0.32902); the closest two gamuts here differ by 0.04."""


def match_chromaticities(chromaticities, tolerance: float = CHROMATICITY_TOLERANCE
                         ) -> Gamut | None:
    """The gamut whose red, green, blue and white xy are ``chromaticities`` (8 numbers, as
    OpenEXR's ``chromaticities`` attribute stores them), or None.

    >>> match_chromaticities((0.708, 0.292, 0.17, 0.797, 0.131, 0.046, 0.3127, 0.329)).name
    'rec2020'
    """
    try:
        values = np.asarray(chromaticities, dtype=np.float64).ravel()
    except (TypeError, ValueError):  # a file may hold any type under this name
        return None
    if values.shape != (8,) or not np.isfinite(values).all():
        return None
    for gamut in GAMUTS.values():
        expected = np.array([*gamut.red, *gamut.green, *gamut.blue, *gamut.white])
        if np.abs(values - expected).max() <= tolerance:
            return gamut
    return None


@dataclass(frozen=True)
class _ConeResponses:
    """XYZ -> cone-like responses of the von Kries chromatic adaptation transforms."""

    bradford: tuple = ((0.8951, 0.2664, -0.1614),
                       (-0.7502, 1.7135, 0.0367),
                       (0.0389, -0.0685, 1.0296))
    """Lam (1985), Metamerism and colour constancy; ICC.1:2010 Annex E.3."""
    cat02: tuple = ((0.7328, 0.4296, -0.1624),
                    (-0.7036, 1.6975, 0.0061),
                    (0.0030, 0.0136, 0.9834))
    """CIE 159:2004, A colour appearance model for colour management systems: CIECAM02."""


CONE_RESPONSES = _ConeResponses()


@dataclass(frozen=True)
class _ICtCpMatrices:
    """ITU-R BT.2100-2 (2018), derivation of ICtCp (PQ variant), in 1/4096ths."""

    rgb2020_to_lms: tuple = ((1688, 2146, 262), (683, 2951, 462), (99, 309, 3688))
    lms_pq_to_ictcp: tuple = ((2048, 2048, 0), (6610, -13613, 7003), (17933, -17390, -543))


ICTCP = _ICtCpMatrices()


def get_gamut(name: str | Gamut) -> Gamut:
    """Return the :class:`Gamut` called ``name`` (a short name, OCIO name or alias).

    >>> get_gamut("ACEScg").name
    'ap1'
    """
    if isinstance(name, Gamut):
        return name
    key = str(name).strip().lower()
    key = GAMUT_ALIASES.get(key, key)
    if key not in GAMUTS:
        valid = ", ".join(list(GAMUTS) + sorted(GAMUT_ALIASES))
        raise ValueError(f"gamut {name!r} is unknown; use one of: {valid}")
    return GAMUTS[key]


def _xy_to_xyz(xy: XY) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


@functools.cache
def _npm(gamut: Gamut) -> np.ndarray:
    primaries = np.array([[x, y, 1.0 - x - y] for x, y in (gamut.red, gamut.green, gamut.blue)]).T
    scale = np.linalg.inv(primaries) @ _xy_to_xyz(gamut.white)
    return primaries * scale


def rgb_to_xyz_matrix(gamut: str | Gamut) -> np.ndarray:
    """Return the normalised primary matrix: linear RGB -> CIE XYZ (Y = 1 at white).

    Parameters
    ----------
    gamut
        Gamut or its name.

    Returns
    -------
    float64 array (3, 3); its columns are the primaries' XYZ scaled so RGB (1, 1, 1)
    maps to the white point with Y = 1.

    References
    ----------
    SMPTE RP 177:1993, Derivation of Basic Television Color Equations.

    >>> rgb_to_xyz_matrix("rec709")[1].round(4)
    array([0.2126, 0.7152, 0.0722])
    """
    return _npm(get_gamut(gamut)).copy()


def xyz_to_rgb_matrix(gamut: str | Gamut) -> np.ndarray:
    """Return the inverse of :func:`rgb_to_xyz_matrix`: CIE XYZ -> linear RGB (float64).

    >>> xyz_to_rgb_matrix("rec709")[0].round(4)
    array([ 3.241 , -1.5374, -0.4986])
    """
    return np.linalg.inv(_npm(get_gamut(gamut)))


def chromatic_adaptation_matrix(src_white: XY, dst_white: XY,
                                adaptation: str = "bradford") -> np.ndarray:
    """Return the von Kries XYZ -> XYZ matrix adapting ``src_white`` to ``dst_white``.

    Parameters
    ----------
    src_white, dst_white
        CIE 1931 xy of the source and destination white points.
    adaptation
        Cone response space: ``'bradford'`` or ``'cat02'``.

    Returns
    -------
    float64 array (3, 3): ``M^-1 diag(LMS_dst / LMS_src) M``.

    References
    ----------
    Fairchild, Color Appearance Models, 3rd ed. (2013), chapter 9 (von Kries models).

    >>> chromatic_adaptation_matrix(D65, ACES_WHITE)[0].round(4)
    array([ 1.013 ,  0.0061, -0.015 ])
    """
    name = str(adaptation).lower()
    if name not in ("bradford", "cat02"):
        raise ValueError(
            f"adaptation {adaptation!r} is unknown; use 'bradford', 'cat02' or None")
    cones = np.array(getattr(CONE_RESPONSES, name))
    gain = (cones @ _xy_to_xyz(dst_white)) / (cones @ _xy_to_xyz(src_white))
    return np.linalg.inv(cones) @ (gain[:, None] * cones)


@functools.cache
def _rgb_to_rgb(src: Gamut, dst: Gamut, adaptation: str | None) -> tuple:
    matrix = _npm(src)
    if adaptation is not None:
        matrix = chromatic_adaptation_matrix(src.white, dst.white, adaptation) @ matrix
    return tuple(map(tuple, np.linalg.inv(_npm(dst)) @ matrix))


def rgb_to_rgb_matrix(src: str | Gamut, dst: str | Gamut,
                      adaptation: str | None = "bradford") -> np.ndarray:
    """Return the linear RGB -> linear RGB matrix from gamut ``src`` to gamut ``dst``.

    Parameters
    ----------
    src, dst
        Gamuts or their names.
    adaptation
        ``'bradford'``, ``'cat02'`` or None (no white point adaptation: XYZ is kept,
        so the source white comes out tinted in a destination with another white).

    Returns
    -------
    float64 array (3, 3), applied as ``rgb_dst = M @ rgb_src``.

    >>> rgb_to_rgb_matrix("rec709", "rec2020")[0].round(4)
    array([0.6274, 0.3293, 0.0433])
    """
    key = None if adaptation is None else str(adaptation).lower()
    return np.array(_rgb_to_rgb(get_gamut(src), get_gamut(dst), key))


def _check_rgb(rgb: torch.Tensor, argument: str) -> None:
    if rgb.ndim == 0 or rgb.shape[-1] != 3:
        raise ValueError(f"{argument} must have 3 channels on its last axis, got shape "
                         f"{tuple(rgb.shape)}; pass image[..., :3] to drop alpha")


def _apply(rgb: torch.Tensor, matrix) -> torch.Tensor:
    """``matrix @ rgb`` per pixel, the float64 matrix cast once to the input's dtype."""
    return rgb @ torch.tensor(matrix, dtype=rgb.dtype, device=rgb.device).T


@array_function
def convert_gamut(rgb, src: str | Gamut, dst: str | Gamut,
                  adaptation: str | None = "bradford"):
    """Convert linear RGB from gamut ``src`` to gamut ``dst`` (no clamping).

    Parameters
    ----------
    rgb
        Linear RGB, channels on the last axis (e.g. an IMAGE ``[B, H, W, 3]``).
    src, dst
        Gamuts or their names (``'rec709'``, ``'ACEScg'``, ``'Linear Rec.2020'``...).
    adaptation
        ``'bradford'`` (default), ``'cat02'`` or None; see :func:`rgb_to_rgb_matrix`.

    Returns
    -------
    Linear RGB in ``dst``, same dtype; out-of-gamut colours come out negative.

    >>> convert_gamut([1.0, 0.0, 0.0], "rec709", "rec2020").round(4)
    array([0.6274, 0.0691, 0.0164])
    """
    _check_rgb(rgb, "rgb")
    return _apply(rgb, rgb_to_rgb_matrix(src, dst, adaptation))


def luminance_weights(gamut: str | Gamut = "rec709") -> np.ndarray:
    """Return the luminance weights of ``gamut``: the Y row of its primary matrix.

    >>> luminance_weights("rec2020").round(4)
    array([0.2627, 0.678 , 0.0593])
    """
    return rgb_to_xyz_matrix(gamut)[1]


@array_function
def luminance(rgb, gamut: str | Gamut = "rec709"):
    """Return the relative luminance Y of linear RGB (scene-linear in, same scale out).

    Parameters
    ----------
    rgb
        Linear RGB, channels on the last axis.
    gamut
        The gamut ``rgb`` is in.

    Returns
    -------
    Y with the last axis removed; diffuse white (1, 1, 1) gives 1.0.

    References
    ----------
    SMPTE RP 177:1993 (the second row of the normalised primary matrix).

    >>> round(float(luminance([0.18, 0.18, 0.18])), 6)
    0.18
    """
    _check_rgb(rgb, "rgb")
    weights = torch.tensor(luminance_weights(gamut), dtype=rgb.dtype, device=rgb.device)
    return rgb @ weights


def _ictcp_matrix(name: str, inverse: bool = False) -> tuple:
    matrix = np.array(getattr(ICTCP, name)) / 4096
    return tuple(map(tuple, np.linalg.inv(matrix) if inverse else matrix))


def _check_nits(nits_at_1: float) -> None:
    if not nits_at_1 > 0:
        raise ValueError(f"nits_at_1 must be > 0 cd/m^2, got {nits_at_1}; use 100 for "
                         "scene-linear with diffuse white at 100 nits, 1 for absolute nits")


@array_function
@half_in_float32
def rgb2020_to_ictcp(rgb, nits_at_1: float = 100.0):
    """Convert linear Rec.2020 RGB to ICtCp (BT.2100 PQ variant).

    bfloat16/float16 inputs are computed in float32 (the LMS matrices' cancelling rows and
    absolute nits need it) and returned in their own dtype.

    Parameters
    ----------
    rgb
        Linear Rec.2020 RGB, channels on the last axis. Scene-linear by default: 1.0 is
        diffuse white, shown at ``nits_at_1`` cd/m^2.
    nits_at_1
        Display luminance of 1.0 in cd/m^2. ``nits_at_1=1`` reads ``rgb`` as absolute
        display light in nits, the BT.2100 definition (and colour-science's
        ``RGB_to_ICtCp(RGB, method='ITU-R BT.2100-2 PQ')``); the default 100 equals that
        applied to ``rgb * 100``.

    Returns
    -------
    ICtCp: I (intensity, 0..1 PQ), Ct (blue-yellow) and Cp (red-green).

    References
    ----------
    ITU-R BT.2100-2 (2018), derivation of ICtCp; SMPTE ST 2084:2014 for the PQ step. Negative LMS
    (colours outside the LMS cone) go through PQ's odd extension.

    >>> rgb2020_to_ictcp([1.0, 1.0, 1.0]).round(4)
    array([0.5081, 0.    , 0.    ])
    """
    _check_rgb(rgb, "rgb")
    _check_nits(nits_at_1)
    lms = _apply(rgb * nits_at_1, _ictcp_matrix("rgb2020_to_lms"))
    return _apply(pq_inverse_eotf(lms), _ictcp_matrix("lms_pq_to_ictcp"))


@array_function
@half_in_float32
def ictcp_to_rgb2020(ictcp, nits_at_1: float = 100.0):
    """Convert ICtCp (BT.2100 PQ variant) back to linear Rec.2020 RGB.

    bfloat16/float16 inputs are computed in float32 and returned in their own dtype.

    Parameters
    ----------
    ictcp
        ICtCp, channels on the last axis.
    nits_at_1
        Display luminance of 1.0 in cd/m^2; see :func:`rgb2020_to_ictcp`.

    Returns
    -------
    Linear Rec.2020 RGB (scene-linear, 1.0 = ``nits_at_1`` cd/m^2).

    References
    ----------
    ITU-R BT.2100-2 (2018), derivation of ICtCp (inverted); SMPTE ST 2084:2014 EOTF.

    >>> ictcp_to_rgb2020([0.50808, 0.0, 0.0]).round(3)
    array([1., 1., 1.])
    """
    _check_rgb(ictcp, "ictcp")
    _check_nits(nits_at_1)
    lms_pq = _apply(ictcp, _ictcp_matrix("lms_pq_to_ictcp", inverse=True))
    return _apply(pq_eotf(lms_pq), _ictcp_matrix("rgb2020_to_lms", inverse=True)) / nits_at_1


@array_function
def delta_e_itp(ictcp_a, ictcp_b):
    """Return the colour difference Delta E ITP between two ICtCp arrays.

    Parameters
    ----------
    ictcp_a, ictcp_b
        ICtCp (from :func:`rgb2020_to_ictcp`), channels on the last axis.

    Returns
    -------
    ``720 * sqrt(dI^2 + dT^2 + dP^2)`` with T = Ct / 2 and P = Cp; 1.0 is about one
    just-noticeable difference.

    References
    ----------
    ITU-R BT.2124-0 (2019), Objective metric for the assessment of the potential
    visibility of colour differences in television.

    >>> round(float(delta_e_itp([0.4885468072, -0.04739350675, 0.07475401302],
    ...                         [0.4899203231, -0.04567508203, 0.07361341775])), 6)
    1.426572
    """
    other = to_tensor(ictcp_b).to(dtype=ictcp_a.dtype, device=ictcp_a.device)
    _check_rgb(ictcp_a, "ictcp_a")
    _check_rgb(other, "ictcp_b")
    scale = torch.tensor([1.0, 0.5, 1.0], dtype=ictcp_a.dtype, device=ictcp_a.device)
    return 720 * ((ictcp_a - other) * scale).square().sum(-1).sqrt()
