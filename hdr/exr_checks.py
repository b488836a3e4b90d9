"""What :mod:`.exr` refuses because a file would not hold the values it was given, the
channel names it refuses to read or write, and what a file's chromaticities say.

Policy (a pipeline expects a lossy codec's normal quantisation, never a changed range):

- NaN/Inf in the pixels, and finite values half cannot hold (``|x| >= 65520`` rounds to
  Inf in IEEE 754 binary16; 65504 is its largest value): refused before anything is
  written (:func:`non_finite_message`).
- Lossy codecs (:data:`VERIFIED_CODECS`): the written file is decoded before it is moved
  into place; a finite value that comes back NaN/Inf, or a channel whose largest
  magnitude moves by more than :data:`PEAK_TOLERANCE_STOPS`, is refused
  (:func:`verify_lossy`). Measured with OpenEXR 3.5: DWAA/DWAB code the channels R, G, B,
  Y, BY, RY through half floats even in a float file, so 1e6 and 70000 come back as 65248
  (-3.9 stops) and 65000 beside smaller values as Inf; B44/B44A turn half values of -1000
  beside values near 1 into -1577 (+0.66 stop) and -50000 into NaN; B44 leaves float
  channels uncompressed and exact; zip, piz, zips, rle, zstd, htj2k keep every value.
- Nothing is only warned about: a warning in a node's text is easy to miss in a long
  render, a refusal names the fix.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import OpenEXR
import torch

from .gamut import SCENE_LINEAR_COLOURSPACES, get_gamut, match_chromaticities

HALF_MAX = 65504.0
"""Largest finite IEEE 754 binary16 value."""
HALF_OVERFLOW = 65520.0
"""Smallest magnitude that rounds to Inf in binary16 (round to nearest even)."""
VERIFIED_CODECS = ("pxr24", "b44", "b44a", "dwaa", "dwab", "lj2k")
"""Lossy codecs whose output is decoded and checked before the file is kept."""
PEAK_TOLERANCE_STOPS = 0.5
"""How far a lossy codec may move a channel's largest magnitude. DWAA at its largest
level (1000) moved a 20000 highlight by 0.19 stop and at level 45 by 0.006 stop; range
damage moved it by 0.66 stop (B44 on a negative block) or 3.9 stops (DWA above 65504)."""
_FIXES = {
    "dwaa": "DWAA codes channels R, G, B, Y, BY, RY as half floats (largest 65504) even in a "
            "float file: use compression zip or piz (lossless), or pixel_type='half' with "
            "values <= 65504 (scale the exposure down first)",
    "b44": "B44 codes each 4x4 block of a half channel from its largest value, so large "
           "negative values beside positive ones do not fit: use compression zip or piz "
           "(lossless), or pixel_type='float' (B44 stores float channels uncompressed)",
    "lj2k": "lossy JPEG 2000 quantises a tile relative to its range: use compression "
            "htj2k256 or htj2k32 (lossless JPEG 2000), zip or piz",
    "pxr24": "PXR24 rounds float to 24 bits: use compression zip or piz (lossless)",
}
_FIXES.update(dwab=_FIXES["dwaa"].replace("DWAA", "DWAB"), b44a=_FIXES["b44"])


def valid_name(name: str) -> bool:
    """Whether ``name`` is an OpenEXR ``layer.channel`` name this pack reads unambiguously:
    dot-separated, non-empty parts of printable ASCII without leading or trailing spaces.

    OpenEXR Technical Introduction, "Layers": the channel is what follows the last dot,
    the layer is what precedes it; ``..``, ``.G`` or ``x..y`` would read as another
    layer's channel, and look-alike non-ASCII names as another channel.

    >>> valid_name("diffuse.R"), valid_name(".G"), valid_name("x..y"), valid_name("R\u00e9")
    (True, False, False, False)
    """
    return (isinstance(name, str) and all(" " <= char <= "~" for char in name)
            and all(part and part == part.strip() for part in name.split(".")))


def check_channel_names(path: str | os.PathLike, headers: list[dict[str, Any]]) -> None:
    """Raise ``ValueError`` naming the first channel of ``path`` that is not
    :func:`valid_name`."""
    for header in headers:
        for channel in header["channels"]:
            if not valid_name(channel.name):
                raise ValueError(
                    f"{path} has a channel named {channel.name!r}, not an OpenEXR layer.channel "
                    "name (dot-separated, non-empty parts of printable ASCII); it would load "
                    "as another layer or channel: rename it, e.g. oiiotool in.exr --chnames "
                    "R,G,B -o out.exr")


def non_finite_message(source: Any, pixel_type: str, where: str) -> str:
    """Why ``source`` (stored as ``pixel_type``) holds NaN/Inf, with counts and the fix."""
    values = torch.as_tensor(source).detach().to("cpu", torch.float32)
    nan = int(values.isnan().sum())
    finite = values.isfinite()
    inf = int(values.numel() - nan - int(finite.sum()))
    overflow = 0
    if pixel_type == "half":
        beyond = finite & (values.abs() >= HALF_OVERFLOW)
        overflow = int(beyond.sum())
    parts, fixes = [], []
    if nan or inf:
        parts.append(f"{nan + inf} NaN/Inf values ({nan} NaN, {inf} Inf)")
        fixes.append("fix the source (HDR Stats counts them; a VAE decoded in float16 is a "
                     "common cause) or pass check_finite=False to write them as they are")
    if overflow:
        largest = float(values[beyond].abs().max())
        parts.append(f"{overflow} values beyond half's range (largest |value| {largest:g} > "
                     f"{HALF_MAX:g}), which half would store as Inf")
        fixes.append("use pixel_type='float', or scale the exposure down so every value is "
                     f"<= {HALF_MAX:g}")
    return f"{where} has {' and '.join(parts)}: {'; '.join(fixes)}"


def _peak(values: np.ndarray) -> float:
    tensor = torch.from_numpy(values)
    return float(tensor.abs().masked_fill(~tensor.isfinite(), 0).max())


def verify_lossy(path: str | os.PathLike, written: dict[str, np.ndarray], compression: str,
                 where: dict[str, str]) -> None:
    """Decode ``path`` and refuse what ``compression`` did beyond quantisation.

    ``written`` maps each channel's full name to the 2-D array handed to OpenEXR;
    ``where`` maps it to the name errors use (the layer, or the node input). Raises
    ``ValueError`` if a finite value came back NaN/Inf or a channel's largest magnitude
    moved by more than :data:`PEAK_TOLERANCE_STOPS`.
    """
    decoded: dict[str, np.ndarray] = {}
    for part in OpenEXR.File(str(path), separate_channels=True).parts:
        decoded.update({name: channel.pixels for name, channel in part.channels.items()})
    for name, source in written.items():
        back = decoded[name]
        broken = int(np.count_nonzero(~np.isfinite(back) & np.isfinite(source)))
        before, after = _peak(source), _peak(back)
        moved = abs(np.log2(after / before)) if before > 0 and after > 0 else 0.0
        if broken or moved > PEAK_TOLERANCE_STOPS or (before > 0) != (after > 0):
            change = (f"{broken} finite values came back as NaN/Inf" if broken else
                      f"its largest |value| {before:g} came back as {after:g}")
            raise ValueError(f"{where[name]}: compression {compression!r} would change channel "
                             f"{name!r} beyond quantisation ({change}); {_FIXES[compression]}")


def colourspace_note(chromaticities: tuple | None, colourspace: str | None,
                         notes: list[str]) -> str | None:
    """The colourspace to report for a file: its own attribute, else the scene-linear space
    its ``chromaticities`` name; appends to ``notes`` what the chromaticities are when they
    supply the name, match no known gamut, or contradict the attribute."""
    if chromaticities is None:
        return colourspace
    if not (isinstance(chromaticities, (tuple, list)) and len(chromaticities) == 8 and all(
            isinstance(value, (int, float)) and math.isfinite(value) for value in chromaticities)):
        notes.append(f"the chromaticities attribute ({chromaticities!r}) is not 8 finite numbers "
                     "(red, green, blue, white xy); ignored")
        return colourspace
    found = match_chromaticities(chromaticities)
    if found is None:
        notes.append(f"chromaticities {tuple(chromaticities)} (red, green, blue, white xy) match "
                     f"no gamut this pack knows ({', '.join(SCENE_LINEAR_COLOURSPACES)}); "
                     "colourspace unknown: pick it on the node that converts the image")
        return colourspace
    if colourspace is None:
        colourspace = SCENE_LINEAR_COLOURSPACES[found.name]
        notes.append(f"no colourspace attribute: read as {colourspace!r} (scene-linear assumed) "
                     f"because the chromaticities are {found.reference}")
        return colourspace
    try:
        named = get_gamut(colourspace).name
    except ValueError:
        named = None
    if named is not None and named != found.name:
        notes.append(f"the chromaticities are {found.reference}, but the colourspace "
                     f"attribute says {colourspace!r}; check which one the pixels are in")
    return colourspace
