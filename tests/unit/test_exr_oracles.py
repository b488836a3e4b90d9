"""hdr.exr against independent EXR implementations: exrheader, oiiotool and OpenImageIO.

exrheader is Debian's (apt package ``openexr``, OpenEXR 3.1); oiiotool and the OpenImageIO
module come from the ``openimageio`` wheel in the venv. Files we write must read back in
them with the channels, types, compression and attributes we asked for, and files they write
(multi-layer, multi-part, tiled, mip-mapped, one channel, offset data window) must load
with our reader as the same pixels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from comfyui_hdr.hdr.exr import Layer, list_layers, read_exr, write_exr

OIIOTOOL = str(Path(sys.executable).parent / "oiiotool")
EXRHEADER = shutil.which("exrheader") or "/usr/bin/exrheader"
HEIGHT, WIDTH = 16, 24
EXRHEADER_COMPRESSION = {
    "none": "none", "rle": "run-length encoding", "zips": "zip, individual scanlines",
    "zip": "zip, multi-scanline blocks", "piz": "piz", "pxr24": "pxr24", "b44": "b44",
    "b44a": "b44a", "dwaa": "dwa, small scanline blocks", "dwab": "dwa, medium scanline blocks",
}


def pixels(channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.18 * np.exp(rng.normal(0, 2, (HEIGHT, WIDTH, channels)))).astype(np.float32)


def exrheader(path: Path) -> dict[str, tuple[str, str]]:
    """exrheader's text as {attribute: (type, value text with continuation lines)}."""
    output = subprocess.run([EXRHEADER, str(path)], capture_output=True, text=True,
                            check=True).stdout
    attributes: dict[str, tuple[str, str]] = {}
    name = None
    for line in output.splitlines():
        match = re.match(r"^(\S+) \(type (\w+)\):\s*(.*)$", line)
        if match:
            name = match.group(1)
            attributes[name] = (match.group(2), match.group(3))
        elif name and line.startswith("    "):
            kind, value = attributes[name]
            attributes[name] = (kind, f"{value}\n{line.strip()}".strip())
    return attributes


def oiiotool_info(path: Path) -> str:
    return subprocess.run([OIIOTOOL, "--info", "-v", str(path)], capture_output=True,
                          text=True, check=True).stdout


def write_tagged(path: Path, compression: str) -> Path:
    return write_exr(path, {"": pixels(4), "depth": Layer(pixels(1, 1), ("Z",), "float")},
                     compression=compression, colourspace="ACEScg", interop_id="lin_ap1_scene",
                     gamut="ap1", white_luminance=100.0,
                     dwa_level=60.0 if compression.startswith("dwa") else None,
                     metadata={"prompt": {"3": {"seed": 7}}, "seed": 2**40, "steps": 30,
                               "cfg": 7.5})


@pytest.mark.parametrize("compression", sorted(EXRHEADER_COMPRESSION))
def test_exrheader_reads_our_channels_types_compression_and_colour_metadata(tmp_path,
                                                                            compression):
    header = exrheader(write_tagged(tmp_path / "tagged.exr", compression))
    assert header["channels"][1].splitlines() == [
        "A, 16-bit floating-point, sampling 1 1", "B, 16-bit floating-point, sampling 1 1",
        "G, 16-bit floating-point, sampling 1 1", "R, 16-bit floating-point, sampling 1 1",
        "depth.Z, 32-bit floating-point, sampling 1 1"]
    assert header["compression"] == ("compression", EXRHEADER_COMPRESSION[compression])
    assert header["chromaticities"][1].splitlines() == [
        "red   (0.713 0.293)", "green (0.165 0.83)", "blue  (0.128 0.044)",
        "white (0.32168 0.33767)"]
    assert header["adoptedNeutral"] == ("v2f", "(0.32168 0.33767)")
    assert header["whiteLuminance"] == ("float", "100")
    assert header["colorInteropID"] == ("string", '"lin_ap1_scene"')
    assert header["oiio:ColorSpace"] == ("string", '"ACEScg"')
    assert header["prompt"] == ("string", '"{"3": {"seed": 7}}"')
    assert header["seed"] == ("string", '"1099511627776"')
    assert header["steps"] == ("int", "30") and header["cfg"] == ("double", "7.5")
    if compression.startswith("dwa"):
        assert header["dwaCompressionLevel"] == ("float", "60")


def test_exrheader_sees_one_named_part_per_layer(tmp_path):
    path = write_exr(tmp_path / "parts.exr", {"": pixels(3), "diffuse": pixels(3, 1)},
                     multipart=True)
    output = subprocess.run([EXRHEADER, str(path)], capture_output=True, text=True,
                            check=True).stdout
    assert re.findall(r'name \(type string\): "(\w+)"', output) == ["rgba", "diffuse"]
    assert "diffuse.R, 16-bit floating-point" in output


def test_oiiotool_reads_our_metadata(tmp_path):
    info = oiiotool_info(write_tagged(tmp_path / "tagged.exr", "dwaa"))
    assert "24 x   16, 5 channel, half/half/half/half/float openexr" in info
    assert "channel list: R (half), G (half), B (half), A (half), depth.Z (float)" in info
    assert 'compression: "dwaa"' in info and "openexr:dwaCompressionLevel: 60" in info
    assert "chromaticities: 0.713, 0.293, 0.165, 0.83, 0.128, 0.044, 0.32168, 0.33767" in info
    assert 'colorInteropID: "lin_ap1_scene"' in info
    assert 'oiio:ColorSpace: "lin_ap1_scene"' in info  # OIIO maps colorInteropID to its field
    assert "whiteLuminance: 100" in info and 'seed: "1099511627776"' in info
    assert "steps: 30" in info and "cfg: 7.5" in info


def test_oiio_reads_the_ocio_name_when_there_is_no_interop_id(tmp_path):
    path = write_exr(tmp_path / "f.exr", pixels(3), colourspace="ARRI LogC4")
    assert 'oiio:ColorSpace: "ARRI LogC4"' in oiiotool_info(path)


@pytest.mark.parametrize("pixel_type", ["half", "float"])
def test_oiio_reads_the_pixels_we_wrote_in_every_layer(tmp_path, pixel_type):
    beauty, albedo, depth = pixels(4), pixels(3, 1), pixels(1, 2)
    path = write_exr(tmp_path / "layers.exr", {"": beauty, "albedo": albedo,
                                               "depth": Layer(depth, ("Z",))},
                     pixel_type=pixel_type, compression="piz")
    buffer = oiio.ImageBuf(str(path))
    theirs = dict(zip(buffer.spec().channelnames,
                      np.moveaxis(buffer.get_pixels(oiio.FLOAT), -1, 0), strict=True))
    ours = read_exr(path)
    for index, name in enumerate(ours.channels):
        np.testing.assert_array_equal(theirs[name], ours.pixels[..., index])
    np.testing.assert_array_equal(theirs["A"], ours.alpha)
    for layer in ("albedo", "depth"):
        image = read_exr(path, layer=layer)
        for index, name in enumerate(image.channels):
            np.testing.assert_array_equal(theirs[f"{layer}.{name}"], image.pixels[..., index])
    stored = beauty[..., :3].astype(np.float16 if pixel_type == "half" else np.float32)
    np.testing.assert_array_equal(ours.pixels, stored.astype(np.float32))


def test_oiio_reads_each_part_of_our_multipart_file(tmp_path):
    path = write_exr(tmp_path / "parts.exr", {"": pixels(3), "diffuse": pixels(3, 1)},
                     multipart=True, pixel_type="float")
    info = oiiotool_info(path)
    assert "2 subimages: 24x16 [f,f,f], 24x16 [f,f,f]" in info
    assert 'oiio:subimagename: "rgba"' in info
    for subimage, layer in enumerate(("", "diffuse")):
        buffer = oiio.ImageBuf(str(path), subimage, 0)
        np.testing.assert_array_equal(buffer.get_pixels(oiio.FLOAT),
                                      read_exr(path, layer=layer).pixels)


def _write_with_oiio(path: Path, spec: oiio.ImageSpec, data: np.ndarray) -> None:
    output = oiio.ImageOutput.create(str(path))
    assert output.open(str(path), spec), oiio.geterror()
    assert output.write_image(data), output.geterror()
    output.close()


def _oiio_pixels(path: Path, subimage: int = 0) -> np.ndarray:
    buffer = oiio.ImageBuf(str(path), subimage, 0)
    return buffer.get_pixels(oiio.FLOAT, roi=buffer.roi_full)  # zeros outside the data window


def test_we_read_oiio_multilayer_file(tmp_path):
    spec = oiio.ImageSpec(WIDTH, HEIGHT, 7, oiio.HALF)
    spec.channelnames = ("R", "G", "B", "A", "diffuse.R", "diffuse.G", "diffuse.B")
    data = pixels(7)
    _write_with_oiio(tmp_path / "ml.exr", spec, data)
    assert list_layers(tmp_path / "ml.exr") == {"": ("R", "G", "B", "A"),
                                                 "diffuse": ("R", "G", "B")}
    theirs = _oiio_pixels(tmp_path / "ml.exr")
    image = read_exr(tmp_path / "ml.exr")
    np.testing.assert_array_equal(image.pixels, theirs[..., :3])
    np.testing.assert_array_equal(image.alpha, theirs[..., 3])
    np.testing.assert_array_equal(read_exr(tmp_path / "ml.exr", layer="diffuse").pixels,
                                  theirs[..., 4:])


def test_we_read_oiio_tiled_and_one_channel_files(tmp_path):
    spec = oiio.ImageSpec(WIDTH, HEIGHT, 3, oiio.FLOAT)
    spec.tile_width = spec.tile_height = 16  # 24 wide: the right tiles are partial
    _write_with_oiio(tmp_path / "tiled.exr", spec, pixels(3))
    np.testing.assert_array_equal(read_exr(tmp_path / "tiled.exr").pixels,
                                  _oiio_pixels(tmp_path / "tiled.exr"))
    spec = oiio.ImageSpec(WIDTH, HEIGHT, 1, oiio.HALF)
    spec.channelnames = ("Y",)
    _write_with_oiio(tmp_path / "luma.exr", spec, pixels(1))
    image = read_exr(tmp_path / "luma.exr")
    assert image.channels == ("Y",) and image.pixels.shape == (HEIGHT, WIDTH, 1)
    np.testing.assert_array_equal(image.pixels, _oiio_pixels(tmp_path / "luma.exr"))


def test_we_read_level_zero_of_an_oiio_mipmapped_texture(tmp_path):
    source = oiio.ImageBuf(oiio.ImageSpec(WIDTH, HEIGHT, 3, oiio.FLOAT))
    source.set_pixels(oiio.ROI(), pixels(3))
    config = oiio.ImageSpec()
    config.set_format(oiio.HALF)
    assert oiio.ImageBufAlgo.make_texture(oiio.MakeTxTexture, source,
                                          str(tmp_path / "tex.exr"), config), oiio.geterror()
    assert oiio.ImageBuf(str(tmp_path / "tex.exr")).nmiplevels == 5  # 24x16 down to 1x1
    np.testing.assert_array_equal(read_exr(tmp_path / "tex.exr").pixels,
                                  _oiio_pixels(tmp_path / "tex.exr"))


def test_we_read_oiio_offset_data_window_over_the_display_window(tmp_path):
    spec = oiio.ImageSpec(10, 6, 3, oiio.FLOAT)
    spec.x, spec.y = 5, 3
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, WIDTH, HEIGHT
    _write_with_oiio(tmp_path / "dw.exr", spec, pixels(3)[:6, :10])
    image = read_exr(tmp_path / "dw.exr")
    assert image.data_window == (5, 3, 14, 8) and image.display_window == (0, 0, 23, 15)
    theirs = _oiio_pixels(tmp_path / "dw.exr")
    np.testing.assert_array_equal(image.pixels, theirs)
    assert theirs[0, 0].tolist() == [0, 0, 0] and theirs[3, 5].any()


def test_we_read_oiio_multi_subimage_files_by_part_name(tmp_path):
    path = tmp_path / "parts.exr"
    specs = [oiio.ImageSpec(WIDTH, HEIGHT, 3, oiio.HALF) for _ in range(2)]
    specs[0].attribute("name", "beauty")
    specs[1].attribute("name", "albedo")
    output = oiio.ImageOutput.create(str(path))
    assert output.open(str(path), specs)
    output.write_image(pixels(3))
    output.open(str(path), specs[1], "appendsubimage")
    output.write_image(pixels(3, 1))
    output.close()
    # Both parts hold plain R, G, B: the layers take the part names.
    assert list_layers(path) == {"beauty": ("R", "G", "B"), "albedo": ("R", "G", "B")}
    for subimage, layer in enumerate(("beauty", "albedo")):
        np.testing.assert_array_equal(read_exr(path, layer=layer).pixels,
                                      _oiio_pixels(path, subimage))
