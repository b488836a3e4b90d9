"""Ultra HDR JPEG read and write: an SDR base JPEG, a gain map JPEG and their metadata.

The file is the one libultrahdr writes with both metadata forms switched on:

- primary image: SOI, APP0 JFIF, APP1 XMP (``hdrgm:Version`` and the GContainer
  directory: Primary, GainMap with its Length), APP2 ISO 21496-1 (the 4-byte version
  box), APP2 MPF (index of both images), then the base JPEG's tables, scan and EOI;
- gain map image: SOI, APP0 JFIF, APP1 XMP (the ``hdrgm:`` metadata), APP2 ISO 21496-1
  (the full ``GainMapMetadata()`` box), then the map's tables, scan and EOI.

The base is written without an ICC profile, which every reader takes as sRGB (Rec.709
primaries, sRGB curve); on reading, an ICC profile with Display P3 or Rec.2020 colorants
is honoured as libultrahdr does. JPEG pixels go through Pillow; the gain map maths is
:mod:`.gainmap`; the container bytes are written by :mod:`.jpeg_markers` and read by
:mod:`.ultrahdr_container`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ._array import to_tensor
from .atomic import atomic_path
from .gainmap import apply_gain_map, extract_gain_map
from .gainmap_metadata import GainMapMetadata, to_iso_box, to_xmp
from .gamut import get_gamut, rgb_to_rgb_matrix
from .jpeg_markers import assemble
from .tonemap import get_tone_mapper
from .transfer import srgb_decode, srgb_encode
from .transfer_blockwise import evaluate
from .ultrahdr_container import READER, read_container


@dataclass(frozen=True)
class _JfifYCbCr:
    """ITU-T T.871 (2011), section 7: JFIF's full-range YCbCr uses the BT.601 luma weights
    Kr, Kb; chroma is centred on 128 of 255."""

    kr: float = 0.299
    kb: float = 0.114
    chroma_offset: float = 128.0
    code_max: float = 255.0

    @property
    def coefficients(self) -> tuple[float, float, float, float]:
        """R from Cr; G from Cb and Cr (subtracted); B from Cb: T.871 equations (7)-(9),
        derived from Kr and Kb (Kg = 1 - Kr - Kb)."""
        kg = 1 - self.kr - self.kb
        return (2 * (1 - self.kr), 2 * self.kb * (1 - self.kb) / kg,
                2 * self.kr * (1 - self.kr) / kg, 2 * (1 - self.kb))


JFIF = _JfifYCbCr()


@dataclass(frozen=True)
class _UltraHdrDefaults:
    """Encoder defaults and reader limits."""

    quality: int = 95
    # libultrahdr kMapCompressQuality.
    gain_map_quality: int = 85
    tone_mapper: str = "reinhard_max_rgb"
    # libultrahdr uhdr_enc_set_gainmap_scale_factor accepts (0, 128].
    max_gain_map_scale: int = 128
    # libultrahdr (uhdr_validate_gainmap_metadata_descriptor) rejects HDRCapacityMax <=
    # HDRCapacityMin; a map with no boost above the base gets this many stops of span.
    min_headroom_span: float = 1 / 64


ULTRAHDR = _UltraHdrDefaults()


@dataclass(frozen=True)
class UltraHDRImage:
    """An Ultra HDR JPEG, decoded.

    ``hdr`` and ``sdr`` are linear RGB ``[H, W, 3]`` float32 in ``gamut`` (1.0 = SDR
    white; the HDR rendition at ``display_hdr_headroom_log2``, None meaning the full
    alternate); ``gain_map`` is ``[h, w, 1 or 3]`` in [0, 1]. ``source_gamut`` is the
    base image's gamut in the file. ``notes`` lists what the reader had to assume.
    """

    hdr: np.ndarray
    sdr: np.ndarray
    gain_map: np.ndarray | None
    metadata: GainMapMetadata | None
    gamut: str
    source_gamut: str
    display_hdr_headroom_log2: float | None
    icc_profile: bytes | None
    xmp: str | None
    gain_map_xmp: str | None
    notes: tuple[str, ...]


def _image(value, name: str) -> torch.Tensor:
    tensor = to_tensor(value).detach().to(dtype=torch.float32)
    if tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"{name} must be one RGB image [H, W, 3], got shape "
                         f"{tuple(tensor.shape)}; pass image[0] for a batch or "
                         "image[..., :3] to drop alpha")
    bad = int((~torch.isfinite(tensor)).any(-1).sum())
    if bad:
        raise ValueError(f"{name} contains NaN or infinity at {bad} pixels; fix the upstream "
                         "node (e.g. decode in float32) or replace them with torch.nan_to_num")
    return tensor


def _check_quality(value, name: str) -> int:
    if not isinstance(value, int) or not 1 <= value <= 100:
        raise ValueError(f"{name} must be a JPEG quality 1..100, got {value!r}")
    return value


def _encode_jpeg(codes: torch.Tensor, quality: int) -> bytes:
    """8-bit codes ``[H, W, 1 or 3]`` as a baseline JPEG, colour without chroma subsampling."""
    array = codes.cpu().numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def _ycbcr_to_linear(ycbcr: torch.Tensor) -> torch.Tensor:
    """Rows of JFIF (Y, Cb, Cr) codes to linear RGB: full-range BT.601 matrix, clipped to
    the code range, sRGB-decoded."""
    (luma_cr, green_cb, green_cr, blue_cb) = JFIF.coefficients
    luma = ycbcr[..., 0]
    blue_difference = ycbcr[..., 1] - JFIF.chroma_offset
    red_difference = ycbcr[..., 2] - JFIF.chroma_offset
    rgb = torch.stack((luma + luma_cr * red_difference,
                       luma - green_cb * blue_difference - green_cr * red_difference,
                       luma + blue_cb * blue_difference), -1)
    return srgb_decode((rgb / JFIF.code_max).clamp(0.0, 1.0))


def _pixels(jpeg: bytes, what: str, draft: str | None = None) -> tuple[str, np.ndarray]:
    """Pillow's mode and pixels of one JPEG stream; its errors become ValueError naming
    ``what`` (Pillow raises OSError, SyntaxError or DecompressionBombError on bad data)."""
    try:
        picture = Image.open(io.BytesIO(jpeg), formats=("JPEG",))
        if draft is not None:
            picture.draft(draft, picture.size)
        return picture.mode, np.array(picture)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{what} cannot be decoded ({error}); the file is truncated or "
                         "corrupt") from None


def _decode_base(jpeg: bytes, what: str = "the base image") -> torch.Tensor:
    """The primary JPEG as sRGB-decoded linear RGB; YCbCr converted in float, as libultrahdr
    does (p3YuvToRgb then srgbInvOetf), not through 8-bit RGB."""
    mode, array = _pixels(jpeg, what, draft="YCbCr")
    if mode not in ("YCbCr", "RGB", "L"):
        raise ValueError(f"{what} is {mode}, not YCbCr, RGB or greyscale; convert the JPEG "
                         "to RGB first")
    codes = torch.from_numpy(array).to(torch.float32)
    if mode == "L":
        codes = codes[..., None].expand(*codes.shape, 3)
    if mode != "YCbCr":
        return srgb_decode(codes / JFIF.code_max)
    return evaluate(_ycbcr_to_linear, codes, group=3)


def _decode_gain_map(jpeg: bytes, what: str) -> torch.Tensor:
    mode, array = _pixels(jpeg, what)
    if mode not in ("L", "RGB"):
        raise ValueError(f"{what} is {mode}; Ultra HDR gain maps have 1 (greyscale) or 3 "
                         "(RGB) channels, so the file is not a valid Ultra HDR JPEG")
    codes = torch.from_numpy(array)
    return codes[..., None] if codes.ndim == 2 else codes


def _downsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Box average over ``scale`` x ``scale`` blocks (partial edge blocks average what they
    hold), as libultrahdr samples the base and HDR for a smaller map."""
    if scale == 1:
        return image
    planar = image.permute(2, 0, 1)[None]
    pooled = F.avg_pool2d(planar, scale, stride=scale, ceil_mode=True)
    return pooled[0].permute(1, 2, 0).contiguous()


def _gain_map_codes(gain_map) -> torch.Tensor:
    tensor = gain_map if isinstance(gain_map, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(gain_map))
    tensor = tensor.detach()
    if tensor.ndim == 2:
        tensor = tensor[..., None]
    if tensor.ndim != 3 or tensor.shape[-1] not in (1, 3):
        raise ValueError(f"gain_map must be [h, w], [h, w, 1] or [h, w, 3], got shape "
                         f"{tuple(tensor.shape)}; pass gain_map[0] for a batch")
    if tensor.dtype == torch.uint8:
        return tensor
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        raise ValueError("gain_map must be uint8 codes or finite floats in [0, 1]; replace "
                         "NaN and divide integer maps by 2**bits - 1")
    return torch.round(tensor.clamp(0.0, 1.0) * JFIF.code_max).to(torch.uint8)


def _assemble(base_jpeg: bytes, gain_map_jpeg: bytes, metadata: GainMapMetadata) -> bytes:
    return assemble(base_jpeg, gain_map_jpeg, to_xmp(metadata), to_iso_box(metadata),
                    struct.pack(">HH", metadata.minimum_version, metadata.writer_version))


def _encode_base(sdr: torch.Tensor, quality: int) -> bytes:
    """Linear SDR, clipped to [0, 1], as an 8-bit sRGB JPEG."""
    codes = torch.round(srgb_encode(sdr.clamp(0.0, 1.0)) * JFIF.code_max).to(torch.uint8)
    return _encode_jpeg(codes, quality)


def _pack_gain_map(sdr_base_linear, gain_map, metadata, quality: int,
                   gain_map_quality: int) -> bytes:
    if not isinstance(metadata, GainMapMetadata):
        raise ValueError(f"metadata must be a GainMapMetadata, got {type(metadata).__name__}")
    if metadata.alternate_hdr_headroom <= metadata.base_hdr_headroom:
        raise ValueError(
            f"metadata.alternate_hdr_headroom ({metadata.alternate_hdr_headroom}) must "
            f"exceed base_hdr_headroom ({metadata.base_hdr_headroom}) for an SDR-base "
            "Ultra HDR file; raise alternate_hdr_headroom")
    codes = _gain_map_codes(gain_map)
    base_jpeg = _encode_base(_image(sdr_base_linear, "sdr_base_linear"), quality)
    return _assemble(base_jpeg, _encode_jpeg(codes, gain_map_quality), metadata)


def _with_headroom_span(metadata: GainMapMetadata) -> GainMapMetadata:
    floor = metadata.base_hdr_headroom + ULTRAHDR.min_headroom_span
    if metadata.alternate_hdr_headroom >= floor:
        return metadata
    return dataclasses.replace(metadata, alternate_hdr_headroom=floor)


def encode_ultrahdr(hdr_linear=None, *, sdr_base_linear=None, gain_map=None,
                    metadata: GainMapMetadata | None = None,
                    tone_mapper: str = ULTRAHDR.tone_mapper, quality: int = ULTRAHDR.quality,
                    gain_map_quality: int = ULTRAHDR.gain_map_quality, gain_map_scale: int = 1,
                    channels: int = 1, min_content_boost=None, max_content_boost=None,
                    gamma: float = 1.0) -> bytes:
    """Encode an Ultra HDR JPEG from an HDR image, or from a base, gain map and metadata.

    From ``hdr_linear``: the SDR base is ``sdr_base_linear`` or ``tone_mapper`` of the HDR,
    clipped to [0, 1] and sRGB-encoded; the gain map is extracted against the base *as
    decoded from its JPEG*, so the reader rebuilds the HDR to within the 8-bit map. HDR
    values below 0 (outside the Rec.709 gamut) are clipped, as libultrahdr does. Without
    ``hdr_linear``, ``sdr_base_linear``, ``gain_map`` and ``metadata`` are written as given.

    Parameters
    ----------
    hdr_linear
        Scene-linear Rec.709 ``[H, W, 3]`` (1.0 = diffuse white = SDR white).
    sdr_base_linear
        Linear Rec.709 base ``[H, W, 3]`` in [0, 1] (1.0 = SDR peak white).
    gain_map, metadata
        A map ``[h, w, 1 or 3]`` (uint8 codes or floats in [0, 1]) and its
        :class:`GainMapMetadata`, when not extracting.
    tone_mapper
        Name in :data:`.tonemap.TONE_MAPPERS` that makes the base when none is given.
    quality, gain_map_quality
        JPEG qualities of the base and the map.
    gain_map_scale
        The map is this many times smaller than the base on each axis (1 to 128).
    channels, min_content_boost, max_content_boost, gamma
        As :func:`.gainmap.extract_gain_map`.

    Returns
    -------
    The file's bytes.

    References
    ----------
    Android Ultra HDR image format 1.1; ISO/TS 21496-1; CIPA DC-007-2009 (MPF);
    libultrahdr ``jpegr.cpp`` (appendGainMap).

    >>> hdr = np.full((8, 8, 3), 4.0, dtype=np.float32)
    >>> data = encode_ultrahdr(hdr)
    >>> round(float(decode_ultrahdr(data).hdr.mean()), 2)
    4.0
    """
    _check_quality(quality, "quality")
    _check_quality(gain_map_quality, "gain_map_quality")
    if hdr_linear is None:
        if sdr_base_linear is None or gain_map is None or metadata is None:
            raise ValueError("pass hdr_linear, or all of sdr_base_linear, gain_map and "
                             "metadata to write an existing gain map")
        return _pack_gain_map(sdr_base_linear, gain_map, metadata, quality, gain_map_quality)
    if gain_map is not None or metadata is not None:
        raise ValueError("pass either hdr_linear (the gain map is extracted) or gain_map and "
                         "metadata with sdr_base_linear, not both")
    if not isinstance(gain_map_scale, int) or not 1 <= gain_map_scale <= \
            ULTRAHDR.max_gain_map_scale:
        raise ValueError(f"gain_map_scale must be an integer 1..{ULTRAHDR.max_gain_map_scale} "
                         f"(4 = a map a quarter of the width), got {gain_map_scale!r}")
    hdr = _image(hdr_linear, "hdr_linear").clamp_min(0.0)
    if sdr_base_linear is None:
        sdr = to_tensor(get_tone_mapper(tone_mapper)(hdr)).to(torch.float32)
    else:
        sdr = _image(sdr_base_linear, "sdr_base_linear")
        if sdr.shape != hdr.shape:
            raise ValueError(f"sdr_base_linear has shape {tuple(sdr.shape)} but hdr_linear has "
                             f"{tuple(hdr.shape)}; resize one to match")
    base_jpeg = _encode_base(sdr, quality)
    codes, extracted = extract_gain_map(
        _downsample(hdr, gain_map_scale), _downsample(_decode_base(base_jpeg), gain_map_scale),
        min_content_boost=min_content_boost, max_content_boost=max_content_boost,
        gamma=gamma, channels=channels, as_uint8=True)
    return _assemble(base_jpeg, _encode_jpeg(codes, gain_map_quality),
                     _with_headroom_span(extracted))


def write_ultrahdr(path: str | os.PathLike, hdr_linear=None, *, overwrite: bool = False,
                   **options) -> Path:
    """Write an Ultra HDR JPEG atomically; nothing appears at ``path`` if encoding fails.

    Parameters
    ----------
    path
        Destination ``.jpg``; an existing file is kept unless ``overwrite``.
    hdr_linear, options
        As :func:`encode_ultrahdr`.

    Returns
    -------
    The path written.
    """
    data = encode_ultrahdr(hdr_linear, **options)
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def _convert(image: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """:func:`.gamut.convert_gamut`'s matrix, applied in cache-sized blocks (2-3x faster
    on a 4K frame than one [N, 3] @ [3, 3] product)."""
    if source == target:
        return image
    matrix = image.new_tensor(rgb_to_rgb_matrix(source, target)).T
    return evaluate(torch.matmul, image, matrix, group=3)


def _array(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(image.cpu().numpy(), dtype=np.float32)


def decode_ultrahdr(data: bytes, *, display_hdr_headroom_log2: float | None = None,
                    gamut: str = "rec709", allow_sdr_only: bool = False,
                    name: str = "data", max_pixels: int = READER.max_pixels) -> UltraHDRImage:
    """Decode an Ultra HDR JPEG to linear HDR and SDR renditions and its gain map.

    The gain map is found through the MPF index (else it is the JPEG after the primary's
    EOI); its metadata is read from the ISO 21496-1 box, else from the ``hdrgm:`` XMP.
    A map smaller than the base is upsampled bilinearly and listed in ``notes``.

    Parameters
    ----------
    data
        The file's bytes.
    display_hdr_headroom_log2
        log2 headroom of the target display; None renders the full alternate (W = 1).
    gamut
        Gamut of the returned ``hdr`` and ``sdr`` (``'rec709'``, ``'p3d65'``...).
    allow_sdr_only
        For a JPEG without a gain map, return its SDR as ``hdr`` instead of raising.
    name
        What to call ``data`` in errors (the reader passes the path).
    max_pixels
        As :func:`.ultrahdr_container.read_container`: checked on the headers, before
        any pixel is decoded.

    Returns
    -------
    :class:`UltraHDRImage`.

    References
    ----------
    Android Ultra HDR image format 1.1 ("Decoding"); ISO/TS 21496-1; libultrahdr
    ``jpegr.cpp`` (decodeJPEGR, applyGainMap).
    """
    data = bytes(data)
    gamut = get_gamut(gamut).name
    container = read_container(data, allow_sdr_only=allow_sdr_only, name=name,
                               max_pixels=max_pixels)
    notes = list(container.notes)
    source_gamut, metadata = container.source_gamut, container.metadata
    sdr = _decode_base(data[slice(*container.primary)], f"{name}: the base image")
    gain_map = None
    if metadata is None:
        notes.append("no gain map: hdr is the SDR base")
        hdr = _convert(sdr, source_gamut, gamut)
    else:
        alternate_gamut = container.alternate_gamut
        gain_map = _decode_gain_map(data[slice(*container.gain_map)],
                                    f"{name}: the gain map image")
        if tuple(gain_map.shape[:2]) != tuple(sdr.shape[:2]):
            notes.append(f"gain map {gain_map.shape[1]}x{gain_map.shape[0]} resampled "
                         f"(bilinear) to the base's {sdr.shape[1]}x{sdr.shape[0]}")
        # ISO 21496-1 use_base_colour_space: apply the map in the base's gamut, else in the
        # alternate's; the result is in the alternate's gamut either way.
        if metadata.use_base_colour_space:
            hdr = _convert(apply_gain_map(sdr, gain_map, metadata, display_hdr_headroom_log2),
                           source_gamut, alternate_gamut)
        else:
            hdr = apply_gain_map(_convert(sdr, source_gamut, alternate_gamut), gain_map,
                                 metadata, display_hdr_headroom_log2)
        hdr = _convert(hdr, alternate_gamut, gamut)
        gain_map = _array(gain_map.to(torch.float32) / JFIF.code_max)
    return UltraHDRImage(
        hdr=_array(hdr), sdr=_array(_convert(sdr, source_gamut, gamut)),
        gain_map=gain_map, metadata=metadata, gamut=gamut, source_gamut=source_gamut,
        display_hdr_headroom_log2=display_hdr_headroom_log2,
        icc_profile=container.icc_profile, xmp=container.xmp,
        gain_map_xmp=container.gain_map_xmp, notes=tuple(notes))


def read_ultrahdr(path: str | os.PathLike, **options) -> UltraHDRImage:
    """Read an Ultra HDR JPEG file; ``options`` as :func:`decode_ultrahdr`.

    Parameters
    ----------
    path
        The ``.jpg`` file.

    Returns
    -------
    :class:`UltraHDRImage`.
    """
    return decode_ultrahdr(Path(path).read_bytes(), name=str(path), **options)
