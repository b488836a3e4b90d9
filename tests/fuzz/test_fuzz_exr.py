"""Fuzzed EXR loader: ``read_exr`` (OpenEXR's header and pixel readers, then the pack's
layer selection, window and size checks, header conversion and assembly; see ``_fuzz.py``
for what passes).

Each input is written to a file (in /dev/shm when there is one) because OpenEXR's Python
bindings read files. Seeds: the pack's writer (a default RGB layer plus a ``depth.Z``
layer, float, ZIP, Rec.2020 chromaticities; an RGBA half PIZ file; two parts, RLE) and
OpenImageIO's tiled writer (half, 16 x 16 tiles). ``-s`` prints the counts and time.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from _fuzz import Field, Seed, fuzz

from comfyui_hdr.hdr import exr

FUZZ_SEED = 2003  # OpenEXR's first release
INPUTS = 100_000
MAX_BYTES = 2**24
"""read_exr's max_bytes in the fuzz: the caller's limit on what a read may allocate."""
HEADROOM = 8 * MAX_BYTES
"""The allocation bound checked: OpenEXR's arrays, our assembled copy and the interleaved
fallback each stay within MAX_BYTES."""
TOKENS = (b"channels\0chlist\0", b"dataWindow\0box2i\0", b"compression\0compression\0",
          b"tiles\0tiledesc\0", b"type\0string\0", b"\0\0\0\0", b"\xff\xff\xff\x7f")


def _pixels(height: int, width: int, channels: int) -> np.ndarray:
    values = np.linspace(-0.5, 2000.0, height * width * channels, dtype=np.float32)
    return values.reshape(height, width, channels)


def _fields(data: bytes) -> tuple[Field, ...]:
    """Attribute sizes, window corners and chunk offsets of every part's header (OpenEXR
    file layout: magic, version, then ``name\\0 type\\0 int32 size value`` per attribute,
    a 0 byte after each header, then the 64-bit chunk offsets)."""
    fields, position = [], 8
    multipart = bool(data[5] & 0x10)
    while position < len(data) and data[position] != 0:
        while data[position] != 0:
            name_end = data.index(b"\0", position)
            type_end = data.index(b"\0", name_end + 1)
            size = struct.unpack_from("<i", data, type_end + 1)[0]
            fields.append(Field(type_end + 1, 4, "little"))
            value = type_end + 5
            if data[type_end - 5:type_end] == b"box2i":
                fields += [Field(value + 4 * corner, 4, "little") for corner in range(4)]
            position = value + size
        position += 1
        if not multipart:
            break
    offsets = position + (1 if multipart else 0)
    fields += [Field(offsets + 8 * chunk, 8, "little") for chunk in range(4)]
    return tuple(fields)


def _oiio_tiled(path: Path) -> bytes:
    spec = oiio.ImageSpec(20, 12, 3, oiio.HALF)
    spec.tile_width = spec.tile_height = 16
    output = oiio.ImageOutput.create(str(path))
    assert output.open(str(path), spec), oiio.geterror()
    assert output.write_image(_pixels(12, 20, 3).astype(np.float16)), output.geterror()
    output.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def folder():
    shared = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shared if shared.is_dir() else None) as path:
        yield Path(path)


def _seeds(folder: Path) -> list[Seed]:
    paths = [
        exr.write_exr(folder / "layers.exr", {"": _pixels(6, 10, 3), "depth": exr.Layer(
            _pixels(6, 10, 1), ("Z",))}, pixel_type="float", gamut="rec2020"),
        exr.write_exr(folder / "rgba.exr", _pixels(8, 8, 4), compression="piz"),
        exr.write_exr(folder / "parts.exr", {"": _pixels(4, 6, 3), "spec": _pixels(4, 6, 3)},
                      multipart=True, compression="rle"),
    ]
    data = [path.read_bytes() for path in paths]
    data.append(_oiio_tiled(folder / "tiled.exr"))
    return [Seed(item, _fields(item)) for item in data]


def test_fuzz_exr_loader(folder):
    path = folder / "upload.exr"

    def read(data: bytes) -> None:
        path.write_bytes(data)
        exr.read_exr(path, max_bytes=MAX_BYTES)

    report = fuzz("EXR loader", read, _seeds(folder), INPUTS, seed=FUZZ_SEED, tokens=TOKENS,
                  name=str(path), headroom_bytes=HEADROOM)
    print(report.summary(), report.refusal_text(), sep="\n")
    assert not report.failures, report.failure_text()
    assert report.accepted > 0 and len(report.refusals) > 1, report.summary()
