"""Radiance RGBE pictures (.hdr / .pic) in and out, in pure numpy.

A Radiance picture is a text header (``#?RADIANCE`` or another ``#?program`` line,
``VAR=value`` lines such as ``FORMAT=32-bit_rle_rgbe`` and ``EXPOSURE=``, then a blank
line), a resolution line (``-Y 512 +X 1024`` for 512 scanlines of 1024 pixels, top to
bottom, left to right) and 4-byte pixels: three 8-bit mantissas sharing one 8-bit
exponent (Ward, "Real Pixels"). Scanlines are stored flat, in the old run-length scheme
(a ``1 1 1 n`` pixel repeats the previous one) or, for widths 8 to 32767, in the adaptive
scheme: each of the four components of the scanline run-length coded on its own.

Code values follow OpenImageIO (whose reader descends from Bruce Walter's ``rgbe.c``), so
pixels read here equal ``oiiotool``'s bit for bit (but for exponent bytes 40, 223 and 226,
values near 2e-27, 3e28 and 2e29, where OIIO's table of powers of two, printed with 8
digits, is one float32 step low; we use exact powers of two):

- decode ``value = mantissa * 2**(exponent - 136)`` (exponent byte 0 is black). Radiance's
  own ``colr_color`` adds half a step, ``(mantissa + 0.5) * 2**(exponent - 136)``: its
  values are higher by 0.5 / mantissa, at most 0.4% of the brightest channel (rgbe.c's
  comment: Walter wanted [0, 1] to map back onto [0, 1]).
- encode as rgbe.c ``float2rgbe``: ``frexp`` of the brightest channel gives the exponent and
  every channel is truncated to ``floor(value * 256 / 2**exponent)``; a pixel whose
  brightest channel is below 1e-32 is black. Truncation makes every stored value round
  down, by less than one step: ``2**-7`` of the pixel's brightest channel.

``EXPOSURE=`` and ``COLORCORR=`` record multipliers already applied to the pixels; like
OpenImageIO, :func:`read_hdr` returns pixels as stored and reports the (cumulative)
multipliers so a caller can divide by them to recover the renderer's radiance.

References
----------
Greg Ward, "Real Pixels", Graphics Gems II (J. Arvo, ed.), Academic Press 1991, pp. 80-83.
Radiance File Formats, "Picture File Format (.hdr, .pic)"
(radsite.lbl.gov/radiance/refer/filefmts.pdf): header variables, resolution string,
run-length encodings. Bruce Walter, ``rgbe.c`` (graphics.cornell.edu/~bjw/rgbe.html).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path


@dataclass(frozen=True)
class RgbeConstants:
    """Numbers of the RGBE encoding and its run-length schemes, each from its source."""

    exponent_bias: int = 128
    """Ward 1991: the exponent byte is the power of two plus 128."""
    mantissa_bits: int = 8
    """Ward 1991: one byte per mantissa, so decoding scales by 2**(exponent - 128 - 8)."""
    black_below: float = 1e-32
    """rgbe.c float2rgbe: a pixel whose brightest channel is below this is stored as 0."""
    rle_widths: tuple[int, int] = (8, 0x7FFF)
    """Radiance color.c MINELEN, MAXELEN: only these widths may use adaptive run-length."""
    min_run: int = 4
    """rgbe.c MINRUNLENGTH: shorter runs are written as literal bytes."""
    max_run: int = 127
    """rgbe.c / Radiance: a run code is 128 + count, count at most 127."""
    max_literal: int = 128
    """Radiance file formats: a literal code is the count itself, at most 128."""


RGBE = RgbeConstants()
RGBE_FORMAT = "32-bit_rle_rgbe"
XYZE_FORMAT = "32-bit_rle_xyze"
# At most 9 digits per size: beyond max_pixels anyway, and int() of thousands of digits fails.
_RESOLUTION = re.compile(rb"([-+])([XY]) +(\d{1,9}) +([-+])([XY]) +(\d{1,9})[ \t\r]*\n")
_VARIABLE = re.compile(r"([A-Za-z][A-Za-z0-9_]*)=(.*)")


@dataclass(frozen=True)
class RadianceImage:
    """A Radiance picture: ``pixels [H, W, 3]`` float32, top row first, as stored.

    ``exposure`` is the product of all ``EXPOSURE=`` lines and ``colorcorr`` the per-channel
    product of all ``COLORCORR=`` lines (1.0 when absent): the renderer's radiance in
    watts/sr/m^2 is ``pixels / exposure / colorcorr``. ``primaries`` are the eight CIE xy
    numbers of ``PRIMARIES=`` (red, green, blue, white), None when absent (Radiance's
    default primaries). ``program`` is the name after ``#?``; ``header`` holds the other
    ``VAR=value`` lines (the last one of a name wins).
    """

    pixels: np.ndarray
    exposure: float = 1.0
    colorcorr: tuple[float, float, float] = (1.0, 1.0, 1.0)
    primaries: tuple[float, ...] | None = None
    format: str = RGBE_FORMAT
    program: str = "RADIANCE"
    header: dict[str, str] = field(default_factory=dict)


def decode_rgbe(rgbe: Any) -> np.ndarray:
    """Scene-linear float32 RGB ``[..., 3]`` of RGBE bytes ``[..., 4]``, as OpenImageIO decodes.

    Parameters
    ----------
    rgbe
        Mantissas R, G, B and the shared exponent byte (0 is black).

    Returns
    -------
    numpy.ndarray
        ``mantissa * 2**(exponent - 136)``, exact in float32.

    References
    ----------
    Ward, "Real Pixels" (1991); Walter, rgbe.c ``rgbe2float`` (no half-step offset).

    >>> decode_rgbe([[128, 64, 32, 129], [184, 184, 184, 126]])
    array([[1.       , 0.5      , 0.25     ],
           [0.1796875, 0.1796875, 0.1796875]], dtype=float32)
    """
    rgbe = np.asarray(rgbe, np.uint8)
    if rgbe.shape[-1:] != (4,):
        raise ValueError(f"rgbe has shape {rgbe.shape}; pass bytes [..., 4] (R, G, B, exponent)")
    exponent = rgbe[..., 3:].astype(np.int32)
    step = np.ldexp(np.float32(1), exponent - RGBE.exponent_bias - RGBE.mantissa_bits)
    return rgbe[..., :3].astype(np.float32) * np.where(exponent > 0, step, np.float32(0))


def _check_storable(rgb: np.ndarray, name: str) -> None:
    non_finite = int(np.count_nonzero(~np.isfinite(rgb)))
    if non_finite:
        raise ValueError(f"{name} has {non_finite} NaN or infinite values, which Radiance RGBE "
                         "cannot store; replace them upstream (e.g. np.nan_to_num)")
    negative = int(np.count_nonzero(rgb < 0))
    if negative:
        raise ValueError(f"{name} has {negative} negative values, which Radiance RGBE cannot "
                         "store; clip them upstream (e.g. np.maximum(image, 0)) or write EXR")
    too_bright = int(np.count_nonzero(rgb >= 2.0**127))
    if too_bright:
        raise ValueError(f"{name} has {too_bright} values at or above 2**127, past the largest "
                         "RGBE exponent; scale the image down and record it with exposure=")


def encode_rgbe(rgb: Any) -> np.ndarray:
    """RGBE bytes ``[..., 4]`` of scene-linear RGB ``[..., 3]``, as rgbe.c ``float2rgbe``.

    Parameters
    ----------
    rgb
        Non-negative finite values below 2**127 (others raise ``ValueError`` with the count):
        numpy, or a torch tensor on any device (read as float32 on the CPU).

    Returns
    -------
    numpy.ndarray
        uint8: ``floor(channel * 256 / 2**e)`` with ``e`` the ``frexp`` exponent of the
        brightest channel, and the byte ``e + 128``; black below 1e-32.

    References
    ----------
    Ward, "Real Pixels" (1991); Walter, rgbe.c ``float2rgbe``.

    >>> encode_rgbe([[1.0, 0.5, 0.25], [0.18, 0.18, 0.18], [1e4, 1.0, 0.0]])
    array([[128,  64,  32, 129],
           [184, 184, 184, 126],
           [156,   0,   0, 142]], dtype=uint8)
    """
    if hasattr(rgb, "detach"):  # a torch tensor on any device, in any float dtype
        rgb = rgb.detach().cpu().float().numpy()
    rgb = np.asarray(rgb, np.float32)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb has shape {rgb.shape}; pass scene-linear RGB [..., 3]")
    _check_storable(rgb, "rgb")
    return _encode(rgb)


def _encode(rgb: np.ndarray) -> np.ndarray:
    brightest = rgb.max(axis=-1, keepdims=True)
    exponent = np.frexp(brightest)[1]
    lit = brightest.astype(np.float64) >= RGBE.black_below
    rgbe = np.zeros(rgb.shape[:-1] + (4,), np.uint8)
    # Scaling by a power of two is exact in float32, so the floor equals rgbe.c's cast.
    mantissas = np.floor(np.ldexp(rgb, RGBE.mantissa_bits - exponent))
    rgbe[..., :3] = np.where(lit, mantissas, 0)
    rgbe[..., 3:] = np.where(lit, exponent + RGBE.exponent_bias, 0)
    return rgbe


def _numbers(path: Any, line: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(word) for word in line.split("=", 1)[1].split())
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{path} header line {line!r} should hold {count} finite numbers; "
                         "the header is corrupt (fix or delete the line)")
    return values


def _header(path: Any, text: str) -> dict[str, Any]:
    """Fields of :class:`RadianceImage` (but pixels) from the header's text."""
    lines = text.split("\n")
    fields: dict[str, Any] = {"program": lines[0][2:].strip(), "exposure": 1.0,
                              "colorcorr": (1.0, 1.0, 1.0), "primaries": None,
                              "format": RGBE_FORMAT, "header": {}}
    for line in lines[1:]:
        match = _VARIABLE.match(line.strip())
        if not match:
            continue
        name, value = match[1], match[2].strip()
        if name == "FORMAT":
            fields["format"] = value
        elif name == "EXPOSURE":
            fields["exposure"] *= _numbers(path, line, 1)[0]
        elif name == "COLORCORR":
            fields["colorcorr"] = tuple(
                a * b for a, b in zip(fields["colorcorr"], _numbers(path, line, 3), strict=True))
        elif name == "PRIMARIES":
            fields["primaries"] = _numbers(path, line, 8)
        else:
            fields["header"][name] = value
    if fields["format"] == XYZE_FORMAT:
        raise ValueError(f"{path} is {XYZE_FORMAT} (CIE XYZ pixels), which read_hdr does not "
                         "support; convert it to RGB first with Radiance's `ra_xyze -r in.hdr "
                         "out.hdr`")
    if fields["format"] != RGBE_FORMAT:
        raise ValueError(f"{path} has FORMAT={fields['format']!r}, not {RGBE_FORMAT}; it is not "
                         "an RGBE picture (convert it with Radiance's tools first)")
    return fields


def _truncated(path: Any, scanline: int, count: int) -> ValueError:
    return ValueError(f"{path} ends inside scanline {scanline} of {count} (file order); the "
                      "file is truncated: copy or export it again")


def _corrupt(path: Any, scanline: int, count: int, what: str) -> ValueError:
    return ValueError(f"{path} has {what} in scanline {scanline} of {count} (file order); the "
                      "file is corrupt: copy or export it again")


def _adaptive_scanline(path: Any, data: bytes, offset: int, width: int, scanline: int,
                       count: int) -> tuple[bytearray, int]:
    """One adaptive run-length scanline after its 4-byte marker: components R, G, B, E."""
    planes = bytearray(4 * width)
    end = len(data)
    for component in range(4):
        filled, stop = component * width, (component + 1) * width
        while filled < stop:
            if offset + 2 > end:
                raise _truncated(path, scanline, count)
            code = data[offset]
            if code > 128:
                run = code - 128
                if filled + run > stop:
                    raise _corrupt(path, scanline, count, "a run past the scanline's end")
                planes[filled:filled + run] = data[offset + 1:offset + 2] * run
                offset += 2
            else:
                run = code
                if run == 0 or filled + run > stop:
                    raise _corrupt(path, scanline, count, f"a literal run of {run} bytes")
                if offset + 1 + run > end:
                    raise _truncated(path, scanline, count)
                planes[filled:filled + run] = data[offset + 1:offset + 1 + run]
                offset += 1 + run
            filled += run
    return planes, offset


def _old_scanline(path: Any, data: bytes, offset: int, width: int, scanline: int,
                  count: int) -> tuple[np.ndarray, int]:
    """A flat scanline, or one in the old run-length scheme: a ``1 1 1 n`` pixel repeats the
    previous pixel ``n << shift`` times, the shift growing by 8 for each consecutive repeat.

    Returns the row ``[width, 4]`` and the offset after it. Literal pixels are gathered as
    views of ``data`` with a repeat count each; the row is built (``np.repeat``) only once
    the counts add up to ``width``, so a corrupt or hostile count costs no memory."""
    blocks: list[np.ndarray] = []
    repeats: list[np.ndarray] = []
    x, shift = 0, 0

    def literal(pixels: np.ndarray) -> int:
        nonlocal x, shift
        if len(pixels):
            blocks.append(pixels)
            repeats.append(np.ones(len(pixels), np.int64))
            x, shift = x + len(pixels), 0
        return len(pixels)

    while x < width:
        window = min(width - x, (len(data) - offset) // 4)
        if window == 0:
            raise _truncated(path, scanline, count)
        pixels = np.frombuffer(data, np.uint8, 4 * window, offset).reshape(window, 4)
        used = 0
        for marker in np.flatnonzero((pixels[:, :3] == 1).all(axis=1)).tolist():
            used += literal(pixels[used:used + min(marker - used, width - x)])
            if x == width:
                break
            times = int(pixels[marker, 3]) << shift
            if x == 0 or x + times > width:
                raise _corrupt(path, scanline, count, f"a repeat of {times} pixels at x={x}")
            repeats[-1][-1] += times
            x, used, shift = x + times, used + 1, shift + 8
        used += literal(pixels[used:used + min(window - used, width - x)])
        offset += 4 * used
    return np.repeat(np.concatenate(blocks), np.concatenate(repeats), axis=0), offset


def _scanlines(path: Any, data: bytes, offset: int, count: int, width: int) -> np.ndarray:
    """RGBE bytes ``[count, width, 4]`` of the scanlines, in file order. Rows are kept as
    they are decoded and stacked at the end, so memory follows the data actually decoded,
    not the size the header declares."""
    rows = []
    adaptive = RGBE.rle_widths[0] <= width <= RGBE.rle_widths[1]
    marker = bytes((2, 2, width >> 8, width & 0xFF)) if adaptive else b""
    for scanline in range(count):
        lead = data[offset:offset + 4]
        if len(lead) < 4:
            raise _truncated(path, scanline, count)
        if adaptive and lead[0] == 2 and lead[1] == 2 and lead[2] < 128:
            if lead != marker:
                raise _corrupt(path, scanline, count,
                               f"a width of {lead[2] << 8 | lead[3]} (not {width})")
            planes, offset = _adaptive_scanline(path, data, offset + 4, width, scanline, count)
            rows.append(np.frombuffer(planes, np.uint8).reshape(4, width).T)
        else:
            row, offset = _old_scanline(path, data, offset, width, scanline, count)
            rows.append(row)
    return np.stack(rows)


def read_hdr(path: str | os.PathLike, *, max_pixels: int = 2**28) -> RadianceImage:
    """Read a Radiance RGBE picture as scene-linear float32 RGB, top row first.

    Parameters
    ----------
    path
        A ``.hdr`` / ``.pic`` file: any ``#?`` program name, ``FORMAT=32-bit_rle_rgbe`` (or
        no FORMAT line), any of the eight resolution strings (``-Y H +X W`` is standard;
        ``+Y`` is bottom-up, ``-X`` right to left, ``+X W -Y H`` stores columns), flat, old
        or adaptive run-length scanlines.
    max_pixels
        Pictures declaring more pixels are refused from the header, before allocating.

    Returns
    -------
    RadianceImage
        Pixels exactly as OpenImageIO decodes them (EXPOSURE not divided out), oriented so
        row 0 is the top and column 0 the left.

    Raises
    ------
    ValueError
        Not a Radiance picture, XYZE pixels, too many pixels, or truncated/corrupt data
        (the message names the file and the scanline).

    References
    ----------
    Radiance File Formats, "Picture File Format"; Ward, "Real Pixels" (1991).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_hdr(f"{folder}/grey.hdr", np.full((2, 9, 3), 0.18, np.float32))
    >>> read_hdr(f"{folder}/grey.hdr").pixels[1, 8]
    array([0.1796875, 0.1796875, 0.1796875], dtype=float32)
    """
    return decode_hdr(Path(path).read_bytes(), name=str(path), max_pixels=max_pixels)


def decode_hdr(data: bytes, *, name: str = "data", max_pixels: int = 2**28) -> RadianceImage:
    """Decode the bytes of a Radiance RGBE picture (what :func:`read_hdr` reads from a file).

    Parameters
    ----------
    data
        The file's bytes.
    name
        What to call ``data`` in errors (every error names it).
    max_pixels
        As :func:`read_hdr`.

    Returns
    -------
    RadianceImage
        As :func:`read_hdr`.
    """
    data = bytes(data)
    if not data.startswith(b"#?"):
        raise ValueError(f"{name} is not a Radiance picture (it does not start with '#?'); "
                         "pass a .hdr/.pic file")
    header_end = data.find(b"\n\n")
    resolution = _RESOLUTION.match(data, header_end + 2) if header_end >= 0 else None
    if resolution is None or resolution[2] == resolution[5]:
        raise ValueError(f"{name} has no valid resolution line (such as '-Y 512 +X 1024') "
                         "after the header's blank line; the file is corrupt")
    fields = _header(name, data[:header_end].decode("latin-1"))
    first_sign, first_axis, count, second_sign, _, width = resolution.groups()
    count, width = int(count), int(width)
    if not 0 < count * width <= max_pixels:
        raise ValueError(f"{name} declares {count} x {width} = {count * width} pixels, outside "
                         f"1..max_pixels={max_pixels}; the header is corrupt or hostile (raise "
                         "max_pixels to read a trusted file)")
    pixels = decode_rgbe(_scanlines(name, data, resolution.end(), count, width))
    if first_axis == b"X":
        pixels = pixels.transpose(1, 0, 2)
        y_sign, x_sign = second_sign, first_sign
    else:
        y_sign, x_sign = first_sign, second_sign
    if y_sign == b"+":
        pixels = pixels[::-1]
    if x_sign == b"-":
        pixels = pixels[:, ::-1]
    return RadianceImage(pixels=np.ascontiguousarray(pixels), **fields)


def _counting(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ... n-1 for each n in ``lengths``, concatenated."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return np.repeat(starts, lengths) + _counting(lengths)


def _adaptive_rle(rgbe: np.ndarray) -> np.ndarray:
    """Adaptive run-length bytes of ``[H, W, 4]`` RGBE scanlines, vectorised.

    Packets are those of rgbe.c ``RGBE_WriteBytes_RLE`` for each component row: runs of one
    byte split into pieces of at most 127 from their start; pieces of 4 or more are runs,
    a lone piece of 2-3 bytes between them a short run, anything else literal bytes in
    packets of at most 128.
    """
    height, width, _ = rgbe.shape
    stream = np.ascontiguousarray(rgbe.transpose(0, 2, 1)).reshape(-1)
    starts = np.flatnonzero(np.r_[True, stream[1:] != stream[:-1]]
                            | (np.arange(stream.size) % width == 0))
    ends = np.r_[starts[1:], stream.size]
    pieces = -(-(ends - starts) // RGBE.max_run)
    piece_start = np.repeat(starts, pieces) + RGBE.max_run * _counting(pieces)
    piece_length = np.minimum(np.repeat(ends, pieces) - piece_start, RGBE.max_run)
    long = piece_length >= RGBE.min_run
    row = piece_start // width
    gap_first = ~long & (np.r_[True, long[:-1]] | np.r_[True, row[1:] != row[:-1]])
    gap = (np.cumsum(gap_first) - 1)[~long]
    gap_start = piece_start[gap_first]
    gap_pieces = np.bincount(gap, minlength=len(gap_start))
    gap_length = np.bincount(gap, piece_length[~long], len(gap_start)).astype(np.int64)
    short_run = (gap_pieces == 1) & (gap_length > 1)
    run_start = np.r_[piece_start[long], gap_start[short_run]]
    run_length = np.r_[piece_length[long], gap_length[short_run]]
    literal_gaps = -(-gap_length[~short_run] // RGBE.max_literal)
    literal_start = (np.repeat(gap_start[~short_run], literal_gaps)
                     + RGBE.max_literal * _counting(literal_gaps))
    literal_end = np.repeat(gap_start[~short_run] + gap_length[~short_run], literal_gaps)
    literal_length = np.minimum(literal_end - literal_start, RGBE.max_literal)
    marker_start = np.arange(height) * 4 * width
    # Order every packet by where its bytes start; a scanline's marker precedes its data.
    key = np.r_[marker_start * 2, run_start * 2 + 1, literal_start * 2 + 1]
    size = np.r_[np.full(height, 4), np.full(len(run_start), 2), literal_length + 1]
    order = np.argsort(key, kind="stable")
    offset = np.empty_like(size)
    offset[order] = np.cumsum(size[order]) - size[order]
    marker_at, run_at, literal_at = np.split(offset, [height, height + len(run_start)])
    encoded = np.empty(int(size.sum()), np.uint8)
    encoded[_ranges(marker_at, np.full(height, 4))] = np.tile(
        [2, 2, width >> 8, width & 0xFF], height)
    encoded[run_at] = 128 + run_length
    encoded[run_at + 1] = stream[run_start]
    encoded[literal_at] = literal_length
    encoded[_ranges(literal_at + 1, literal_length)] = stream[_ranges(literal_start,
                                                                      literal_length)]
    return encoded


def write_hdr(path: str | os.PathLike, image: Any, *, overwrite: bool = False,
              exposure: float | None = None) -> Path:
    """Write scene-linear RGB as a Radiance RGBE picture, atomically and without clobbering.

    Parameters
    ----------
    path
        Destination; an existing file raises ``FileExistsError`` unless ``overwrite``.
    image
        ``[H, W, 3]`` numpy array or torch tensor, top row first. Values must be finite,
        non-negative and below 2**127 (RGBE has no sign, NaN or Inf); others raise
        ``ValueError`` with the count, nothing is clamped.
    exposure
        Written as an ``EXPOSURE=`` line: the multiplier already applied to ``image``
        (readers divide by it to get radiance); pixels are written unchanged.

    Returns
    -------
    Path
        ``path``. The file is ``#?RADIANCE``, ``FORMAT=32-bit_rle_rgbe``, ``-Y H +X W``
        with adaptive run-length scanlines (flat when W < 8 or W > 32767), byte for byte
        what OpenImageIO writes for the same pixels when ``exposure`` is None.

    References
    ----------
    Radiance File Formats, "Picture File Format"; Walter, rgbe.c ``RGBE_WritePixels_RLE``.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> sky = write_hdr(f"{folder}/sky.hdr", np.full((4, 8, 3), 1e3, np.float32))
    >>> sky.stat().st_size  # 45 header bytes + 4 scanlines x (marker + 4 runs) = 45 + 4 x 12
    93
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().float().numpy()
    rgb = np.asarray(image, np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"image has shape {tuple(rgb.shape)}, expected [H, W, 3] RGB; pass "
                         "one frame (image[0] of a batch) with alpha removed")
    lines = ["#?RADIANCE"]
    if exposure is not None:
        if not (math.isfinite(exposure) and exposure > 0):
            raise ValueError(f"exposure is {exposure}; pass a finite multiplier above 0 "
                             "(or None for no EXPOSURE line)")
        lines.append(f"EXPOSURE={float(exposure)!r}")
    height, width, _ = rgb.shape
    lines += [f"FORMAT={RGBE_FORMAT}", "", f"-Y {height} +X {width}", ""]
    _check_storable(rgb, "image")
    rgbe = _encode(rgb)
    if RGBE.rle_widths[0] <= width <= RGBE.rle_widths[1]:
        payload = _adaptive_rle(rgbe).tobytes()
    else:
        payload = rgbe.tobytes()
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_bytes("\n".join(lines).encode("ascii") + payload)
    return Path(path)
