"""HDR image and video quality: PU21-PSNR/SSIM, Delta E ITP, PQ-PSNR, JOD, flicker, peak.

Every metric takes scene-linear RGB (Rec.709 primaries, or BT.2020 with
``gamut="rec2020"``, as LumaFlux's predictions are), channels last (``[H, W, 3]`` for an image,
``[T, H, W, 3]`` for a clip; torch or numpy), and ``nits_at_1``, the display luminance
of scene-linear 1.0 (100 nits by default: the SDR diffuse white PU21 is anchored to).
Metrics that compare two images take the test (a prediction) first and the reference
(the ground truth) second, as pycvvdp does, and return a Python float.

PU21 metrics follow Mantiuk & Azimi (2021) as implemented in pycvvdp (``pu_psnr_y``,
``pu_psnr_rgb2020``): absolute light is clipped to PU21's 0.005..10000 nits (what a
display can emit), PU21-encoded, and compared with the PU21 value of 100 nits (256.38)
as the peak signal; a clip's PSNR pools the squared error of all its frames.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._array import to_tensor
from .gamut import convert_gamut, delta_e_itp, luminance, rgb2020_to_ictcp
from .transfer import PU21, pq_inverse_eotf, pu21_encode

__all__ = [
    "GAMUTS",
    "SSIM_WINDOW",
    "cvvdp_jod",
    "delta_e_itp_mean",
    "dynamic_range_stops",
    "flicker",
    "frame_to_frame_psnr",
    "hdr_metrics",
    "peak_luminance",
    "pq_psnr",
    "pu21_psnr",
    "pu21_ssim",
]

SSIM_WINDOW = (11, 1.5, 0.01, 0.03)
"""SSIM's Gaussian window size and sigma and its constants K1, K2 (Wang et al. 2004,
section III-C; pycvvdp's ``third_party/ssim.py``)."""


def _check_nits(nits_at_1: float) -> None:
    if not nits_at_1 > 0:
        raise ValueError(f"nits_at_1 must be > 0 cd/m^2, got {nits_at_1}; use 100 for "
                         "scene-linear with diffuse white at 100 nits")


def _rgb(image: Any, name: str) -> torch.Tensor:
    """``image`` as a float64 ``[T, H, W, 3]`` tensor (an image is a one-frame clip)."""
    tensor = to_tensor(image).detach().to(dtype=torch.float64)
    if tensor.ndim not in (3, 4) or tensor.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB [H, W, 3] or a clip [T, H, W, 3], got shape "
                         f"{tuple(tensor.shape)}; drop alpha with image[..., :3]")
    if not tensor.isfinite().all():
        raise ValueError(f"{name} holds NaN or Inf values; replace them before measuring")
    return tensor if tensor.ndim == 4 else tensor[None]


def _pair(test: Any, reference: Any) -> tuple[torch.Tensor, torch.Tensor]:
    test, reference = _rgb(test, "test"), _rgb(reference, "reference")
    if test.shape != reference.shape:
        raise ValueError(f"test {tuple(test.shape)} and reference {tuple(reference.shape)} "
                         "must have the same shape; crop or resize one of them")
    return test, reference


GAMUTS = ("rec709", "rec2020")
"""The primaries the metrics take: ITU-R BT.709 (the pack's working gamut) and BT.2020."""


def _check_gamut(gamut: str) -> None:
    if gamut not in GAMUTS:
        raise ValueError(f"gamut is {gamut!r}; pass 'rec709' (scene-linear Rec.709) or "
                         "'rec2020' (linear BT.2020, e.g. LumaFlux predictions)")


def _rec2020(rgb: torch.Tensor, gamut: str) -> torch.Tensor:
    _check_gamut(gamut)
    return rgb if gamut == "rec2020" else convert_gamut(rgb, gamut, "rec2020")


def _display_nits(rgb: torch.Tensor, nits_at_1: float) -> torch.Tensor:
    _check_nits(nits_at_1)
    return (rgb * nits_at_1).clamp(PU21.min_nits, PU21.max_nits)


def _pu21(rgb: torch.Tensor, nits_at_1: float, colour: str,
          gamut: str = "rec709") -> torch.Tensor:
    _check_gamut(gamut)
    nits = _display_nits(rgb, nits_at_1)
    if colour == "luminance":
        return pu21_encode(luminance(nits, gamut))[..., None]
    if colour == "rgb2020":
        return pu21_encode(_rec2020(nits, gamut))
    raise ValueError(f"colour must be 'luminance' or 'rgb2020', got {colour!r}")


def _psnr(mse: torch.Tensor, peak: float) -> float:
    return math.inf if float(mse) == 0 else float(20 * torch.log10(peak / mse.sqrt()))


def _pu21_peak(peak_nits: float) -> float:
    return float(pu21_encode(float(peak_nits)))  # a Python float: computed in float64


def pu21_psnr(test, reference, nits_at_1: float = 100.0, peak_nits: float = 100.0,
              colour: str = "luminance", gamut: str = "rec709") -> float:
    """Return the PSNR of PU21-encoded light, in dB.

    Parameters
    ----------
    test, reference
        Scene-linear Rec.709 images ``[H, W, 3]`` or clips ``[T, H, W, 3]``.
    nits_at_1
        Display luminance of scene-linear 1.0 in cd/m^2.
    peak_nits
        Luminance whose PU21 value is the peak signal: 100 nits (PU21 = 256.38), as
        pycvvdp and the PU21 reference code (which rounds it to 256) use.
    colour
        ``'luminance'``: PU21 of the luminance (pycvvdp's PU21-PSNR-Y); ``'rgb2020'``: of
        each Rec.2020 channel (pycvvdp's PU21-PSNR-RGB2020).
    gamut
        Primaries of the inputs: ``'rec709'`` or ``'rec2020'`` (:data:`GAMUTS`).

    Returns
    -------
    PSNR in dB (``inf`` for identical inputs).

    References
    ----------
    Mantiuk, R. K. & Azimi, M. (2021), "PU21: A novel perceptually uniform encoding for
    adapting existing quality metrics for HDR", Picture Coding Symposium, section 4;
    pycvvdp 0.5, ``psnr_metric.py``.

    >>> grey = np.full((4, 4, 3), 0.18)
    >>> round(pu21_psnr(grey * 1.1, grey), 3)
    33.895
    """
    test, reference = _pair(test, reference)
    error = (_pu21(test, nits_at_1, colour, gamut)
             - _pu21(reference, nits_at_1, colour, gamut))
    return _psnr(error.square().mean(), _pu21_peak(peak_nits))


def _gaussian_window(like: torch.Tensor) -> torch.Tensor:
    size, sigma = SSIM_WINDOW[:2]
    offsets = torch.arange(size, dtype=like.dtype, device=like.device) - size // 2
    window = torch.exp(-offsets.square() / (2 * sigma**2))
    return window / window.sum()


def _filter(planes: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of ``[N, 1, H, W]`` planes."""
    planes = F.conv2d(planes, window.view(1, 1, -1, 1))
    return F.conv2d(planes, window.view(1, 1, 1, -1))


def pu21_ssim(test, reference, nits_at_1: float = 100.0, peak_nits: float = 100.0,
              gamut: str = "rec709") -> float:
    """Return the SSIM of PU21-encoded luminance (a clip: the mean over its frames).

    SSIM as Wang et al. define it: an 11-tap Gaussian window (sigma 1.5) over the valid
    region only, K1 = 0.01 and K2 = 0.03 of the dynamic range, here the PU21 value of
    ``peak_nits``. Images must be at least 11 x 11 pixels.

    Parameters
    ----------
    test, reference
        Scene-linear Rec.709 images ``[H, W, 3]`` or clips ``[T, H, W, 3]``.
    nits_at_1
        Display luminance of scene-linear 1.0 in cd/m^2.
    peak_nits
        Luminance whose PU21 value is the dynamic range (100 nits: 256.38).
    gamut
        Primaries of the inputs (:data:`GAMUTS`): they set the luminance weights.

    Returns
    -------
    SSIM, 1.0 for identical inputs.

    References
    ----------
    Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from error
    visibility to structural similarity", IEEE TIP 13(4), equation 13; Mantiuk & Azimi
    (2021), section 4 (SSIM on PU21-encoded luminance).

    >>> grey = np.full((11, 11, 3), 0.18)
    >>> round(pu21_ssim(grey * 1.1, grey), 6)
    0.999454
    """
    test, reference = _pair(test, reference)
    if min(test.shape[1:3]) < SSIM_WINDOW[0]:
        raise ValueError(f"pu21_ssim needs images of at least {SSIM_WINDOW[0]} x "
                         f"{SSIM_WINDOW[0]} pixels, got {tuple(test.shape[1:3])}; use "
                         "pu21_psnr for smaller images")
    x = _pu21(test, nits_at_1, "luminance", gamut).movedim(-1, 1)
    y = _pu21(reference, nits_at_1, "luminance", gamut).movedim(-1, 1)
    window = _gaussian_window(x)
    dynamic_range = _pu21_peak(peak_nits)
    c1 = (SSIM_WINDOW[2] * dynamic_range) ** 2
    c2 = (SSIM_WINDOW[3] * dynamic_range) ** 2
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x.square()
    var_y = _filter(y * y, window) - mu_y.square()
    covariance = _filter(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)
                / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)))
    return float(ssim_map.flatten(1).mean(1).mean())


def _ictcp(rgb: torch.Tensor, nits_at_1: float, gamut: str) -> torch.Tensor:
    return rgb2020_to_ictcp(_rec2020(rgb, gamut), nits_at_1)


def delta_e_itp_mean(test, reference, nits_at_1: float = 100.0,
                     gamut: str = "rec709") -> float:
    """Return the mean Delta E ITP between two scene-linear images or clips.

    Each pixel goes from ``gamut`` (:data:`GAMUTS`) to Rec.2020 and ICtCp (BT.2100 PQ)
    with 1.0 at ``nits_at_1``; 1.0 is about one just-noticeable difference.

    References
    ----------
    ITU-R BT.2124-0 (2019), section 2; ITU-R BT.2100-2 (2018), ICtCp.

    >>> grey = np.full((2, 2, 3), 0.18)
    >>> round(delta_e_itp_mean(grey * 1.1, grey), 4)
    5.8881
    """
    test, reference = _pair(test, reference)
    _check_nits(nits_at_1)
    return float(delta_e_itp(_ictcp(test, nits_at_1, gamut),
                             _ictcp(reference, nits_at_1, gamut)).mean())


def pq_psnr(test, reference, nits_at_1: float = 100.0, gamut: str = "rec709") -> float:
    """Return the PSNR of Rec.2020 PQ code values (peak signal 1.0), in dB.

    Scene-linear ``gamut`` (:data:`GAMUTS`) goes to Rec.2020 at ``nits_at_1`` nits per
    1.0, is clipped to 0..10000 nits and PQ-encoded (BT.2100 PQ code values, 0..1); the
    squared error is pooled over channels and frames.

    References
    ----------
    SMPTE ST 2084:2014, inverse EOTF; ITU-R BT.2100-2 (2018), Table 4 (PQ signal).

    >>> grey = np.full((2, 2, 3), 0.18)
    >>> round(pq_psnr(grey * 1.1, grey), 3)
    41.747
    """
    test, reference = _pair(test, reference)
    _check_nits(nits_at_1)

    def code(rgb: torch.Tensor) -> torch.Tensor:
        nits = _rec2020(rgb, gamut) * nits_at_1
        return pq_inverse_eotf(nits.clamp(0.0, PU21.max_nits))

    return _psnr((code(test) - code(reference)).square().mean(), 1.0)


def cvvdp_jod(test, reference, nits_at_1: float = 100.0,
              display_name: str = "standard_hdr_linear",
              frames_per_second: float = 24.0) -> float:
    """Return ColorVideoVDP's quality in JOD (10 = identical) through pycvvdp, on the CPU.

    Needs the optional ``cvvdp`` package (the pack's ``metrics`` extra). The images are
    handed over as absolute Rec.709 light (scene-linear times ``nits_at_1``) to pycvvdp's
    display model ``display_name``:
    ``standard_hdr_linear`` is its 1500-nit HDR monitor taking linear BT.709 light, the
    way our scene-linear data is stored (``standard_hdr_pq`` is the same monitor fed PQ
    code values). A clip is a video at ``frames_per_second``.

    References
    ----------
    Mantiuk, Hanji, Ashraf, Asano & Chapiro (2024), "ColorVideoVDP: A visual difference
    predictor for image, video and display distortions", ACM TOG 43(4).
    """
    test, reference = _pair(test, reference)
    _check_nits(nits_at_1)
    try:
        import pycvvdp
    except ImportError as error:
        raise ValueError("cvvdp_jod needs ColorVideoVDP: pip install cvvdp (the pack's "
                         "'metrics' extra)") from error
    metric = pycvvdp.cvvdp(display_name=display_name, device=torch.device("cpu"), quiet=True)
    clip = test.shape[0] > 1
    test, reference = ((x if clip else x[0]).mul(nits_at_1).float().cpu()
                       for x in (test, reference))
    quality, _ = metric.predict(test, reference, dim_order="FHWC" if clip else "HWC",
                                frames_per_second=frames_per_second if clip else 0)
    return float(quality)


def _frame_means(clip: torch.Tensor, gamut: str) -> torch.Tensor:
    _check_gamut(gamut)
    return luminance(clip, gamut).mean(dim=(1, 2))


def flicker(clip, gamut: str = "rec709") -> float:
    """Return the flicker of a clip: std of its per-frame mean luminance over their mean.

    The standard deviation is the population one (``ddof=0``); a steady clip gives 0.

    >>> clip = np.ones((2, 4, 4, 3)) * np.array([1.0, 3.0])[:, None, None, None]
    >>> flicker(clip)
    0.5
    """
    means = _frame_means(_rgb(clip, "clip"), gamut)
    mean = means.mean()
    if not mean > 0:
        raise ValueError("clip has a mean luminance <= 0; flicker is relative to it")
    return float(means.std(correction=0) / mean)


def frame_to_frame_psnr(clip, nits_at_1: float = 100.0, peak_nits: float = 100.0,
                        gamut: str = "rec709") -> float:
    """Return the PU21-PSNR (luminance) between consecutive frames, pooled over the clip.

    The squared PU21 difference of every frame and the next is averaged over all pairs,
    then read as a PSNR (peak: PU21 of ``peak_nits``); higher is steadier, ``inf`` for a
    still clip. Compare a prediction's value with its ground truth's.

    >>> clip = np.full((3, 4, 4, 3), 0.18)
    >>> clip[1] *= 1.1
    >>> round(frame_to_frame_psnr(clip), 3)
    33.895
    """
    frames = _rgb(clip, "clip")
    if frames.shape[0] < 2:
        raise ValueError(f"clip has {frames.shape[0]} frame; frame-to-frame PSNR needs 2 or "
                         "more frames [T, H, W, 3]")
    encoded = _pu21(frames, nits_at_1, "luminance", gamut)
    return _psnr((encoded[1:] - encoded[:-1]).square().mean(), _pu21_peak(peak_nits))


def peak_luminance(image, nits_at_1: float = 100.0, percentile: float = 100.0,
                   gamut: str = "rec709") -> float:
    """Return the peak luminance of an image or clip in nits (a percentile, max by default),
    with the luminance weights of ``gamut`` (:data:`GAMUTS`).

    >>> round(peak_luminance(np.array([[[0.18] * 3, [40.0] * 3]])), 6)
    4000.0
    """
    _check_nits(nits_at_1)
    _check_gamut(gamut)
    values = luminance(_rgb(image, "image"), gamut).flatten().cpu().numpy()
    return float(np.percentile(values, percentile)) * nits_at_1


def dynamic_range_stops(image, nits_at_1: float = 100.0, low_percentile: float = 0.0,
                        high_percentile: float = 100.0,
                        floor_nits: float = PU21.min_nits, gamut: str = "rec709") -> float:
    """Return the dynamic range of an image or clip in stops: ``log2(bright / dark)``.

    Bright and dark are luminance percentiles (the maximum and the minimum by default;
    0.1 and 99.9 ignore stray pixels), both floored at ``floor_nits`` so black reads as a
    finite range (PU21's darkest luminance, 0.005 nits, by default). ``gamut``
    (:data:`GAMUTS`) sets the luminance weights.

    >>> round(dynamic_range_stops(np.array([[[0.01] * 3, [0.18] * 3, [40.96] * 3]])), 6)
    12.0
    """
    _check_nits(nits_at_1)
    if not floor_nits > 0:
        raise ValueError(f"floor_nits must be > 0, got {floor_nits}; use 0.005")
    _check_gamut(gamut)
    values = luminance(_rgb(image, "image"), gamut).flatten().cpu().numpy() * nits_at_1
    dark, bright = np.maximum(np.percentile(values, [low_percentile, high_percentile]),
                              floor_nits)
    return float(np.log2(bright / dark))


def hdr_metrics(test, reference, nits_at_1: float = 100.0, jod: bool = False,
                gamut: str = "rec709") -> dict:
    """Measure a prediction against its ground truth with every metric of this module,
    both in ``gamut`` (:data:`GAMUTS`) with 1.0 at ``nits_at_1``.

    Returns
    -------
    dict of floats: ``pu21_psnr``, ``pu21_ssim`` (NaN below 11 x 11 pixels),
    ``delta_e_itp``, ``pq_psnr``, ``peak_nits_*``, ``dynamic_range_*`` (stops) for the
    test and the reference, ``flicker_*`` and ``f2f_psnr_*`` (NaN for single images), and
    ``jod`` when ``jod`` is set.

    >>> grey = np.full((2, 2, 3), 0.18)
    >>> round(hdr_metrics(grey * 1.1, grey)["pq_psnr"], 3)
    41.747
    """
    test, reference = _pair(test, reference)
    clip = test.shape[0] > 1
    small = min(test.shape[1:3]) < SSIM_WINDOW[0]
    units = {"nits_at_1": nits_at_1, "gamut": gamut}
    results = {
        "pu21_psnr": pu21_psnr(test, reference, **units),
        "pu21_ssim": math.nan if small else pu21_ssim(test, reference, **units),
        "delta_e_itp": delta_e_itp_mean(test, reference, **units),
        "pq_psnr": pq_psnr(test, reference, **units),
    }
    for role, image in (("test", test), ("reference", reference)):
        results[f"peak_nits_{role}"] = peak_luminance(image, **units)
        results[f"dynamic_range_{role}"] = dynamic_range_stops(image, **units)
        results[f"flicker_{role}"] = flicker(image, gamut) if clip else math.nan
        results[f"f2f_psnr_{role}"] = (frame_to_frame_psnr(image, **units) if clip
                                       else math.nan)
    if jod:
        # ColorVideoVDP's display model takes linear BT.709 light (values outside the
        # BT.709 gamut stay negative; its display model clips them as a monitor would)
        results["jod"] = cvvdp_jod(*(x if gamut == "rec709"
                                     else convert_gamut(x, gamut, "rec709")
                                     for x in (test, reference)), nits_at_1)
    return results
