"""hdr.exr: write -> read round trips, codec error bounds, metadata, safety, sequences."""

from __future__ import annotations

import os
import struct

import numpy as np
import OpenEXR
import pytest
import torch

from comfyui_hdr.hdr import exr, exr_sequence
from comfyui_hdr.hdr.exr import Layer, read_exr, write_exr

HEIGHT, WIDTH = 16, 24
LOSSLESS = ("none", "rle", "zips", "zip", "piz", "zstd", "htj2k256", "htj2k32")
# Values an HDR pipeline must survive bit-exactly: negatives (wide-gamut conversions),
# -0.0, half subnormals (6e-8), half's largest finite value, and (unchecked) NaN / +-Inf.
SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 6e-8, 65504.0, -3.5, 1e-5], np.float32)


def scene(channels: int, seed: int = 0) -> np.ndarray:
    """Scene-linear test pixels: log-normal around mid grey (0.18), 1e-4 to ~1e3, plus SPECIAL."""
    rng = np.random.default_rng(seed)
    pixels = (0.18 * np.exp(rng.normal(0.0, 2.5, (HEIGHT, WIDTH, channels)))).astype(np.float32)
    pixels.reshape(-1)[: SPECIAL.size] = SPECIAL
    return pixels


def smooth(seed: int = 0) -> np.ndarray:
    """A smooth HDR gradient (8 stops left to right, 1% grain): what lossy codecs are for."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:96]
    base = 0.18 * 2.0 ** (8 * x / 96 - 4) * (1 + 0.5 * np.sin(y / 5.0))
    rgb = np.stack([base, 0.8 * base, 1.2 * base], -1)
    return (rgb * (1 + 0.01 * rng.standard_normal(rgb.shape))).astype(np.float32)


def bits(array: np.ndarray) -> np.ndarray:
    return array.view(np.uint16 if array.dtype == np.float16 else np.uint32)


CHANNEL_SETS = {
    1: None,
    3: None,
    4: None,
    9: ("Z", "u", "v", "nx", "ny", "nz", "id", "mask", "motion"),
}


@pytest.mark.parametrize("compression", LOSSLESS)
@pytest.mark.parametrize("pixel_type", ["half", "float"])
@pytest.mark.parametrize("channels", sorted(CHANNEL_SETS))
def test_lossless_codecs_round_trip_bit_exact(tmp_path, compression, pixel_type, channels):
    stored_type = exr.PIXEL_TYPES[pixel_type]
    pixels = scene(channels)
    names = CHANNEL_SETS[channels]
    path = write_exr(tmp_path / "frame.exr", {"": Layer(pixels, names)}, pixel_type=pixel_type,
                     compression=compression, check_finite=False)
    image = read_exr(path, dtype=None)
    expected = pixels.astype(stored_type)
    if channels == 4:
        np.testing.assert_array_equal(bits(image.pixels), bits(expected[..., :3]))
        np.testing.assert_array_equal(bits(image.alpha), bits(expected[..., 3]))
    elif names:  # files store channels alphabetically; R, G, B, A lead only by convention
        order = [names.index(name) for name in image.channels]
        assert sorted(image.channels) == sorted(names)
        np.testing.assert_array_equal(bits(image.pixels), bits(expected[..., order]))
    else:
        np.testing.assert_array_equal(bits(image.pixels), bits(expected))
    assert image.header["compression"] == compression
    assert set(image.pixel_types.values()) == {pixel_type}


@pytest.mark.parametrize("compression, pixel_type", [("pxr24", "half"), ("b44", "float"),
                                                     ("b44a", "float")])
def test_codecs_lossy_only_for_other_types_keep_these_bit_exact(tmp_path, compression,
                                                                 pixel_type):
    # PXR24 only rounds FLOAT; B44/B44A only pack HALF (FLOAT is stored verbatim): both
    # documented in OpenEXR's ImfPxr24Compressor.cpp / ImfB44Compressor.cpp headers.
    pixels = scene(3)
    path = write_exr(tmp_path / "f.exr", pixels, pixel_type=pixel_type, compression=compression,
                     check_finite=False)
    stored = pixels.astype(exr.PIXEL_TYPES[pixel_type])
    np.testing.assert_array_equal(bits(read_exr(path, dtype=None).pixels), bits(stored))


@pytest.mark.parametrize("multipart", [False, True])
def test_layered_and_multipart_files_round_trip_every_layer(tmp_path, multipart):
    beauty, aov = scene(4, 1), scene(9, 2)
    layers = {"": beauty, "diffuse": beauty[..., :3] * 0.5,
              "depth": Layer(beauty[..., 0] * 100, ("Z",), "float"),
              "aov": Layer(aov, CHANNEL_SETS[9], "float")}
    path = write_exr(tmp_path / "layers.exr", layers, multipart=multipart, check_finite=False)
    assert exr.list_layers(path) == {
        "": ("R", "G", "B", "A"), "diffuse": ("R", "G", "B"), "depth": ("Z",),
        "aov": ("Z", "id", "mask", "motion", "nx", "ny", "nz", "u", "v")}
    half = beauty.astype(np.float16)
    default = read_exr(path, dtype=None)
    np.testing.assert_array_equal(bits(default.pixels), bits(half[..., :3]))
    np.testing.assert_array_equal(bits(default.alpha), bits(half[..., 3]))
    diffuse = read_exr(path, layer="diffuse", dtype=None).pixels
    np.testing.assert_array_equal(bits(diffuse), bits((beauty[..., :3] * 0.5).astype(np.float16)))
    depth = read_exr(path, layer="depth")
    np.testing.assert_array_equal(bits(depth.pixels[..., 0]), bits(beauty[..., 0] * 100))
    assert depth.pixel_types == {"Z": "float"}
    image = read_exr(path, layer="aov")
    np.testing.assert_array_equal(
        bits(image.pixels), bits(aov[..., [CHANNEL_SETS[9].index(c) for c in image.channels]]))
    assert (image.part > 0) == multipart
    assert len(OpenEXR.File(str(path), header_only=True).parts) == (4 if multipart else 1)


def test_read_converts_to_float32_by_default_and_equals_the_stored_half(tmp_path):
    pixels = scene(3)
    path = write_exr(tmp_path / "f.exr", pixels, check_finite=False)
    image = read_exr(path)
    assert image.pixels.dtype == np.float32 and image.pixels.flags.c_contiguous
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float16).astype(np.float32))


def test_torch_tensor_writes_the_same_bits_as_numpy(tmp_path):
    pixels = scene(3)
    from_numpy = write_exr(tmp_path / "n.exr", pixels, check_finite=False)
    from_torch = write_exr(tmp_path / "t.exr", torch.from_numpy(pixels).requires_grad_(),
                           check_finite=False)
    np.testing.assert_array_equal(bits(read_exr(from_numpy, dtype=None).pixels),
                                  bits(read_exr(from_torch, dtype=None).pixels))


def test_non_contiguous_input_is_written_in_the_right_order(tmp_path):
    # OpenEXR's bindings read raw buffers: a strided view written as is would scramble pixels.
    pixels = scene(4)[:, ::-1, [2, 0, 1]]
    path = write_exr(tmp_path / "f.exr", pixels, pixel_type="float", check_finite=False)
    np.testing.assert_array_equal(bits(read_exr(path).pixels), bits(np.ascontiguousarray(pixels)))


def test_pxr24_float_error_is_within_its_24_bit_rounding(tmp_path):
    # PXR24 rounds float32 to 24 bits (sign, 8 exponent, 15 mantissa bits; OpenEXR
    # ImfPxr24Compressor.cpp), so the relative error is at most half a 15-bit ulp: 2**-16.
    pixels = smooth()
    path = write_exr(tmp_path / "f.exr", pixels, pixel_type="float", compression="pxr24")
    relative = np.abs(read_exr(path).pixels / pixels - 1)
    assert 0 < relative.max() <= 2.0**-16


def _ordered_half(values: np.ndarray) -> np.ndarray:
    """B44's monotonic integer view of half bit patterns (ImfB44Compressor.cpp, pack())."""
    raw = values.astype(np.float16).view(np.uint16).astype(np.int64)
    return np.where(raw & 0x8000, ~raw & 0xFFFF, raw | 0x8000)


@pytest.mark.parametrize("compression", ["b44", "b44a"])
def test_b44_half_error_is_within_each_blocks_shift(tmp_path, compression):
    # B44 stores a 4x4 block as t[0] plus 15 neighbour differences of the ordered half
    # integers, right-shifted by the smallest s that fits them in 6 bits ([-32, 31]) after
    # rounding; a pixel is off by at most 2**s ordered units (= half ulps). Rounding moves a
    # difference by at most 1, so s <= the smallest s with (max |difference| >> s) + 1 <= 31.
    pixels = smooth()
    path = write_exr(tmp_path / "f.exr", pixels, compression=compression)
    decoded = _ordered_half(read_exr(path, dtype=None).pixels)
    original = _ordered_half(pixels)
    height, width, channels = pixels.shape
    worst_ratio = 0.0
    for y in range(0, height, 4):
        for x in range(0, width, 4):
            block = original[y:y + 4, x:x + 4]
            steps = np.concatenate([np.abs(np.diff(block, axis=0)).ravel(),
                                    np.abs(np.diff(block, axis=1)).ravel()])
            shift = 0
            while (steps.max() >> shift) + 1 > 31:
                shift += 1
            error = np.abs(decoded[y:y + 4, x:x + 4] - block).max()
            worst_ratio = max(worst_ratio, error / 2**shift)
    assert 0 < worst_ratio <= 1


def _relative_error(tmp_path, compression, pixels, **options):
    path = write_exr(tmp_path / f"{compression}.exr", pixels, compression=compression,
                     overwrite=True, **options)
    return np.abs(read_exr(path).pixels / pixels - 1)


@pytest.mark.parametrize("compression", ["dwaa", "dwab"])
def test_dwa_error_stays_small_and_grows_with_the_level(tmp_path, compression):
    # DWA quantises DCT coefficients in a perceptual domain with a step proportional to
    # dwaCompressionLevel; there is no closed-form pixel bound. OpenEXR calls its default
    # (45) visually lossless; on this smooth 8-stop ramp we measured mean 0.65% / max 4.1%
    # relative error at 45 and bound it at 1% / 6%, and the error must rise with the level.
    pixels = smooth()
    errors = {level: _relative_error(tmp_path, compression, pixels, dwa_level=level)
              for level in (5.0, 45.0, 200.0)}
    assert errors[45.0].mean() < 0.01 and errors[45.0].max() < 0.06
    assert errors[5.0].mean() < errors[45.0].mean() < errors[200.0].mean()
    header = OpenEXR.File(str(tmp_path / f"{compression}.exr"), header_only=True).header()
    assert header["dwaCompressionLevel"] == 200.0


def test_lj2k_is_lossy_but_close(tmp_path):
    # LJ2K (OpenEXR 3.5, lossy HTJ2K on RGB): measured mean 0.78% / max 7.7% relative error
    # on this ramp in half; bounded at 1.5% / 12%.
    relative = _relative_error(tmp_path, "lj2k", smooth())
    assert 0 < relative.mean() < 0.015 and relative.max() < 0.12


def test_colour_and_user_metadata_round_trip(tmp_path):
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": 2**40, "cfg": 7.5}}}
    path = write_exr(tmp_path / "f.exr", np.full((4, 4, 3), 0.18), colourspace="ACEScg",
                     interop_id="lin_ap1_scene", gamut="ap1", white_luminance=100.0,
                     metadata={"prompt": prompt, "seed": 2**40, "steps": 30, "cfg": 7.5,
                               "model": "flux1-dev.safetensors", "tiled": True})
    image = read_exr(path)
    header = image.header
    assert image.colourspace == "ACEScg" and image.interop_id == "lin_ap1_scene"
    assert header["chromaticities"] == (0.713, 0.293, 0.165, 0.83, 0.128, 0.044,
                                        0.32168, 0.33767)
    assert header["adoptedNeutral"] == [0.32168, 0.33767]
    assert header["whiteLuminance"] == 100.0
    assert header["seed"] == str(2**40)  # beyond int32: kept exactly as text
    assert (header["steps"], header["cfg"], header["tiled"]) == (30, 7.5, 1)
    assert header["model"] == "flux1-dev.safetensors"
    assert header["prompt"] == '{"3": {"class_type": "KSampler", "inputs": {"seed": ' \
                               '1099511627776, "cfg": 7.5}}}'
    raw = OpenEXR.File(str(path), header_only=True).header()
    assert int(OpenEXR.checkColorMetadata(raw)) == 0  # OpenEXR's own consistency check


def test_colour_metadata_that_contradicts_itself_is_refused(tmp_path):
    with pytest.raises(ValueError, match="chromaticities are not those denoted"):
        write_exr(tmp_path / "f.exr", scene(3), gamut="rec709", interop_id="lin_ap1_scene",
                  check_finite=False)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("metadata, message", [
    ({"compression": "zip"}, "reserved"), ({"chromaticities": "x"}, "reserved"),
    ({"": 1}, "empty"), ({"latent": object()}, "pass str, int, float"),
])
def test_bad_metadata_is_refused(tmp_path, metadata, message):
    with pytest.raises(ValueError, match=message):
        write_exr(tmp_path / "f.exr", scene(3), metadata=metadata, check_finite=False)


@pytest.mark.parametrize("options, message", [
    ({"compression": "jpeg"}, "compression 'jpeg' is unknown; use one of none, rle"),
    ({"compression": "zip", "dwa_level": 45}, "needs compression 'dwaa' or 'dwab'"),
    ({"compression": "dwaa", "dwa_level": 0}, "level > 0"),
    ({"pixel_type": "uint8"}, "pixel_type 'uint8' is unknown"),
    ({"white_luminance": -1}, "white_luminance"),
    ({"gamut": "xyz"}, "gamut 'xyz' is unknown"),
])
def test_bad_options_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        write_exr(tmp_path / "f.exr", scene(3), check_finite=False, **options)


@pytest.mark.parametrize("layers, message", [
    ({}, "layers is empty"),
    (np.zeros((1, 4, 4, 3)), r"\[B, H, W, C\] batch goes to write_exr_sequence"),
    ({"": np.zeros((4, 4, 3)), "b": np.zeros((5, 4, 3))}, "same height and width"),
    (np.zeros((4, 4, 5)), "channels named"),
    ({"": Layer(np.zeros((4, 4, 2)), ("R", "R"))}, "unique name"),
    ({"": Layer(np.zeros((4, 4, 1)), ("a.b",))}, "without '.'"),
    ({".x": np.zeros((4, 4, 3))}, "layer names"),
    (np.zeros((4, 4, 3), np.complex64), "dtype complex64"),
    (np.zeros((4, 4, 3), bool), "dtype bool"),
])
def test_bad_layers_are_refused_and_leave_nothing(tmp_path, layers, message):
    with pytest.raises(ValueError, match=message):
        write_exr(tmp_path / "f.exr", layers)
    assert not os.listdir(tmp_path)


def test_nan_and_half_overflow_are_counted_unless_allowed(tmp_path):
    pixels = np.full((4, 4, 3), 0.18, np.float32)
    pixels[0, 0, 0], pixels[1, 1] = np.nan, 1e5  # 1e5 > 65504: Inf in half
    # The NaN given and the 3 values half would turn into Inf are told apart, each with its fix.
    with pytest.raises(ValueError, match=r"has 1 NaN/Inf values \(1 NaN, 0 Inf\) and 3 values "
                       r"beyond half's range \(largest \|value\| 100000 > 65504\).*"
                       r"use pixel_type='float'"):
        write_exr(tmp_path / "f.exr", pixels)
    with pytest.raises(ValueError, match="has 1 NaN/Inf values"):
        write_exr(tmp_path / "f.exr", pixels, pixel_type="float")
    path = write_exr(tmp_path / "f.exr", pixels, check_finite=False)
    assert np.isinf(read_exr(path).pixels[1, 1]).all()


def test_existing_file_is_not_overwritten_unless_asked(tmp_path):
    path = write_exr(tmp_path / "f.exr", np.zeros((4, 4, 3)))
    with pytest.raises(FileExistsError, match=r"f\.exr already exists.*overwrite=True"):
        write_exr(path, np.ones((4, 4, 3)))
    assert read_exr(path).pixels.max() == 0
    write_exr(path, np.ones((4, 4, 3)), overwrite=True)
    assert read_exr(path).pixels.min() == 1
    assert os.listdir(tmp_path) == ["f.exr"]


def test_a_write_failing_midway_leaves_no_file(tmp_path, monkeypatch):
    def half_written(self, filename):
        with open(filename, "wb") as partial:
            partial.write(b"v/1\x01" + bytes(100))
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(OpenEXR.File, "write", half_written)
    with pytest.raises(RuntimeError, match="No space left"):
        write_exr(tmp_path / "f.exr", np.zeros((4, 4, 3)))
    assert os.listdir(tmp_path) == []


def test_truncated_file_raises_value_error_naming_it(tmp_path):
    grain = np.random.default_rng(0).random((64, 24, 3))  # noise: pixel chunks dominate the file
    path = write_exr(tmp_path / "f.exr", grain, compression="zip")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"f\.exr is truncated or corrupt"):
        read_exr(path)
    path.write_bytes(data[:40])
    with pytest.raises(ValueError, match=r"f\.exr is not a readable OpenEXR file"):
        read_exr(path)


def test_missing_file_and_non_exr_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.exr does not exist"):
        read_exr(tmp_path / "nope.exr")
    (tmp_path / "text.exr").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable OpenEXR file"):
        exr.list_layers(tmp_path / "text.exr")


def _patch_windows(path, width: int, height: int) -> None:
    data = bytearray(path.read_bytes())
    for name in (b"dataWindow\0box2i\0", b"displayWindow\0box2i\0"):
        at = data.index(name) + len(name) + 4  # attribute size (int32) precedes the value
        struct.pack_into("<4i", data, at, 0, 0, width - 1, height - 1)
    path.write_bytes(bytes(data))


def test_dimension_bomb_is_refused_from_the_header_before_any_pixel(tmp_path, monkeypatch):
    path = write_exr(tmp_path / "bomb.exr", np.zeros((4, 4, 3)))
    _patch_windows(path, 200_000, 200_000)  # 200k x 200k x 3 floats: 480 GB if decoded
    opened = []
    real_file = OpenEXR.File

    def spy(*args, **kwargs):
        opened.append(kwargs.get("header_only", False))
        return real_file(*args, **kwargs)

    monkeypatch.setattr(exr.OpenEXR, "File", spy)
    with pytest.raises(ValueError, match=r"dataWindow is 200000 x 200000, outside 1\.\.65536"):
        read_exr(path)
    assert opened == [True]  # only the header was read


def test_byte_budget_is_checked_before_pixels(tmp_path):
    path = write_exr(tmp_path / "f.exr", np.zeros((16, 16, 3)))
    _patch_windows(path, 30_000, 30_000)  # inside max_dimension; header + output: 20 GiB
    with pytest.raises(ValueError, match=r"needs about 20\.12 GiB.*max_bytes=4294967296"):
        read_exr(path)
    with pytest.raises(ValueError, match="max_bytes=1000"):
        read_exr(write_exr(tmp_path / "g.exr", np.zeros((16, 16, 3))), max_bytes=1000)


def test_missing_layer_and_part_list_what_exists(tmp_path):
    path = write_exr(tmp_path / "f.exr", {"": np.zeros((4, 4, 3)), "diffuse": np.zeros((4, 4, 3)),
                                          "spec": np.zeros((4, 4, 3))}, multipart=True)
    with pytest.raises(ValueError, match=r"layer 'albedo' is not in .*f\.exr; available "
                                         r"layers: '', 'diffuse', 'spec'"):
        read_exr(path, layer="albedo")
    with pytest.raises(ValueError, match=r"parts: \['rgba', 'diffuse', 'spec'\]"):
        read_exr(path, part="albedo")
    assert read_exr(path, part="spec").layer == "spec"
    assert read_exr(path, part=1).layer == "diffuse"


def test_data_window_inside_a_larger_display_window_is_zero_padded(tmp_path):
    # Crafted with the raw bindings: an 8x5 data window at (2, 1) in a 16x8 display window.
    data = np.arange(40, dtype=np.float32).reshape(5, 8) + 1
    header = {"dataWindow": ((2, 1), (9, 5)), "displayWindow": ((0, 0), (15, 7)),
              "compression": OpenEXR.ZIP_COMPRESSION}
    OpenEXR.File(header, {"Y": data}).write(str(tmp_path / "dw.exr"))
    image = read_exr(tmp_path / "dw.exr")
    expected = np.zeros((8, 16), np.float32)
    expected[1:6, 2:10] = data
    np.testing.assert_array_equal(image.pixels[..., 0], expected)
    assert image.channels == ("Y",) and image.data_window == (2, 1, 9, 5)
    assert image.display_window == (0, 0, 15, 7) and "pixels outside" in image.notes[0]


def test_rgb_of_mixed_pixel_types_reads_each_channel_exactly(tmp_path):
    # Crafted with the raw bindings, which refuse to interleave such a group on read.
    red, green = np.full((4, 4), 1.5, np.float16), np.full((4, 4), 1 / 3, np.float32)
    OpenEXR.File({}, {"R": red, "G": green, "B": red}).write(str(tmp_path / "mixed.exr"))
    image = read_exr(tmp_path / "mixed.exr")
    assert image.pixel_types == {"R": "half", "G": "float", "B": "half"}
    np.testing.assert_array_equal(image.pixels[0, 0], np.float32([1.5, 1 / 3, 1.5]))


def test_a_layer_of_only_alpha_keeps_it_as_pixels(tmp_path):
    path = write_exr(tmp_path / "f.exr", {"matte": Layer(np.full((4, 4), 0.5), ("A",))})
    image = read_exr(path)
    assert image.layer == "matte" and image.channels == ("A",) and image.alpha is None
    assert image.notes == ("no default layer; read layer 'matte' of ['matte']",)


def test_sequence_names_follow_comfyui_counter_rule(tmp_path):
    # folder_paths.get_save_image_path: counter = 1 + the largest number after "prefix_"
    # in any file name (any extension), else 1; images are named prefix_00001_.png.
    for name in ("shot_00007_.png", "shot_00002_.exr", "shot_00009.exr", "shotB_00050_.exr",
                 "other_00099_.exr", "shot_notes.txt"):
        (tmp_path / name).touch()
    paths = exr_sequence.next_free_sequence(tmp_path, "shot", 2)
    assert [p.name for p in paths] == ["shot_00010_.exr", "shot_00011_.exr"]
    assert [p.name for p in exr_sequence.next_free_sequence(tmp_path / "new", "shot", 1)] == \
        ["shot_00001_.exr"]
    named = exr_sequence.sequence_paths(tmp_path, "a", 2, padding=3, start_frame=9)
    assert [p.name for p in named] == ["a_009_.exr", "a_010_.exr"]
    with pytest.raises(ValueError, match="without folders"):
        exr_sequence.sequence_paths(tmp_path, "sub/shot", 1)


def test_write_and_read_a_sequence_with_a_gap(tmp_path):
    frames = np.stack([np.full((4, 6, 4), i, np.float32) for i in range(4)])
    (tmp_path / "shot_00002_.png").touch()
    paths = exr_sequence.write_exr_sequence(tmp_path, "shot", frames, compression="piz")
    assert [p.name for p in paths] == [f"shot_0000{i}_.exr" for i in (3, 4, 5, 6)]
    paths[1].unlink()
    for pattern in ("shot_%05d_.exr", "shot_#####_.exr", "shot_*.exr"):
        sequence = exr_sequence.read_exr_sequence(tmp_path / pattern)
        assert sequence.frames == (3, 5, 6) and sequence.missing == (4,)
        assert sequence.pixels.shape == (3, 4, 6, 3) and sequence.alpha.shape == (3, 4, 6)
        np.testing.assert_array_equal(sequence.pixels[:, 0, 0, 0], [0, 2, 3])
    more = exr_sequence.write_exr_sequence(tmp_path, "shot", torch.from_numpy(frames[:1]))
    assert more[0].name == "shot_00007_.exr"  # continues; never reuses the gap


def test_failed_sequence_removes_the_frames_it_wrote(tmp_path):
    frames = np.zeros((3, 4, 4, 3), np.float32)
    frames[2, 0, 0, 0] = np.nan
    (tmp_path / "shot_00001_.exr").touch()
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        exr_sequence.write_exr_sequence(tmp_path, "shot", frames)
    assert os.listdir(tmp_path) == ["shot_00001_.exr"]
    with pytest.raises(FileExistsError):
        exr_sequence.write_exr_sequence(tmp_path, "shot", frames[:1], start_frame=1)


def test_sequence_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no frame field"):
        exr_sequence.read_exr_sequence(tmp_path / "shot.exr")
    with pytest.raises(ValueError, match="no file matches"):
        exr_sequence.read_exr_sequence(tmp_path / "shot_####.exr")
    write_exr(tmp_path / "shot_0001.exr", np.zeros((4, 4, 3)))
    write_exr(tmp_path / "shot_0002.exr", np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match=r"shot_0002\.exr has channels .* unlike the first"):
        exr_sequence.read_exr_sequence(tmp_path / "shot_####.exr")
    with pytest.raises(ValueError, match="max_bytes=300"):
        exr_sequence.read_exr_sequence(tmp_path / "shot_####.exr", max_bytes=300)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        exr_sequence.write_exr_sequence(tmp_path, "x", np.zeros((4, 4, 3)))
