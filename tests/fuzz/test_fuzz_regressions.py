"""Each failure the fuzzers found, as the smallest input that shows it: a valid file with
the one change the shrunk input carried. Every one raised something other than a clear
ValueError, or allocated far more than the file could describe, before its fix."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from comfyui_hdr.hdr import exr, gainmap_metadata, radiance, ultrahdr
from comfyui_hdr.hdr.gainmap_metadata import GainMapMetadata
from comfyui_hdr.hdr.jpeg_markers import read_segments

NAME = "upload.jpg"
SMALL_PEAK = 8 * 2**20
"""Bytes a refused file may allocate (Python and numpy, as tracemalloc sees them): far
below the hundreds of MiB its header claimed."""


def _patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def _peak_while_refused(read, match: str) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- EXR ---------------------------------------------------------------------------------

@pytest.fixture
def layered(tmp_path) -> bytes:
    pixels = np.linspace(0.0, 10.0, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    return exr.write_exr(tmp_path / "seed.exr", {"": pixels, "depth": exr.Layer(
        pixels[..., 0], ("Z",))}, metadata={"note": "abc", "chromaticitiez": "<1>"}
    ).read_bytes()


@pytest.mark.parametrize(("old", "new"), [
    (b"depth.Z\0", b"depth.\xfa\0"),  # a channel name that is not UTF-8
    (b"abc", b"\xfabc"),  # a text attribute that is not UTF-8
], ids=["channel name", "text attribute"])
def test_exr_header_the_bindings_cannot_convert_is_a_value_error_naming_the_file(
        tmp_path, layered, old, new):
    path = tmp_path / "upload.exr"
    path.write_bytes(_patched(layered, old, new))
    with pytest.raises(ValueError, match=f"{path} is not a readable OpenEXR file"):
        exr.read_exr(path)


def test_exr_part_of_an_unknown_type_is_a_value_error_naming_the_file(tmp_path):
    pixels = np.ones((4, 6, 3), np.float32)
    data = exr.write_exr(tmp_path / "seed.exr", {"": pixels, "spec": pixels},
                         multipart=True).read_bytes()
    typed = b"type\0string\0" + struct.pack("<i", 13) + b"scanlineimage"
    path = tmp_path / "upload.exr"
    # The first part's type becomes an empty string.
    path.write_bytes(data.replace(typed, b"type\0string\0" + struct.pack("<i", 0), 1))
    with pytest.raises(ValueError, match=f"{path} is not a readable OpenEXR file"):
        exr.read_exr(path)


def test_exr_attribute_named_chromaticities_of_another_type_is_kept_as_it_is(tmp_path,
                                                                             layered):
    path = tmp_path / "upload.exr"
    path.write_bytes(_patched(layered, b"chromaticitiez\0string", b"chromaticities\0string"))
    assert exr.read_exr(path).header["chromaticities"] == "<1>"


# --- Ultra HDR -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ultrahdr_file() -> bytes:
    x = np.linspace(0.0, 1.0, 32, dtype=np.float32)
    stops = 0.18 * 2.0 ** (8 * x) * np.ones((16, 1), np.float32)
    return ultrahdr.encode_ultrahdr(np.stack([stops, stops, stops], -1))


def _primary_segment(data: bytes, marker: int):
    return next(item for item in read_segments(data)[0] if item.marker == marker)


@pytest.mark.parametrize(("table", "value", "reason"), [
    (0, 0xFF, "cannot identify image file"),  # Pillow: UnidentifiedImageError
    (1, 0x00, "broken data stream"),  # table 1 redefines table 0: OSError
])
def test_ultrahdr_base_pillow_cannot_decode_is_a_value_error_naming_the_file(
        ultrahdr_file, table, value, reason):
    # The first byte of a DQT segment: the table's precision and number (T.81 B.2.4.1).
    segment = [item for item in read_segments(ultrahdr_file)[0] if item.marker == 0xDB][table]
    broken = bytearray(ultrahdr_file)
    broken[segment.offset + 4] = value
    with pytest.raises(ValueError, match=f"{NAME}: the base image cannot be decoded "
                                         f"\\({reason}"):
        ultrahdr.decode_ultrahdr(bytes(broken), name=NAME)


@pytest.mark.parametrize(("size", "match"), [
    (8000, f"{NAME} declares 8000 x 8000 pixels but holds 1513 bytes"),
    (9000, f"{NAME} declares 9000 x 9000 = 81000000 pixels, over max_pixels=67108864"),
])
def test_ultrahdr_frame_larger_than_its_bytes_or_the_limit_is_refused_before_decoding(
        ultrahdr_file, size, match):
    frame = _primary_segment(ultrahdr_file, 0xC0)
    claimed = bytearray(ultrahdr_file)
    struct.pack_into(">HH", claimed, frame.offset + 5, size, size)
    # Before: Pillow decoded a 8000 x 8000 picture of grey from 1.5 KB (367 MiB traced).
    peak = _peak_while_refused(lambda: ultrahdr.decode_ultrahdr(bytes(claimed), name=NAME),
                               match)
    assert peak < SMALL_PEAK


# --- XMP --------------------------------------------------------------------------------

def test_xmp_with_a_dtd_is_refused_not_expanded():
    xmp = gainmap_metadata.to_xmp(GainMapMetadata(2.0, alternate_hdr_headroom=2.0))
    with_entity = ('<!DOCTYPE x [<!ENTITY max "3.0">]>'
                   + xmp.replace('hdrgm:GainMapMax="2.0"', 'hdrgm:GainMapMax="&max;"'))
    with pytest.raises(ValueError, match="xmp holds a DTD or entity declaration"):
        gainmap_metadata.from_xmp(with_entity)


def test_xmp_without_a_required_value_says_which():
    xmp = gainmap_metadata.to_xmp(GainMapMetadata(2.0, alternate_hdr_headroom=2.0))
    with pytest.raises(ValueError) as error:
        gainmap_metadata.from_xmp(xmp.replace('hdrgm:GainMapMax="2.0" ', ""))
    assert str(error.value) == "xmp lacks the required hdrgm:GainMapMax"


# --- Radiance ----------------------------------------------------------------------------

def _radiance(resolution: bytes, pixels: bytes) -> bytes:
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + resolution + b"\n" + pixels


def test_radiance_size_of_thousands_of_digits_is_no_resolution_line(tmp_path):
    path = tmp_path / "upload.hdr"
    path.write_bytes(_radiance(b"-Y 2 +X " + b"1" * 5000, bytes(8)))
    # Before: int() refused 5000 digits with a message that named no file.
    with pytest.raises(ValueError, match=f"{path} has no valid resolution line"):
        radiance.read_hdr(path)


@pytest.mark.parametrize(("resolution", "pixels"), [
    (b"-Y 16384 +X 16384", bytes((128, 64, 32, 129))),  # adaptive width, one pixel of data
    (b"-Y 1 +X 268435456", bytes((128, 64, 32, 129, 1, 1, 1, 255))),  # old run-length
], ids=["adaptive", "old run-length"])
def test_radiance_declared_size_costs_no_memory_until_the_data_fills_it(tmp_path, resolution,
                                                                        pixels):
    path = tmp_path / "upload.hdr"
    path.write_bytes(_radiance(resolution, pixels))
    # Before: 1 GiB allocated for the declared pixels before the first scanline was read
    # (and for the old scheme, bytes() of the width failed past 65535).
    peak = _peak_while_refused(lambda: radiance.read_hdr(path),
                               f"{path} ends inside scanline 0")
    assert peak < SMALL_PEAK


def test_radiance_old_run_length_rows_decode_from_bytes_as_from_a_file(tmp_path):
    first = radiance.encode_rgbe([[0.5, 0.25, 1.0]]).tobytes()
    data = _radiance(b"-Y 1 +X 298", first + bytes((1, 1, 1, 41, 1, 1, 1, 1)))
    # 1 literal pixel, 41 repeats, then 1 << 8 more: 298 pixels of one colour.
    pixels = radiance.decode_hdr(data).pixels
    assert pixels.shape == (1, 298, 3)
    np.testing.assert_array_equal(pixels[0], np.tile([0.5, 0.25, 1.0], (298, 1)))
    (tmp_path / "old.hdr").write_bytes(data)
    np.testing.assert_array_equal(radiance.read_hdr(tmp_path / "old.hdr").pixels, pixels)
