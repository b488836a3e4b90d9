"""The container of an Ultra HDR JPEG, read without decoding a pixel: where the base and
the gain map JPEG streams are, what their frames declare, the gain map metadata (ISO
21496-1 box, else ``hdrgm:`` XMP), the XMP packets and the ICC profiles and their gamuts.

Every field comes from a file anyone can upload, so each check runs before anything is
allocated for pixels and every refusal is a ValueError naming the file
(``tests/fuzz`` feeds it mutated files).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .gainmap_metadata import GainMapMetadata, from_iso_box, from_xmp
from .gamut import D65, chromatic_adaptation_matrix, rgb_to_xyz_matrix
from .jpeg_markers import (
    MARKERS,
    SIGNATURES,
    FrameHeader,
    Segment,
    app_payload,
    frame_header,
    icc_colorants,
    icc_profile,
    locate_gain_map,
    read_segments,
)


@dataclass(frozen=True)
class _ReaderDefaults:
    """Reader limits and the ICC gamut match."""

    # Gamuts an ICC profile is matched against (libultrahdr IccHelper::readIccColorGamut).
    icc_gamuts: tuple = ("rec709", "p3d65", "rec2020")
    # ICC.1:2010 section 7.2.16: the PCS illuminant D50 as XYZ; colorants are adapted to it.
    icc_d50: tuple = (0.9642, 1.0, 0.8249)
    # Largest colorant difference (XYZ) still taken as a match: s15Fixed16 rounding and
    # profile makers' D50 adaptation differ by ~1e-3; P3 and Rec.709 red differ by 0.08.
    icc_tolerance: float = 0.01
    # Pictures declaring more pixels are refused before decoding (8192 x 8192; Pillow warns
    # from 89 M pixels). Decoding costs about 50 bytes per pixel.
    max_pixels: int = 2**26


READER = _ReaderDefaults()


@functools.cache
def _icc_reference_colorants() -> dict[str, np.ndarray]:
    """Each matched gamut's colorants as an ICC profile stores them: adapted to the PCS
    illuminant D50 (ICC.1:2010 section 7.2.16)."""
    d50 = np.array(READER.icc_d50)
    d50_xy = (d50[0] / d50.sum(), d50[1] / d50.sum())
    return {name: chromatic_adaptation_matrix(D65, d50_xy) @ rgb_to_xyz_matrix(name)
            for name in READER.icc_gamuts}


def icc_gamut(profile: bytes) -> str | None:
    """The gamut whose D50-adapted colorants match the profile's rXYZ/gXYZ/bXYZ tags, or
    None (no colorant tags, or none of Rec.709, Display P3, Rec.2020)."""
    colorants = icc_colorants(profile)
    if colorants is None:
        return None
    for name, reference in _icc_reference_colorants().items():
        if np.abs(reference - np.asarray(colorants)).max() <= READER.icc_tolerance:
            return name
    return None


def _gamut_of(segments: list[Segment], default: str, image: str, notes: list[str]) -> str:
    profile = icc_profile(segments)
    if profile is None:
        return default
    found = icc_gamut(profile)
    if found is None:
        notes.append(f"the {image} image's ICC profile is not Rec.709, Display P3 or Rec.2020; "
                     f"read as {default}")
        return default
    return found


def _gain_map_metadata(segments: list[Segment]) -> tuple[GainMapMetadata | None, str | None]:
    xmp = app_payload(segments, MARKERS.app1, SIGNATURES.xmp)
    text = None if xmp is None else xmp.payload.decode("utf-8", "replace").rstrip("\0 \n")
    iso = app_payload(segments, MARKERS.app2, SIGNATURES.iso)
    if iso is not None:
        return from_iso_box(iso.payload), text
    if text is not None and "hdr-gain-map" in text:
        return from_xmp(text), text
    return None, text


@dataclass(frozen=True)
class UltraHDRContainer:
    """What an Ultra HDR JPEG's headers say, read before any pixel is decoded.

    ``primary`` and ``gain_map`` are the ``(start, end)`` byte ranges of the two JPEG
    streams (``gain_map`` None for a plain JPEG) and ``*_frame`` what their start-of-frame
    segments declare; ``source_gamut`` and ``alternate_gamut`` come from their ICC profiles.
    """

    primary: tuple[int, int]
    primary_frame: FrameHeader
    gain_map: tuple[int, int] | None
    gain_map_frame: FrameHeader | None
    metadata: GainMapMetadata | None
    source_gamut: str
    alternate_gamut: str | None
    icc_profile: bytes | None
    xmp: str | None
    gain_map_xmp: str | None
    notes: tuple[str, ...]


def _check_frame(frame: FrameHeader, size: int, what: str, max_pixels: int) -> None:
    """Refuse a picture that claims more pixels than ``max_pixels`` or than its bytes can
    hold (Huffman coding: :data:`.jpeg_markers.MARKERS` ``max_huffman_pixels_per_byte``)."""
    pixels = frame.width * frame.height
    if pixels > max_pixels:
        raise ValueError(f"{what} declares {frame.width} x {frame.height} = {pixels} pixels, "
                         f"over max_pixels={max_pixels}; raise max_pixels to read a trusted "
                         "file")
    if not frame.arithmetic and pixels > MARKERS.max_huffman_pixels_per_byte * size:
        raise ValueError(f"{what} declares {frame.width} x {frame.height} pixels but holds "
                         f"{size} bytes, too few for them; the file is truncated or corrupt")


def _read_container(data: bytes, allow_sdr_only: bool, name: str,
                    max_pixels: int) -> UltraHDRContainer:
    notes: list[str] = []
    segments, primary_end = read_segments(data, name=name)
    primary_frame = frame_header(segments, name)
    _check_frame(primary_frame, primary_end, name, max_pixels)
    start, note = locate_gain_map(data, segments, primary_end)
    notes.extend(note)
    metadata = gain_map_xmp = gain_map = gain_frame = alternate_gamut = None
    if start is not None:
        gain_segments, gain_end = read_segments(data, start, name=f"{name} (gain map)")
        metadata, gain_map_xmp = _gain_map_metadata(gain_segments)
    if metadata is None and not allow_sdr_only:
        raise ValueError(f"{name} has no gain map with ISO 21496-1 or hdrgm metadata, so it "
                         "is a plain JPEG, not Ultra HDR; pass allow_sdr_only=True to load "
                         "its SDR image")
    source_gamut = _gamut_of(segments, "rec709", "base", notes)
    if metadata is not None:
        gain_map, gain_frame = (start, gain_end), frame_header(gain_segments, f"{name} (gain map)")
        _check_frame(gain_frame, gain_end - start, f"{name} (gain map)", max_pixels)
        alternate_gamut = _gamut_of(gain_segments, source_gamut, "gain map", notes)
    primary_xmp = app_payload(segments, MARKERS.app1, SIGNATURES.xmp)
    return UltraHDRContainer(
        primary=(0, primary_end), primary_frame=primary_frame, gain_map=gain_map,
        gain_map_frame=gain_frame, metadata=metadata, source_gamut=source_gamut,
        alternate_gamut=alternate_gamut, icc_profile=icc_profile(segments),
        xmp=None if primary_xmp is None else primary_xmp.payload.decode("utf-8", "replace"),
        gain_map_xmp=gain_map_xmp, notes=tuple(notes))


def read_container(data: bytes, *, allow_sdr_only: bool = False, name: str = "data",
                   max_pixels: int = READER.max_pixels) -> UltraHDRContainer:
    """Walk an Ultra HDR JPEG's headers: where its two images are, their sizes, the gain
    map metadata, XMP and ICC profiles; no pixel is decoded.

    Parameters
    ----------
    data
        The file's bytes.
    allow_sdr_only
        Accept a JPEG without a gain map (``gain_map`` and ``metadata`` are then None).
    name
        What to call ``data`` in errors (the reader passes the path); every error names it.
    max_pixels
        Pictures declaring more pixels are refused, as are pictures declaring more pixels
        than their bytes can hold.

    Returns
    -------
    :class:`UltraHDRContainer`.

    References
    ----------
    Android Ultra HDR image format 1.1; ISO/TS 21496-1; CIPA DC-007-2009 (MPF).
    """
    try:
        return _read_container(bytes(data), allow_sdr_only, name, max_pixels)
    except ValueError as error:
        if name in str(error):
            raise
        raise ValueError(f"{name}: {error}") from None
