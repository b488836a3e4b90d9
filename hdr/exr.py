"""OpenEXR in and out: layers, parts, colour metadata, atomic writes (frame sequences:
:mod:`.exr_sequence`).

Built on the OpenEXR 3.x Python bindings (``OpenEXR.File`` / ``OpenEXR.Part``). Pixels are
scene-linear data and are never clamped: values above 1.0, negatives, and (when asked)
NaN/Inf go to the file as they are.

Colour metadata this module writes, and why these names:

- ``chromaticities`` and ``adoptedNeutral`` (OpenEXR standard attributes, Technical
  Introduction, "Standard Attributes") from ``gamut``: what every EXR reader understands.
- ``colorInteropID`` (OpenEXR 3.5 standard attribute; Color Interop Forum IDs such as
  ``lin_ap1_scene``): the attribute OIIO 3.x maps to and from its ``oiio:ColorSpace`` and
  Blender writes; OCIO 2.5+ configs carry these IDs as colourspace aliases.
- ``oiio:ColorSpace``: the exact OCIO colourspace name; OIIO reads it when the file has no
  ``colorInteropID``, and :func:`read_exr` returns it as ``colourspace``.
- ``whiteLuminance``: nits of RGB (1, 1, 1).

A file's layers are the channel-name prefixes (``diffuse.R`` is channel ``R`` of layer
``diffuse``; ``R`` is in the default layer ``''``), gathered across parts. Reading and writing
set OpenEXR's process-wide thread pool to the CPU count if it is off (its default).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
import torch

from .atomic import atomic_path
from .exr_checks import (
    VERIFIED_CODECS,
    check_channel_names,
    colourspace_note,
    non_finite_message,
    valid_name,
    verify_lossy,
)
from .gamut import Gamut, get_gamut

COMPRESSIONS: dict[str, OpenEXR.Compression] = {
    ("none" if name == "NO_COMPRESSION" else name.removesuffix("_COMPRESSION").lower()): value
    for name, value in OpenEXR.Compression.__members__.items()
    if name != "NUM_COMPRESSION_METHODS"
}
"""Codecs of this OpenEXR build by lowercase name. Lossless: none, rle, zips, zip, piz, zstd,
htj2k256, htj2k32. pxr24 rounds float to 24 bits (half is kept exactly); b44/b44a are lossy
for half only; dwaa/dwab (DCT, level ``dwa_level``) and lj2k are lossy. Files written with a
lossy codec are decoded and checked before they are kept (:mod:`.exr_checks`). Readers need
OpenEXR >= 3.4 for htj2k and >= 3.5 for zstd and lj2k (older Nuke, Debian's exrheader
cannot)."""

COLOURSPACE_ATTRIBUTE = "oiio:ColorSpace"
INTEROP_ID_ATTRIBUTE = "colorInteropID"
PIXEL_TYPES = {"half": np.float16, "float": np.float32}
_TYPE_NAMES = {np.dtype(np.float16): "half", np.dtype(np.float32): "float",
               np.dtype(np.uint32): "uint"}
_EXPONENT_BITS = {np.dtype(np.float16): (np.uint16, 0x7C00),
                  np.dtype(np.float32): (np.uint32, 0x7F800000)}
_DEFAULT_CHANNELS = {1: ("Y",), 2: ("Y", "A"), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}
_CHANNEL_RANK = {"R": 0, "G": 1, "B": 2, "Y": 3, "A": 4}
_RESERVED = {
    "channels", "compression", "dataWindow", "displayWindow", "lineOrder", "pixelAspectRatio",
    "screenWindowCenter", "screenWindowWidth", "type", "name", "tiles", "version", "chunkCount",
    "chromaticities", "adoptedNeutral", "whiteLuminance", "dwaCompressionLevel",
    "originalDataWindow", "sensorAcquisitionRectangle", "sensorCenterOffset",
    "sensorOverallDimensions", "cameraColorBalance", COLOURSPACE_ATTRIBUTE, INTEROP_ID_ATTRIBUTE,
}
DEFAULT_MAX_BYTES = 4 * 2**30
DEFAULT_MAX_DIMENSION = 2**16


class UnreadableExrError(ValueError):
    """A file that exists but is not a readable OpenEXR file (wrong format, truncated
    header, unreadable names or permissions)."""


@dataclass(frozen=True)
class Layer:
    """Pixels of one layer, ``[H, W, C]``, with explicit channel names and pixel type.

    ``channels`` defaults to Y / YA / RGB / RGBA for 1-4 channels; ``pixel_type`` ('half' or
    'float') defaults to the file's; ``label`` names the pixels in error messages (e.g. the
    node input they came from).
    """

    pixels: Any
    channels: tuple[str, ...] | None = None
    pixel_type: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class ExrImage:
    """One layer of an EXR file, covering its display window.

    ``pixels`` is ``[H, W, C]`` without alpha; ``alpha`` is ``[H, W]`` (straight, as stored) or
    None. Pixels outside the data window are 0 (see ``notes``). ``pixel_types`` maps each
    channel of the layer to 'half', 'float' or 'uint'; ``header`` holds the part's attributes
    as plain Python values.
    """

    pixels: np.ndarray
    channels: tuple[str, ...]
    alpha: np.ndarray | None
    layer: str
    layers: tuple[str, ...]
    pixel_types: dict[str, str]
    header: dict[str, Any]
    colourspace: str | None
    interop_id: str | None
    data_window: tuple[int, int, int, int]
    display_window: tuple[int, int, int, int]
    part: int
    notes: tuple[str, ...]


def _ensure_threads() -> None:
    if OpenEXR.global_thread_count() == 0:
        OpenEXR.set_global_thread_count(os.cpu_count() or 1)


def _stored(pixels: Any, dtype: type, where: str) -> np.ndarray:
    if isinstance(pixels, torch.Tensor):
        if pixels.is_complex() or pixels.dtype == torch.bool:
            raise ValueError(f"{where} has dtype {pixels.dtype}; pass float or integer pixels")
        tensor = pixels.detach()
    else:
        array = np.asarray(pixels)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{where} has dtype {array.dtype}; pass float or integer pixels")
        if array.dtype == dtype and array.flags.c_contiguous:
            return array
        if not array.flags.writeable:
            return np.ascontiguousarray(array, dtype=dtype)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    # torch converts float32 -> float16 about 3x faster than numpy (vectorised, threaded).
    target = torch.float16 if dtype is np.float16 else torch.float32
    return tensor.to("cpu", target).contiguous().numpy()


def _layer_planes(layers: Any, pixel_type: str, check_finite: bool) -> list[tuple]:
    if not isinstance(layers, Mapping):
        layers = {"": layers}
    if not layers:
        raise ValueError("layers is empty; pass {'': image} or {layer_name: image, ...}")
    planes, shape = [], None
    for name, layer in layers.items():
        layer = layer if isinstance(layer, Layer) else Layer(layer)
        where = f"{layer.label} (layer {name!r})" if layer.label else f"layer {name!r}"
        if not isinstance(name, str) or name and not valid_name(name):
            raise ValueError(f"{where}: layer names are '' or dot-separated words of printable "
                             "ASCII like 'diffuse'")
        kind = layer.pixel_type or pixel_type
        if kind not in PIXEL_TYPES:
            raise ValueError(f"{where}: pixel_type {kind!r} is unknown; use 'half' or 'float'")
        stored = _stored(layer.pixels, PIXEL_TYPES[kind], where)
        if stored.ndim == 2:
            stored = stored[..., None]
        if stored.ndim != 3 or 0 in stored.shape:
            raise ValueError(f"{where} has shape {tuple(stored.shape)}; pass [H, W] or [H, W, C] "
                             "(a [B, H, W, C] batch goes to write_exr_sequence)")
        if shape is not None and stored.shape[:2] != shape:
            raise ValueError(f"{where} is {stored.shape[:2]} but the first layer is {shape}; "
                             "every layer of a file has the same height and width")
        shape = stored.shape[:2]
        channels = tuple(layer.channels or _DEFAULT_CHANNELS.get(stored.shape[2], ()))
        if len(channels) != stored.shape[2] or len(set(channels)) != len(channels) or any(
                not valid_name(c) or "." in c for c in channels):
            raise ValueError(f"{where} has {stored.shape[2]} channels named {channels}; give "
                             "one unique name (printable ASCII) without '.' per channel, e.g. "
                             "Layer(pixels, channels=('R', 'G', 'B', 'Z'))")
        if check_finite:  # NaN and Inf are the values whose exponent bits are all ones
            unsigned, exponent = _EXPONENT_BITS[stored.dtype]
            if np.count_nonzero((stored.view(unsigned) & exponent) == exponent):
                raise ValueError(non_finite_message(layer.pixels, kind, where))
        planes.append((name, channels, stored, where))
    return planes


def _channel_dict(name: str, channels: tuple[str, ...], stored: np.ndarray,
                  taken: set[str]) -> dict[str, np.ndarray]:
    if channels in (("R", "G", "B"), ("R", "G", "B", "A")) and name not in taken | {"RGB", "RGBA"}:
        return {name or "".join(channels): stored}
    prefix = f"{name}." if name else ""
    return {prefix + channel: np.ascontiguousarray(stored[..., index])
            for index, channel in enumerate(channels)}


def _attribute(key: str, value: Any) -> Any:
    if not isinstance(key, str) or not key or key in _RESERVED:
        raise ValueError(f"metadata key {key!r} is empty or a reserved EXR attribute; rename it "
                         "(colour metadata goes through colourspace, interop_id and gamut)")
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value) if -2**31 <= value < 2**31 else str(value)
    if isinstance(value, (float, np.floating)):
        return np.array([value], dtype=np.float64)
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    raise ValueError(f"metadata {key!r} is a {type(value).__name__}; pass str, int, float, "
                     "bool, or a JSON-able dict or list")


def _header(compression: str, dwa_level: float | None, metadata: Mapping | None,
            colourspace: str | None, interop_id: str | None, gamut: str | Gamut | None,
            white_luminance: float | None) -> dict[str, Any]:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r} is unknown; use one of "
                         f"{', '.join(COMPRESSIONS)}")
    header = {key: _attribute(key, value) for key, value in (metadata or {}).items()}
    header.update(compression=COMPRESSIONS[compression], type=OpenEXR.scanlineimage)
    if dwa_level is not None:
        if compression not in ("dwaa", "dwab") or not dwa_level > 0:
            raise ValueError(f"dwa_level={dwa_level!r} needs compression 'dwaa' or 'dwab' and a "
                             "level > 0 (45 is OpenEXR's default, higher is smaller and lossier)")
        header["dwaCompressionLevel"] = float(dwa_level)
    if colourspace is not None:
        header[COLOURSPACE_ATTRIBUTE] = str(colourspace)
    if interop_id is not None:
        header[INTEROP_ID_ATTRIBUTE] = str(interop_id)
    if gamut is not None:
        primaries = get_gamut(gamut)
        header["chromaticities"] = tuple(float(v) for xy in (primaries.red, primaries.green,
                                         primaries.blue, primaries.white) for v in xy)
        header["adoptedNeutral"] = tuple(float(v) for v in primaries.white)
    if white_luminance is not None:
        if not white_luminance > 0:
            raise ValueError(f"white_luminance={white_luminance!r}: give the nits of RGB 1.0, > 0")
        header["whiteLuminance"] = float(white_luminance)
    warnings = int(OpenEXR.checkColorMetadata(header))
    if warnings:
        reasons = "; ".join(OpenEXR.colorMetadataWarningToString(1 << bit)
                            for bit in range(16) if warnings >> bit & 1)
        raise ValueError(f"colour metadata contradicts itself ({reasons}); check gamut against "
                         f"interop_id {interop_id!r}")
    return header


def write_exr(path: str | os.PathLike, layers: Any, *, pixel_type: str = "half",
              compression: str = "zip", dwa_level: float | None = None,
              metadata: Mapping[str, Any] | None = None, colourspace: str | None = None,
              interop_id: str | None = None, gamut: str | Gamut | None = None,
              white_luminance: float | None = None, multipart: bool = False,
              overwrite: bool = False, check_finite: bool = True) -> Path:
    """Write scene-linear layers to an OpenEXR file, atomically and without clobbering.

    Parameters
    ----------
    path
        Destination file. An existing file raises ``FileExistsError`` unless ``overwrite``.
    layers
        ``{layer_name: pixels}`` ('' is the default layer), or one array. Pixels are numpy
        arrays or torch tensors ``[H, W]`` or ``[H, W, C]``, or a :class:`Layer` for explicit
        channel names; channels are stored as ``<layer>.<channel>``.
    pixel_type
        'half' (float16, the VFX default: 10-bit mantissa, max 65504) or 'float' (float32).
    compression, dwa_level
        A :data:`COMPRESSIONS` name; ``dwa_level`` sets ``dwaCompressionLevel`` for dwaa/dwab.
    metadata
        Extra attributes: str, int (beyond int32 stored as str), float (as double), bool, or
        a dict/list stored as JSON text (ComfyUI prompt and workflow).
    colourspace, interop_id, gamut, white_luminance
        OCIO colourspace name, Color Interop Forum ID, gamut name for ``chromaticities``
        and ``adoptedNeutral``, and nits of RGB 1.0; contradictions raise ``ValueError``.
    multipart
        One part per layer (named after the layer, 'rgba' for the default layer).
    check_finite
        Raise ``ValueError`` with the counts if a stored value would be NaN or Inf (NaN/Inf
        given, or values beyond half's 65504 stored as half).

    Returns
    -------
    Path
        ``path``.

    References
    ----------
    OpenEXR Technical Introduction (3.x), "Standard Attributes", "Multi-Part Files".

    >>> import tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> write_exr(f"{folder}/grey.exr", np.full((2, 2, 3), 0.18, np.float32)).name
    'grey.exr'
    """
    _ensure_threads()
    planes = _layer_planes(layers, pixel_type, check_finite)
    header = _header(compression, dwa_level, metadata, colourspace, interop_id, gamut,
                     white_luminance)
    if multipart:
        exr = OpenEXR.File([OpenEXR.Part(dict(header), _channel_dict(name, names, stored, set()),
                                         name or "rgba") for name, names, stored, _ in planes])
    else:
        taken = {f"{n}.{c}" if n else c for n, names, _, _ in planes for c in names}
        channels: dict[str, np.ndarray] = {}
        for name, names, stored, _ in planes:
            channels.update(_channel_dict(name, names, stored, taken))
        exr = OpenEXR.File(dict(header), channels)
    with atomic_path(path, overwrite=overwrite) as temporary:
        exr.write(str(temporary))
        if compression in VERIFIED_CODECS:
            written = {(f"{name}.{c}" if name else c): stored[..., index]
                       for name, names, stored, _ in planes for index, c in enumerate(names)}
            where = {(f"{name}.{c}" if name else c): label
                     for name, names, _, label in planes for c in names}
            verify_lossy(temporary, written, compression, where)
    return Path(path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            return [float(str(item)) for item in value.ravel()]
        return value.item() if value.size == 1 and value.dtype == np.float64 else value.tolist()
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, list):
        return [getattr(item, "name", item) for item in value]
    if isinstance(value, OpenEXR.Compression):
        return next(name for name, member in COMPRESSIONS.items() if member == value)
    if isinstance(value, (str, int, float)):
        return value
    return getattr(value, "name", str(value))


def _plain_header(header: dict[str, Any]) -> dict[str, Any]:
    plain = {key: _plain(value) for key, value in header.items()}
    chromaticities = plain.get("chromaticities")
    # float32 in the file: show its shortest decimal (an attribute of another type under
    # this name is kept as it is, as OpenEXR itself ignores it)
    if isinstance(chromaticities, tuple) and all(isinstance(v, float) for v in chromaticities):
        plain["chromaticities"] = tuple(float(str(np.float32(v))) for v in chromaticities)
    return plain


def _box(value: tuple) -> tuple[int, int, int, int]:
    (x_min, y_min), (x_max, y_max) = value
    return int(x_min), int(y_min), int(x_max), int(y_max)


def _headers(path: str | os.PathLike) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist; check the path")
    try:
        headers = [part.header for part in OpenEXR.File(str(path), header_only=True).parts]
        for header in headers:  # the bindings decode text lazily: decode all of it here
            _plain_header(header)
            [channel.name for channel in header["channels"]]
    except (RuntimeError, ValueError) as error:  # ValueError: e.g. text that is not UTF-8
        raise UnreadableExrError(f"{path} is not a readable OpenEXR file ({error})") from None
    check_channel_names(path, headers)
    return headers


def _layer_index(headers: list[dict]) -> dict[str, list[tuple[int, str, str]]]:
    entries = [(part, channel.name) for part, header in enumerate(headers)
               for channel in header["channels"]]
    full_names = [full for _, full in entries]
    qualify = len(set(full_names)) != len(full_names) or len(
        {part for part, full in entries if "." not in full}) > 1
    index: dict[str, list[tuple[int, str, str]]] = {}
    for part, full in entries:
        layer, _, channel = full.rpartition(".")
        if qualify:
            part_name = headers[part].get("name", f"part{part}")
            layer = f"{part_name}.{layer}" if layer else part_name
        index.setdefault(layer, []).append((part, full, channel))
    for members in index.values():
        members.sort(key=lambda m: (_CHANNEL_RANK.get(m[2], len(_CHANNEL_RANK)), m[2]))
    return dict(sorted(index.items(), key=lambda item: item[0] != ""))


def list_layers(path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """Return the layers of an EXR file and their channels, the default layer ('') first.

    >>> import tempfile, numpy as np
    >>> path = write_exr(f"{tempfile.mkdtemp()}/l.exr", {"": np.zeros((2, 2, 4)),
    ...                  "depth": Layer(np.zeros((2, 2)), ("Z",))})
    >>> list_layers(path)
    {'': ('R', 'G', 'B', 'A'), 'depth': ('Z',)}
    """
    return {layer: tuple(m[2] for m in members)
            for layer, members in _layer_index(_headers(path)).items()}


def _select(path: Any, headers: list[dict], layer: str | None, part: int | str | None) -> tuple:
    index = _layer_index(headers)
    notes = []
    if part is not None:
        names = [header.get("name", f"part{i}") for i, header in enumerate(headers)]
        if part not in names and part not in range(len(headers)):
            raise ValueError(f"part {part!r} is not in {path}; parts: {names} "
                             f"(or an index below {len(headers)})")
        number = part if isinstance(part, int) else names.index(part)
        index = {name: kept for name, members in index.items()
                 if (kept := [m for m in members if m[0] == number])}
    if not index:
        raise ValueError(f"{path} part {part!r} has no channels to read")
    if layer is None:
        layer = "" if "" in index else next(iter(index))
        if layer:
            notes.append(f"no default layer; read layer {layer!r} of {list(index)}")
    if layer not in index:
        raise ValueError(f"layer {layer!r} is not in {path}; available layers: "
                         f"{', '.join(map(repr, index))} ('' is the default layer)")
    members = index[layer]
    if len({m[0] for m in members}) > 1:
        raise ValueError(f"layer {layer!r} of {path} is split across parts; pass part=")
    return layer, members, tuple(index), notes


def _budget(path: Any, headers: list[dict], members: list, max_bytes: int,
            max_dimension: int) -> int:
    display = _box(headers[members[0][0]]["displayWindow"])
    needed = (display[2] - display[0] + 1) * (display[3] - display[1] + 1) * len(members) * 4
    for header in headers:
        if header.get("type") in (OpenEXR.deepscanline, OpenEXR.deeptile):
            raise ValueError(f"{path} holds deep data, which read_exr does not flatten; "
                             "flatten it first (e.g. oiiotool --flatten)")
        for channel in header["channels"]:
            if channel.xSampling != 1 or channel.ySampling != 1:
                raise ValueError(f"{path} channel {channel.name} is subsampled; convert it to "
                                 "full-resolution RGB first")
        for name in ("dataWindow", "displayWindow"):
            x_min, y_min, x_max, y_max = _box(header[name])
            width, height = x_max - x_min + 1, y_max - y_min + 1
            if not (0 < width <= max_dimension and 0 < height <= max_dimension):
                raise ValueError(f"{path} {name} is {width} x {height}, outside 1..{max_dimension}"
                                 "; the header is corrupt or hostile (raise max_dimension to "
                                 "read it anyway)")
        x_min, y_min, x_max, y_max = _box(header["dataWindow"])
        needed += (x_max - x_min + 1) * (y_max - y_min + 1) * len(header["channels"]) * 4
    if needed > max_bytes:
        raise ValueError(f"{path} needs about {needed / 2**30:.2f} GiB to read, over "
                         f"max_bytes={max_bytes}; raise max_bytes if the file is trusted")
    return needed


def _decode(path: Any, headers: list[dict], number: int,
            separate: bool = False) -> dict[str, tuple[np.ndarray, int | None]]:
    """Decode every part (the bindings cannot pick one); return part ``number``'s planes.

    The bindings interleave R, G, B(, A) of one layer into one array (no copy for us); a
    plane is (array, index into its last axis or None).
    """
    try:
        exr = OpenEXR.File(str(path), separate_channels=separate)
    except ValueError as error:  # e.g. R, G, B of mixed pixel types cannot be interleaved
        if separate:
            raise ValueError(f"{path} could not be decoded ({error})") from None
        return _decode(path, headers, number, separate=True)
    except (RuntimeError, MemoryError) as error:
        raise ValueError(f"{path} could not be decoded ({error})") from None
    if len(exr.parts) != len(headers):
        raise ValueError(f"{path} is truncated or corrupt: {len(headers) - len(exr.parts)} of "
                         f"{len(headers)} parts could not be decoded")
    planes: dict[str, tuple[np.ndarray, int | None]] = {}
    for key, channel in exr.parts[number].channels.items():
        pixels = channel.pixels
        if pixels.ndim == 3:
            prefix = "" if key in ("RGB", "RGBA") else f"{key}."
            for index, name in enumerate("RGBA"[:pixels.shape[2]]):
                planes[prefix + name] = (pixels, index)
        else:
            planes[key] = (pixels, None)
    if not separate and set(planes) != {c.name for c in headers[number]["channels"]}:
        return _decode(path, headers, number, separate=True)
    return planes


def _assemble(planes: list[tuple[np.ndarray, int | None]], dtype: Any,
              data: tuple, display: tuple) -> np.ndarray:
    out_dtype = np.dtype(dtype) if dtype is not None else np.result_type(
        *[array.dtype for array, _ in planes])
    first = planes[0][0]
    if len(planes) == 1 and first.ndim == 2:
        block = first[..., None].astype(out_dtype, copy=False)
    elif first.ndim == 3 and [(id(a), i) for a, i in planes] == [(id(first), i)
                                                                for i in range(len(planes))]:
        block = first if len(planes) == first.shape[2] else first[..., :len(planes)]
        block = block.astype(out_dtype, copy=False)
    else:
        block = np.empty(first.shape[:2] + (len(planes),), out_dtype)
        for index, (array, channel) in enumerate(planes):
            block[..., index] = array if channel is None else array[..., channel]
    if data == display:
        return block
    out = np.zeros((display[3] - display[1] + 1, display[2] - display[0] + 1, len(planes)),
                   out_dtype)
    x0, y0 = max(data[0], display[0]), max(data[1], display[1])
    x1, y1 = min(data[2], display[2]), min(data[3], display[3])
    if x0 <= x1 and y0 <= y1:
        out[y0 - display[1]:y1 - display[1] + 1, x0 - display[0]:x1 - display[0] + 1] = block[
            y0 - data[1]:y1 - data[1] + 1, x0 - data[0]:x1 - data[0] + 1]
    return out


def _read(path: Any, headers: list[dict], layer: str | None, part: int | str | None,
          dtype: Any) -> ExrImage:
    layer, members, layers, notes = _select(path, headers, layer, part)
    number = members[0][0]
    planes = _decode(path, headers, number)
    header = headers[number]
    data, display = _box(header["dataWindow"]), _box(header["displayWindow"])
    if data != display:
        notes.append(f"data window {data} differs from display window {display}; pixels "
                     "outside the data window are 0")
    names = [m[2] for m in members]
    colour = [planes[m[1]] for m in members if m[2] != "A" or len(members) == 1]
    alpha = [planes[m[1]] for m in members if m[2] == "A" and len(members) > 1]
    header_plain = _plain_header(header)
    colourspace = header_plain.get(COLOURSPACE_ATTRIBUTE, header_plain.get(INTEROP_ID_ATTRIBUTE))
    colourspace = colourspace_note(header_plain.get("chromaticities"), colourspace, notes)
    return ExrImage(
        pixels=_assemble(colour, dtype, data, display),
        channels=tuple(n for n in names if n != "A" or len(names) == 1),
        alpha=_assemble(alpha, dtype, data, display)[..., 0] if alpha else None,
        layer=layer, layers=layers,
        pixel_types={m[2]: _TYPE_NAMES[planes[m[1]][0].dtype] for m in members},
        header=header_plain, colourspace=colourspace,
        interop_id=header_plain.get(INTEROP_ID_ATTRIBUTE),
        data_window=data, display_window=display, part=number, notes=tuple(notes))


def read_exr(path: str | os.PathLike, *, layer: str | None = None, part: int | str | None = None,
             dtype: Any = np.float32, max_bytes: int = DEFAULT_MAX_BYTES,
             max_dimension: int = DEFAULT_MAX_DIMENSION) -> ExrImage:
    """Read one layer of an OpenEXR file (scanline or tiled, any part, any channel count).

    Parameters
    ----------
    path
        The file. Unreadable, truncated or corrupt files raise ``ValueError`` naming it.
    layer
        Layer name ('' is the default layer); None reads '' or, without it, the first layer.
        An unknown name raises ``ValueError`` listing the layers.
    part
        Part index or name, to pick among parts holding the same layer.
    dtype
        Output dtype (float32, ComfyUI's); None keeps the stored type (half/float/uint).
    max_bytes, max_dimension
        Safety limits checked on the header before any pixel is allocated: a window wider or
        taller than ``max_dimension``, or a read needing more than ``max_bytes``, is refused.

    Returns
    -------
    ExrImage
        Pixels over the display window, alpha split out, header and colour metadata.

    >>> import tempfile, numpy as np
    >>> path = write_exr(f"{tempfile.mkdtemp()}/a.exr", np.full((1, 2, 3), 4.5), gamut="ap1")
    >>> image = read_exr(path)
    >>> image.pixels[0, 0], image.channels, image.header["chromaticities"][:2]
    (array([4.5, 4.5, 4.5], dtype=float32), ('R', 'G', 'B'), (0.713, 0.293))
    """
    _ensure_threads()
    headers = _headers(path)
    members = _select(path, headers, layer, part)[1]
    _budget(path, headers, members, max_bytes, max_dimension)
    return _read(path, headers, layer, part, dtype)
