"""hdr.exr refuses what a file would not hold (issue 15): lossy codecs that change a value's
range, half overflow, names that read as another channel; reads name the primaries."""

from __future__ import annotations

import os
import re

import numpy as np
import OpenEXR
import pytest

from comfyui_hdr.hdr import exr, gamut, ocio
from comfyui_hdr.hdr.exr import Layer, read_exr, write_exr
from comfyui_hdr.hdr.exr_checks import PEAK_TOLERANCE_STOPS


def _grey_with(values, shape=(16, 16)) -> np.ndarray:
    """An RGB frame of values near mid grey with ``values`` in R, G and B of the first pixels."""
    rng = np.random.default_rng(0)
    pixels = (0.18 + 0.5 * rng.random(shape + (3,))).astype(np.float32)
    pixels.reshape(-1, 3)[:len(values)] = np.asarray(values, np.float32)[:, None]
    return pixels


@pytest.mark.parametrize("compression", ["dwaa", "dwab"])
def test_float_dwa_above_half_range_is_refused_not_clipped_and_leaves_no_file(tmp_path,
                                                                               compression):
    # Measured on OpenEXR 3.5 before this check: 1e6 and 70000 came back as 65248.
    with pytest.raises(ValueError, match=rf"layer '': compression '{compression}' would change "
                       r"channel 'R' beyond quantisation \(its largest \|value\| 1e\+06 came "
                       r"back as 65248\); DW.. codes channels R, G, B.*zip or piz.*"
                       r"pixel_type='half' with values <= 65504"):
        write_exr(tmp_path / "f.exr", _grey_with([1e6, 7e4]), pixel_type="float",
                  compression=compression)
    assert os.listdir(tmp_path) == []


def test_float_dwa_keeps_channels_it_does_not_code_as_half(tmp_path):
    # DWA compresses A, Z and other non-colour channels losslessly: 1e6 there is kept.
    depth = np.full((16, 16), 1e6, np.float32)
    pixels = np.concatenate([_grey_with([1.0]), depth[..., None] / 1e6], -1)
    path = write_exr(tmp_path / "f.exr", {"": pixels, "depth": Layer(depth, ("Z",))},
                     pixel_type="float", compression="dwaa")
    np.testing.assert_array_equal(read_exr(path, layer="depth").pixels[..., 0], depth)
    np.testing.assert_array_equal(read_exr(path).alpha, pixels[..., 3])


def _raw_round_trip(pixels: np.ndarray, compression: str) -> np.ndarray:
    """The codec's own round trip of half R (the oracle): OpenEXR without this pack."""
    path = "/dev/shm/raw_b44.exr" if os.path.isdir("/dev/shm") else "raw_b44.exr"
    OpenEXR.File({"compression": exr.COMPRESSIONS[compression], "type": OpenEXR.scanlineimage},
                 {"R": np.ascontiguousarray(pixels[..., 0]).astype(np.float16)}).write(path)
    try:
        return OpenEXR.File(path).channels()["R"].pixels.astype(np.float32)
    finally:
        os.remove(path)


@pytest.mark.parametrize("negative", [-1000.0, -50000.0])
@pytest.mark.parametrize("compression", ["b44", "b44a"])
def test_b44_half_blocks_mixing_large_negatives_are_refused(tmp_path, compression, negative):
    pixels = _grey_with([negative])
    back = _raw_round_trip(pixels, compression)
    peak, stored = np.abs(back[np.isfinite(back)]).max(), abs(float(np.float16(negative)))
    # The damage the codec itself does (measured: -1000 -> -1745, -49984 -> 27920).
    assert abs(np.log2(peak / stored)) > PEAK_TOLERANCE_STOPS
    with pytest.raises(ValueError, match=rf"'{compression}' would change channel 'R' beyond "
                       rf"quantisation \(its largest \|value\| {stored:g} came back as "
                       rf"{peak:g}\); B44 codes each 4x4 block.*zip or piz"):
        write_exr(tmp_path / "f.exr", pixels, compression=compression)
    assert os.listdir(tmp_path) == []
    # As float, B44 leaves the channel uncompressed: the same values are kept exactly.
    path = write_exr(tmp_path / "f.exr", pixels, pixel_type="float", compression=compression)
    np.testing.assert_array_equal(read_exr(path).pixels, pixels)


@pytest.mark.parametrize("compression, level", [("dwaa", 1000.0), ("dwab", 1000.0),
                                                ("b44", None), ("lj2k", None),
                                                ("pxr24", None)])
def test_lossy_codecs_normal_quantisation_passes(tmp_path, compression, level):
    # A 20000 highlight among values near grey: DWA at its largest level moved such a peak
    # by 0.19 stop (measured), well inside the half-stop tolerance; the file is kept.
    pixels = _grey_with([20000.0], shape=(64, 96))
    path = write_exr(tmp_path / "f.exr", pixels, compression=compression, dwa_level=level)
    assert abs(np.log2(read_exr(path).pixels.max() / 20000.0)) < PEAK_TOLERANCE_STOPS


def test_refusals_name_the_caller_label(tmp_path):
    pixels = _grey_with([1e5])
    with pytest.raises(ValueError, match=r"^extra_layer_2 \(layer 'spec'\) has 3 values beyond "
                       r"half's range \(largest \|value\| 100000 > 65504\), which half would "
                       r"store as Inf: use pixel_type='float', or scale the exposure down"):
        write_exr(tmp_path / "f.exr", {"spec": Layer(pixels, label="extra_layer_2")})


@pytest.mark.parametrize("name", ["..", ".G", "x..y", "G.", "R\u00e9", "\uff32", "R "])
def test_channel_names_that_would_read_as_another_channel_are_refused(tmp_path, name):
    plane = np.zeros((2, 2), np.float32)
    path = tmp_path / "odd.exr"
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"R": plane, "B": plane, name: plane + 1}).write(str(path))
    with pytest.raises(ValueError, match=rf"odd\.exr has a channel named {re.escape(repr(name))}, "
                       r"not an OpenEXR layer\.channel name.*rename it"):
        read_exr(path)
    with pytest.raises(ValueError, match="not an OpenEXR layer.channel name"):
        exr.list_layers(path)


def test_a_channel_name_that_is_not_utf8_is_an_unreadable_file(tmp_path):
    plane = np.zeros((2, 2), np.float32)
    path = tmp_path / "latin1.exr"
    OpenEXR.File({"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"Rx": plane}).write(str(path))
    path.write_bytes(path.read_bytes().replace(b"Rx\0", b"R\xe9\0", 1))
    with pytest.raises(exr.UnreadableExrError, match=r"latin1\.exr is not a readable OpenEXR"):
        read_exr(path)


@pytest.mark.parametrize("layers", [{"\u00e9": np.zeros((2, 2, 3))},
                                    {"": Layer(np.zeros((2, 2, 3)), ("R", "G", "B "))}])
def test_the_writer_refuses_the_names_the_reader_refuses(tmp_path, layers):
    with pytest.raises(ValueError, match="printable ASCII"):
        write_exr(tmp_path / "f.exr", layers)


@pytest.mark.parametrize("name", list(gamut.GAMUTS))
def test_chromaticities_alone_name_the_scene_linear_colourspace(tmp_path, name):
    path = write_exr(tmp_path / "f.exr", np.ones((2, 2, 3)), gamut=name)
    image = read_exr(path)
    expected = gamut.SCENE_LINEAR_COLOURSPACES[name]
    assert image.colourspace == expected and image.header.get("oiio:ColorSpace") is None
    assert image.notes == (f"no colourspace attribute: read as {expected!r} (scene-linear "
                           f"assumed) because the chromaticities are "
                           f"{gamut.GAMUTS[name].reference}",)
    # The name is one the pack's OCIO config knows and maps back to the same primaries.
    assert expected in ocio.list_colourspaces() and gamut.get_gamut(expected).name == name


def test_unknown_primaries_are_quoted_and_a_contradiction_is_noted(tmp_path):
    # DCI-P3 (white 0.314, 0.351) is not a gamut of the pack: the note quotes the numbers.
    dci = (0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.314, 0.351)
    dci_gamut = gamut.Gamut("dci", *zip(dci[::2], dci[1::2], strict=True), "DCI-P3")
    image = read_exr(write_exr(tmp_path / "dci.exr", np.ones((2, 2, 3)), gamut=dci_gamut))
    assert image.colourspace is None
    assert image.notes[0].startswith("chromaticities (0.68, 0.32, 0.265, 0.69, 0.15, 0.06, "
                                     "0.314, 0.351) (red, green, blue, white xy) match no gamut")
    mixed = read_exr(write_exr(tmp_path / "mixed.exr", np.ones((2, 2, 3)),
                               colourspace="ACEScg", gamut="rec2020"))
    assert mixed.colourspace == "ACEScg"
    assert mixed.notes == ("the chromaticities are ITU-R BT.2020-2 (2015), Table 3, items "
                           "3.3-3.4 (also used by BT.2100), but the colourspace attribute says "
                           "'ACEScg'; check which one the pixels are in",)


def test_match_chromaticities_tolerates_rounded_white_and_float32_only():
    rec709 = (0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329)
    assert gamut.match_chromaticities(np.float32(rec709)).name == "rec709"
    assert gamut.match_chromaticities((*rec709[:6], 0.31271, 0.32902)).name == "rec709"
    assert gamut.match_chromaticities((*rec709[:6], 0.3127 + 2e-3, 0.329)) is None
    assert gamut.match_chromaticities(rec709[:6]) is None


@pytest.mark.parametrize("value, shown", [("abcdefgh", "'abcdefgh'"), (7, "7"),
                                          (np.float32([0.64, 0.33, 0.3]), "[0.64, 0.33, 0.3]")])
def test_a_chromaticities_attribute_of_another_type_is_noted_and_ignored(tmp_path, value, shown):
    # The bindings refuse to write such a file, so the attribute is renamed in the bytes.
    path = tmp_path / "odd.exr"
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
                  "chromaticitiez": value}, {"RGB": np.ones((2, 2, 3), np.float32)}
                 ).write(str(path))
    path.write_bytes(path.read_bytes().replace(b"chromaticitiez\0", b"chromaticities\0"))
    image = read_exr(path)
    assert image.colourspace is None and (image.pixels == 1).all()
    assert image.notes == (f"the chromaticities attribute ({shown}) is not 8 finite numbers "
                           "(red, green, blue, white xy); ignored",)
