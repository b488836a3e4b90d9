"""hdr.radiance against OpenImageIO (the ``OpenImageIO`` module and ``oiiotool`` in the venv).

OpenImageIO's HDR reader and writer descend from Bruce Walter's rgbe.c, the convention our
module follows, so pixels must agree bit for bit and written files byte for byte. Where OIIO
cannot be the oracle (old-style run-length scanlines, which it reads as flat pixels; the
``+X +Y`` / ``-X -Y`` resolution strings, whose EXIF orientations 6 and 8 it swaps relative to
Radiance's resolu.c ``pix2loc``; several EXPOSURE lines, of which it keeps the last) the
fixtures are built by hand and the expected numbers derived from the Radiance file format
reference in comments.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from comfyui_hdr.hdr.radiance import decode_rgbe, encode_rgbe, read_hdr, write_hdr

OIIOTOOL = str(Path(sys.executable).parent / "oiiotool")
STANDARD_HEADER = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n"


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Log-uniform scene-linear RGB from 1e-4 to 1e4, with black, flat and repeated runs."""
    rng = np.random.default_rng(seed)
    rgb = np.exp(rng.uniform(np.log(1e-4), np.log(1e4), (height, width, 3))).astype(np.float32)
    rgb[0, : width // 2] = 1.0
    rgb[1] = 0.0
    rgb[2, ::3] = 7.0
    rgb[3] = rgb[3, :1]
    return rgb


def oiio_write(path: Path, rgb: np.ndarray) -> None:
    output = oiio.ImageOutput.create(str(path))
    assert output.open(str(path), oiio.ImageSpec(rgb.shape[1], rgb.shape[0], 3, "float"))
    assert output.write_image(rgb)
    output.close()


def oiio_buffer(path: Path) -> oiio.ImageBuf:
    buffer = oiio.ImageBuf(str(path))
    buffer.read(force=True)
    assert not buffer.has_error, buffer.geterror()
    return buffer


def oiio_pixels(path: Path) -> np.ndarray:
    """OIIO's float pixels in file order (its Orientation attribute not applied)."""
    return oiio_buffer(path).get_pixels(oiio.FLOAT)


def picture(resolution: bytes, payload: bytes, header: bytes = STANDARD_HEADER) -> bytes:
    return header + resolution + b"\n" + payload


def test_reads_oiiotool_written_hdr_bit_exactly(tmp_path):
    # 37 x 53: odd sizes; the EXR is made by OIIO, converted to .hdr by the oiiotool CLI.
    rgb = scene(37, 53)
    oiio_write(tmp_path / "scene.exr", rgb)
    subprocess.run([OIIOTOOL, str(tmp_path / "scene.exr"), "-o", str(tmp_path / "scene.hdr")],
                   check=True, capture_output=True)
    ours = read_hdr(tmp_path / "scene.hdr")
    theirs = oiio_pixels(tmp_path / "scene.hdr")
    assert ours.pixels.dtype == np.float32 and ours.pixels.shape == (37, 53, 3)
    # Bit-exact: both compute mantissa * 2**(exponent - 136), exact in float32.
    assert np.array_equal(ours.pixels.view(np.uint32), theirs.view(np.uint32))
    assert (ours.exposure, ours.program, ours.format) == (1.0, "RADIANCE", "32-bit_rle_rgbe")


def test_oiio_reads_our_file_as_we_do(tmp_path):
    rgb = scene(37, 53, seed=1)
    write_hdr(tmp_path / "ours.hdr", rgb)
    ours = read_hdr(tmp_path / "ours.hdr").pixels
    assert np.array_equal(oiio_pixels(tmp_path / "ours.hdr"), ours)
    assert np.array_equal(ours, decode_rgbe(encode_rgbe(rgb)))


@pytest.mark.parametrize("width", [5, 8, 53, 129, 300, 32767, 32768])
def test_our_file_is_byte_identical_to_oiio_written_one(tmp_path, width):
    # Same header, same float2rgbe truncation, same rgbe.c run-length packets (runs of 4+
    # split at 127, a lone 2-3 byte run as a short run, literals of up to 128); widths below
    # 8 and above 32767 are flat in both.
    rng = np.random.default_rng(width)
    rgb = scene(4, width, seed=width)
    runs = np.repeat(np.arange(width), rng.integers(1, 300, width))[:width]
    rgb[2] = np.exp(rng.uniform(-3, 3, (width, 3))).astype(np.float32)[runs]
    oiio_write(tmp_path / "oiio.hdr", rgb)
    write_hdr(tmp_path / "ours.hdr", rgb)
    assert (tmp_path / "ours.hdr").read_bytes() == (tmp_path / "oiio.hdr").read_bytes()


def test_every_exponent_byte_decodes_as_oiio_does(tmp_path):
    # One flat scanline holding exponent bytes 0..255 (0 is black; 1 gives float32
    # subnormals 2**-135 * m) with mantissas 255, 128, 3.
    rgbe = np.stack([np.full(256, 255), np.full(256, 128), np.full(256, 3), np.arange(256)], -1)
    (tmp_path / "exponents.hdr").write_bytes(picture(b"-Y 1 +X 256", rgbe.astype(np.uint8)
                                                     .tobytes()))
    ours = read_hdr(tmp_path / "exponents.hdr").pixels[0].view(np.int32)
    theirs = oiio_pixels(tmp_path / "exponents.hdr")[0].view(np.int32)
    # OIIO's exponent table prints 2**(e - 136) with 8 digits, one digit short of float32's
    # round trip, so 2**-96, 2**87 and 2**90 (bytes 40, 223, 226) are one float32 step low
    # there; we use exact powers of two. Every value from about 1e-26 to 1e28 agrees exactly.
    off_by_one_step = [40, 223, 226]
    assert np.array_equal(np.delete(ours, off_by_one_step, 0),
                          np.delete(theirs, off_by_one_step, 0))
    assert np.abs(ours - theirs).max() <= 1
    pixels = ours.view(np.float32)
    assert pixels[136].tolist() == [255.0, 128.0, 3.0] and pixels[0].tolist() == [0, 0, 0]
    assert pixels[1, 2] == 3 * 2.0**-135


def test_round_trip_error_is_under_one_step_of_the_brightest_channel(tmp_path):
    # rgbe.c truncates (floor) and OIIO decodes without Radiance's half step, so a stored
    # value is never above the original and is below it by less than one step
    # 2**(e - 136); the brightest channel's mantissa is >= 128, so one step is at most
    # 2**-7 of the brightest channel (the 8-bit mantissa's top bit is always set).
    rgb = scene(37, 53, seed=2)
    write_hdr(tmp_path / "scene.hdr", rgb)
    stored = read_hdr(tmp_path / "scene.hdr").pixels
    brightest = rgb.max(axis=-1, keepdims=True)
    assert np.all(stored <= rgb)
    lit = brightest > 0  # black pixels are stored exactly
    assert np.all(np.where(lit, rgb - stored < 2.0**-7 * brightest, stored == 0))
    # Radiance's colr_color adds the half step back, (m + 0.5) * 2**(e - 136), halving the
    # worst error to 2**-8 of the brightest channel: the 0.5-step difference between them.
    step = np.ldexp(1.0, encode_rgbe(rgb)[..., 3:].astype(np.int32) - 136)
    radiance = np.where(lit, stored + 0.5 * step, 0)
    assert np.all(np.abs(radiance - rgb) <= 2.0**-8 * brightest)


def test_old_style_run_length_scanlines(tmp_path):
    # Radiance's old scheme: a (1, 1, 1, n) pixel repeats the previous pixel n << shift
    # times, shift growing by 8 for consecutive repeats. Scanline 0: (1, .5, .25) then
    # 43 repeats then 1 << 8 = 256 repeats (300 pixels). Scanline 1: (3.125, 1.5625,
    # 0.78125) = (200, 100, 50) * 2**(130 - 136), 0.00244140625 = 160 * 2**(120 - 136)
    # and 2 repeats of it, then 296 flat pixels of 0.5 = 128 * 2**(128 - 136).
    first = bytes([128, 64, 32, 129, 1, 1, 1, 43, 1, 1, 1, 1])
    second = (bytes([200, 100, 50, 130, 160, 160, 160, 120, 1, 1, 1, 2])
              + bytes([128, 128, 128, 128]) * 296)
    (tmp_path / "old.hdr").write_bytes(picture(b"-Y 2 +X 300", first + second))
    pixels = read_hdr(tmp_path / "old.hdr").pixels
    expected = np.empty((2, 300, 3), np.float32)
    expected[0] = [1.0, 0.5, 0.25]
    expected[1, 0] = [3.125, 1.5625, 0.78125]
    expected[1, 1:4] = 0.00244140625
    expected[1, 4:] = 0.5
    assert np.array_equal(pixels, expected)


def test_old_style_repeat_with_nothing_to_repeat_is_corrupt(tmp_path):
    (tmp_path / "bad.hdr").write_bytes(picture(b"-Y 1 +X 10", bytes([1, 1, 1, 10])))
    with pytest.raises(ValueError, match=r"bad\.hdr has a repeat of 10 pixels at x=0 in "
                                         r"scanline 0 of 1"):
        read_hdr(tmp_path / "bad.hdr")


def test_flat_scanlines_read_as_oiio_reads_them(tmp_path):
    rgb = np.array([[1.0, 0.5, 0.25], [3.125, 0, 7.0], [0, 0, 0]], np.float32)[
        np.arange(30) % 3].reshape(3, 10, 3)
    (tmp_path / "flat.hdr").write_bytes(picture(b"-Y 3 +X 10", encode_rgbe(rgb).tobytes()))
    pixels = read_hdr(tmp_path / "flat.hdr").pixels
    assert np.array_equal(pixels, oiio_pixels(tmp_path / "flat.hdr"))
    assert np.array_equal(pixels, rgb)  # all exact RGBE values


def test_narrow_image_is_written_flat(tmp_path):
    # Scanlines narrower than 8 pixels cannot be run-length encoded: 4 bytes a pixel.
    rgb = scene(5, 7, seed=3)
    path = write_hdr(tmp_path / "narrow.hdr", rgb)
    header = STANDARD_HEADER + b"-Y 5 +X 7\n"
    assert path.read_bytes() == header + encode_rgbe(rgb).tobytes()
    assert np.array_equal(read_hdr(path).pixels, oiio_pixels(path))


ORIENTATIONS = {
    # Stored scanlines [[1, 2, 3], [4, 5, 6]]; expected image top row first, from Radiance
    # resolu.c pix2loc: Y-major strings hold rows, X-major ones columns; +Y runs bottom-up,
    # -X right to left.
    b"-Y 2 +X 3": [[1, 2, 3], [4, 5, 6]],
    b"-Y 2 -X 3": [[3, 2, 1], [6, 5, 4]],
    b"+Y 2 +X 3": [[4, 5, 6], [1, 2, 3]],
    b"+Y 2 -X 3": [[6, 5, 4], [3, 2, 1]],
    b"+X 2 -Y 3": [[1, 4], [2, 5], [3, 6]],
    b"+X 2 +Y 3": [[3, 6], [2, 5], [1, 4]],
    b"-X 2 -Y 3": [[4, 1], [5, 2], [6, 3]],
    b"-X 2 +Y 3": [[6, 3], [5, 2], [4, 1]],
}
# OIIO 3.2 maps '+X +Y' to EXIF 6 and '-X -Y' to EXIF 8, the reverse of pix2loc; it agrees
# on the other six, so those are also checked against its ImageBufAlgo.reorient.
OIIO_AGREES = {b"-Y 2 +X 3", b"-Y 2 -X 3", b"+Y 2 +X 3", b"+Y 2 -X 3", b"+X 2 -Y 3",
               b"-X 2 +Y 3"}


@pytest.mark.parametrize("resolution", list(ORIENTATIONS))
def test_resolution_string_orientations(tmp_path, resolution):
    stored = np.repeat(np.arange(1, 7, dtype=np.float32).reshape(2, 3, 1), 3, axis=-1)
    path = tmp_path / "oriented.hdr"
    path.write_bytes(picture(resolution, encode_rgbe(stored).tobytes()))
    pixels = read_hdr(path).pixels
    assert pixels.flags.c_contiguous
    assert np.array_equal(pixels[..., 1], np.array(ORIENTATIONS[resolution], np.float32))
    if resolution in OIIO_AGREES:
        reoriented = oiio.ImageBufAlgo.reorient(oiio_buffer(path)).get_pixels(oiio.FLOAT)
        assert np.array_equal(pixels, reoriented)


def test_rgbe_magic_and_other_programs(tmp_path):
    payload = encode_rgbe(np.full((2, 9, 3), 0.5, np.float32)).tobytes()
    for program in (b"RGBE", b"PFILT"):
        path = tmp_path / f"{program.decode()}.hdr"
        path.write_bytes(picture(b"-Y 2 +X 9", payload,
                                 b"#?" + program + b"\nFORMAT=32-bit_rle_rgbe\n\n"))
        image = read_hdr(path)
        assert image.program == program.decode()
        assert np.array_equal(image.pixels, oiio_pixels(path))


def test_exposure_lines_multiply_and_pixels_stay_as_stored(tmp_path):
    payload = encode_rgbe(np.full((2, 9, 3), 0.5, np.float32)).tobytes()
    once = tmp_path / "once.hdr"
    once.write_bytes(picture(b"-Y 2 +X 9", payload, b"#?RADIANCE\nEXPOSURE=2\n"
                                                    b"FORMAT=32-bit_rle_rgbe\n\n"))
    twice = tmp_path / "twice.hdr"
    twice.write_bytes(picture(b"-Y 2 +X 9", payload, b"#?RADIANCE\nEXPOSURE=2\n"
                                                     b"EXPOSURE= 3.0\nFORMAT=32-bit_rle_rgbe\n\n"))
    assert read_hdr(once).exposure == oiio_buffer(once).spec().getattribute("hdr:exposure") == 2
    # Radiance File Formats: exposures are cumulative (2 x 3); OIIO keeps only the last line.
    assert read_hdr(twice).exposure == 6.0
    # Neither we nor OIIO divide the pixels by the exposure.
    assert np.array_equal(read_hdr(twice).pixels, oiio_pixels(twice))
    assert np.all(read_hdr(twice).pixels == 0.5)


def test_header_variables(tmp_path):
    header = (b"#?RADIANCE\nrpict -vf view.vf -x 9 -y 2 scene.oct\nCOLORCORR= 1 2 0.5\n"
              b"COLORCORR=2 2 2\nPRIMARIES= 0.64 0.33 0.3 0.6 0.15 0.06 0.3127 0.329\n"
              b"VIEW= -vtv -vp 0 0 1\nSOFTWARE=RADIANCE 5.4\nFORMAT=32-bit_rle_rgbe\n\n")
    path = tmp_path / "header.hdr"
    path.write_bytes(picture(b"-Y 2 +X 9", bytes(4 * 18), header))
    image = read_hdr(path)
    assert image.colorcorr == (2.0, 4.0, 1.0)
    assert image.primaries == (0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329)
    assert image.header == {"VIEW": "-vtv -vp 0 0 1", "SOFTWARE": "RADIANCE 5.4"}
    assert not image.pixels.any()


def test_missing_format_line_means_rgbe(tmp_path):
    # Radiance treats a picture without FORMAT as RGBE (OIIO refuses it).
    path = tmp_path / "old.hdr"
    path.write_bytes(picture(b"-Y 1 +X 2", bytes([128, 64, 32, 129] * 2), b"#?RADIANCE\n\n"))
    assert read_hdr(path).pixels.tolist() == [[[1.0, 0.5, 0.25]] * 2]


def test_xyze_is_refused_with_the_conversion(tmp_path):
    path = tmp_path / "xyz.hdr"
    path.write_bytes(picture(b"-Y 1 +X 2", bytes(8),
                             b"#?RADIANCE\nFORMAT=32-bit_rle_xyze\n\n"))
    with pytest.raises(ValueError, match=r"xyz\.hdr is 32-bit_rle_xyze .*ra_xyze -r"):
        read_hdr(path)


def test_not_a_radiance_picture(tmp_path):
    path = tmp_path / "fake.hdr"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"fake\.hdr is not a Radiance picture"):
        read_hdr(path)


def test_truncated_and_corrupt_files_name_the_scanline(tmp_path):
    # A flat 6 x 20 image: each scanline is a 4-byte marker and one 2-byte run per component.
    source = write_hdr(tmp_path / "flat.hdr", np.full((6, 20, 3), 0.25, np.float32))
    data = source.read_bytes()
    header = len(STANDARD_HEADER + b"-Y 6 +X 20\n")
    assert len(data) == header + 6 * 12
    cut = tmp_path / "cut.hdr"
    cut.write_bytes(data[: header + 3 * 12 + 5])
    with pytest.raises(ValueError, match=r"cut\.hdr ends inside scanline 3 of 6"):
        read_hdr(cut)
    corrupt = tmp_path / "corrupt.hdr"
    corrupt.write_bytes(data[: header + 4] + b"\x00" + data[header + 5:])
    with pytest.raises(ValueError, match=r"corrupt\.hdr has a literal run of 0 bytes in "
                                         r"scanline 0 of 6"):
        read_hdr(corrupt)
    corrupt.write_bytes(data[: header + 12 + 4] + b"\xff" + data[header + 12 + 5:])
    with pytest.raises(ValueError, match=r"a run past the scanline's end in scanline 1 of 6"):
        read_hdr(corrupt)
    corrupt.write_bytes(data[: header + 24 + 3] + b"\x15" + data[header + 24 + 4:])
    with pytest.raises(ValueError, match=r"a width of 21 \(not 20\) in scanline 2 of 6"):
        read_hdr(corrupt)


def test_dimension_bomb_is_refused_before_allocating(tmp_path):
    path = tmp_path / "bomb.hdr"
    path.write_bytes(picture(b"-Y 100000 +X 100000", bytes([2, 2, 0x86, 0xA0])))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bomb\.hdr declares 100000 x 100000 = "
                                             r"10000000000 pixels.*max_pixels=268435456"):
            read_hdr(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # a 10^10-pixel buffer would be 40 GB; nothing near 1 MiB was taken
    write_hdr(tmp_path / "small.hdr", scene(37, 53))
    with pytest.raises(ValueError, match=r"37 x 53 = 1961 pixels, outside 1..max_pixels=1000"):
        read_hdr(tmp_path / "small.hdr", max_pixels=1000)


def test_writer_refuses_negative_and_non_finite_values(tmp_path):
    rgb = scene(6, 9)
    negative = rgb.copy()
    negative[0, 0, 0] = -1.0
    negative[4, 2] = -0.5
    with pytest.raises(ValueError, match=r"image has 4 negative values.*np\.maximum"):
        write_hdr(tmp_path / "negative.hdr", negative)
    non_finite = rgb.copy()
    non_finite[1, 1] = [np.nan, np.inf, 1.0]
    non_finite[5, 8, 2] = np.nan
    with pytest.raises(ValueError, match=r"image has 3 NaN or infinite values"):
        write_hdr(tmp_path / "nan.hdr", non_finite)
    with pytest.raises(ValueError, match=r"image has 3 values at or above 2\*\*127"):
        write_hdr(tmp_path / "huge.hdr", np.full((1, 1, 3), 2.0**127, np.float32))
    with pytest.raises(ValueError, match=r"image has shape \(6, 9, 4\), expected \[H, W, 3\]"):
        write_hdr(tmp_path / "rgba.hdr", np.ones((6, 9, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = write_hdr(tmp_path / "plate.hdr", scene(6, 9))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"plate\.hdr already exists.*overwrite=True"):
        write_hdr(path, scene(6, 9, seed=5))
    assert path.read_bytes() == before
    write_hdr(path, scene(6, 9, seed=5), overwrite=True)
    assert np.array_equal(read_hdr(path).pixels, decode_rgbe(encode_rgbe(scene(6, 9, seed=5))))
    assert [p.name for p in tmp_path.iterdir()] == ["plate.hdr"]  # no temporary left behind


def test_torch_input_and_exposure_line(tmp_path):
    rgb = scene(6, 9)
    write_hdr(tmp_path / "numpy.hdr", rgb)
    write_hdr(tmp_path / "torch.hdr", torch.from_numpy(rgb).double())
    assert (tmp_path / "torch.hdr").read_bytes() == (tmp_path / "numpy.hdr").read_bytes()
    path = write_hdr(tmp_path / "exposed.hdr", rgb, exposure=2.5)
    assert read_hdr(path).exposure == 2.5
    assert oiio_buffer(path).spec().getattribute("hdr:exposure") == 2.5
    assert np.array_equal(oiio_pixels(path), read_hdr(tmp_path / "numpy.hdr").pixels)
    with pytest.raises(ValueError, match=r"exposure is -1\.0; pass a finite multiplier"):
        write_hdr(tmp_path / "bad.hdr", rgb, exposure=-1.0)
