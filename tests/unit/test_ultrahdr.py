"""Ultra HDR JPEG: the container we write, read back by independent parsers written from
the specifications (JPEG T.81 segments, CIPA DC-007 MPF, ISO 21496-1 field table, XMP),
our own round trip, and the bad-input contract."""

import io
import struct
import xml.etree.ElementTree as ElementTree
from fractions import Fraction

import numpy as np
import pytest
import torch
from _iso21496_oracle import parse_iso_21496_1
from PIL import Image, JpegImagePlugin

from comfyui_hdr.hdr.charts import test_chart
from comfyui_hdr.hdr.gainmap import apply_gain_map
from comfyui_hdr.hdr.gainmap_metadata import GainMapMetadata, to_iso_box, to_xmp
from comfyui_hdr.hdr.jpeg_markers import assemble
from comfyui_hdr.hdr.ultrahdr import (
    decode_ultrahdr,
    encode_ultrahdr,
    read_ultrahdr,
    write_ultrahdr,
)

ISO_URN = b"urn:iso:std:iso:ts:21496:-1\0"
XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\0"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
HDRGM = "{http://ns.adobe.com/hdr-gain-map/1.0/}"
CONTAINER = "{http://ns.google.com/photos/1.0/container/}"
ITEM = "{http://ns.google.com/photos/1.0/container/item/}"


@pytest.fixture(scope="module")
def chart():
    """The HDR test chart, 96x64, from 2**-10 x 18% grey to 0.18 x 2**10 = 184."""
    return test_chart(96, 64).numpy()


@pytest.fixture(scope="module")
def ultrahdr_bytes(chart):
    return encode_ultrahdr(chart)


# --- independent readers, written from the specifications ------------------------------

def header_segments(data: bytes, start: int) -> list[tuple[int, bytes]]:
    """ITU-T T.81 Annex B: after SOI, segments are 0xFF, marker, big-endian length
    (counting itself), payload; the header ends at SOS (0xDA)."""
    assert data[start:start + 2] == b"\xff\xd8"
    position, segments = start + 2, []
    while data[position + 1] != 0xDA:
        assert data[position] == 0xFF
        length = int.from_bytes(data[position + 2:position + 4], "big")
        segments.append((data[position + 1], data[position + 4:position + 2 + length]))
        position += 2 + length
    return segments


def app(segments, marker: int, signature: bytes) -> bytes:
    found = [payload[len(signature):] for code, payload in segments
             if code == marker and payload.startswith(signature)]
    assert len(found) == 1, f"expected one APP{marker - 0xE0} {signature!r} segment"
    return found[0]


def mp_entries(data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """CIPA DC-007-2009 section 5.2: find APP2 'MPF\\0', read its TIFF header and MP Index
    IFD, return (offset of the TIFF header in the file, [(attribute, size, offset)])."""
    position = 2
    while data[position:position + 2] != b"\xff\xe2" or data[position + 4:position + 8] != \
            b"MPF\0":
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    tiff = position + 8
    assert data[tiff:tiff + 4] == b"MM\0*"  # big-endian, as libultrahdr writes
    ifd = tiff + int.from_bytes(data[tiff + 4:tiff + 8], "big")
    tags = {}
    for index in range(int.from_bytes(data[ifd:ifd + 2], "big")):
        tag, kind, count, value = struct.unpack_from(">HHII", data, ifd + 2 + 12 * index)
        tags[tag] = (kind, count, value, data[ifd + 2 + 12 * index + 8:ifd + 14 + 12 * index])
    assert tags[0xB000][3] == b"0100"  # MPF version
    assert tags[0xB001][2] == 2  # number of images
    kind, count, offset, _ = tags[0xB002]
    entries = [struct.unpack_from(">IIIHH", data, tiff + offset + 16 * index)[:3]
               for index in range(count // 16)]
    return tiff, entries




def gain_map_start(data: bytes) -> int:
    tiff, entries = mp_entries(data)
    return tiff + entries[1][2]


# --- the container ------------------------------------------------------------------------

def test_mpf_index_points_at_both_soi_markers_and_its_sizes_tile_the_file(ultrahdr_bytes):
    tiff, entries = mp_entries(ultrahdr_bytes)
    (primary_attribute, primary_size, primary_offset), (_, map_size, map_offset) = entries
    # CIPA DC-007 5.2.3.3: the primary has offset 0 and type "Baseline MP Primary Image".
    assert (primary_attribute, primary_offset) == (0x030000, 0)
    assert ultrahdr_bytes[:2] == ultrahdr_bytes[tiff + map_offset:tiff + map_offset + 2] == \
        b"\xff\xd8"
    assert tiff + map_offset == primary_size
    assert primary_size + map_size == len(ultrahdr_bytes)
    assert ultrahdr_bytes[primary_size - 2:primary_size] == b"\xff\xd9"  # primary EOI
    assert ultrahdr_bytes[-2:] == b"\xff\xd9"


def test_iso_box_in_the_gain_map_parses_independently_with_every_field_equal(ultrahdr_bytes):
    primary = header_segments(ultrahdr_bytes, 0)
    gain_map = header_segments(ultrahdr_bytes, gain_map_start(ultrahdr_bytes))
    # libultrahdr: the primary carries only the versions (4 bytes), the gain map the box.
    assert app(primary, 0xE2, ISO_URN) == b"\0\0\0\0"
    fields = parse_iso_21496_1(app(gain_map, 0xE2, ISO_URN))
    metadata = decode_ultrahdr(ultrahdr_bytes).metadata
    assert fields["size"] == 61  # single channel: 5 + 2 x 8 + 5 x 8 bytes
    assert (fields["minimum_version"], fields["writer_version"], fields["reserved"]) == (0, 0, 0)
    assert (fields["is_multichannel"], fields["use_base_colour_space"]) == (0, 1)
    # Every fraction equals the float our reader returns, to float64 rounding.
    for name in ("base_hdr_headroom", "alternate_hdr_headroom"):
        assert float(fields[name]) == pytest.approx(getattr(metadata, name), rel=1e-15)
    for name in ("gain_map_min", "gain_map_max", "gamma", "base_offset", "alternate_offset"):
        assert float(fields[f"{name}_0"]) == pytest.approx(getattr(metadata, name)[0],
                                                           rel=1e-15, abs=1e-300)
    assert fields["base_offset_0"] == fields["alternate_offset_0"] == Fraction(1, 64)
    assert fields["base_hdr_headroom"] == 0
    # The chart peaks at 184 = 0.18 x 2**10, which Reinhard puts at SDR ~0.995: the map's
    # top is about log2(184 / 1.01) = 7.5 stops, and it sets the alternate headroom.
    assert 7 < float(fields["gain_map_max_0"]) == float(fields["alternate_hdr_headroom"]) < 8


def test_primary_xmp_is_a_gcontainer_directory_with_the_gain_map_length(ultrahdr_bytes):
    root = ElementTree.fromstring(app(header_segments(ultrahdr_bytes, 0), 0xE1, XMP_NAMESPACE))
    description = root.find(f"{RDF}RDF/{RDF}Description")
    assert description.get(f"{HDRGM}Version") == "1.0"
    items = description.findall(f"{CONTAINER}Directory/{RDF}Seq/{RDF}li/{CONTAINER}Item")
    assert [item.get(f"{ITEM}Semantic") for item in items] == ["Primary", "GainMap"]
    assert {item.get(f"{ITEM}Mime") for item in items} == {"image/jpeg"}
    _, entries = mp_entries(ultrahdr_bytes)
    assert int(items[1].get(f"{ITEM}Length")) == entries[1][1]


def test_gain_map_xmp_carries_the_hdrgm_fields_of_the_iso_box(ultrahdr_bytes):
    gain_map = header_segments(ultrahdr_bytes, gain_map_start(ultrahdr_bytes))
    root = ElementTree.fromstring(app(gain_map, 0xE1, XMP_NAMESPACE))
    description = root.find(f"{RDF}RDF/{RDF}Description")
    fields = parse_iso_21496_1(app(gain_map, 0xE2, ISO_URN))

    def hdrgm(name):
        return description.get(f"{HDRGM}{name}")

    assert (hdrgm("Version"), hdrgm("BaseRenditionIsHDR")) == ("1.0", "False")
    pairs = {"GainMapMin": "gain_map_min_0", "GainMapMax": "gain_map_max_0",
             "Gamma": "gamma_0", "OffsetSDR": "base_offset_0", "OffsetHDR": "alternate_offset_0",
             "HDRCapacityMin": "base_hdr_headroom", "HDRCapacityMax": "alternate_hdr_headroom"}
    for xmp_name, iso_name in pairs.items():
        # XMP holds the shortest round-trip decimal; the box the nearest 32-bit fraction.
        assert float(hdrgm(xmp_name)) == pytest.approx(float(fields[iso_name]), rel=1e-9)


def test_base_is_a_plain_4_4_4_jpeg_any_reader_opens(ultrahdr_bytes):
    picture = Image.open(io.BytesIO(ultrahdr_bytes))
    assert (picture.mode, picture.size) == ("RGB", (96, 64))
    assert JpegImagePlugin.get_sampling(picture) == 0  # 4:4:4, no chroma subsampling
    map_picture = Image.open(io.BytesIO(ultrahdr_bytes[gain_map_start(ultrahdr_bytes):]))
    assert (map_picture.mode, map_picture.size) == ("L", (96, 64))


# --- our round trip ------------------------------------------------------------------------

def offset_error(estimate, truth, luminance=True):
    """|error| / (truth + 1/64): the 8-bit log2 map quantises log2(Y + k) with k = 1/64,
    so this, not the plain relative error, is what its step bounds (in the deep shadows an
    absolute error of ~1/64 x 2 % is the format's floor)."""
    if luminance:
        weights = np.array([0.2126, 0.7152, 0.0722])  # ITU-R BT.709-6 item 3.2
        estimate, truth = estimate @ weights, truth @ weights
    return np.abs(estimate - truth) / (truth + 1 / 64)


@pytest.fixture(scope="module")
def smooth_scene():
    """A smooth 12-stop exponential ramp (0.18 x 2**-4 .. 2**8), tinted top to bottom."""
    rows, columns = np.mgrid[0:64, 0:96]
    tint = np.stack([np.ones((64, 96)), 0.6 + 0.4 * rows / 64, 1 - 0.4 * rows / 64], -1)
    return (0.18 * np.exp2(12 * columns / 96 - 4)[..., None] * tint).astype(np.float32)


def test_round_trip_rebuilds_the_chart_within_the_8bit_step(chart):
    image = decode_ultrahdr(encode_ultrahdr(chart, gain_map_quality=100))
    error = offset_error(image.hdr, chart)
    # The map spans 7.8 stops over 255 codes: half a step is 0.0153 stop, 1.06 %; measured
    # median 0.55 %. Even at quality 100 the map's JPEG moves codes by 1-2 at the sun's
    # edge (2.1 % each): measured 99th percentile 3.8 %.
    assert np.median(error) <= 0.0106
    assert np.percentile(error, 99) <= 0.05
    assert image.hdr.dtype == image.sdr.dtype == np.float32
    assert image.hdr.shape == image.sdr.shape == (64, 96, 3)
    assert (image.gamut, image.source_gamut, image.notes) == ("rec709", "rec709", ())


def test_round_trip_of_a_smooth_scene_at_default_quality(smooth_scene):
    image = decode_ultrahdr(encode_ultrahdr(smooth_scene))
    error = offset_error(image.hdr, smooth_scene)
    # Half a step of a ~8-stop map is 1.1 %; the quality-85 map adds ~1 code where the
    # ramp steepens. Measured median 0.62 %, 99th percentile 2.4 %.
    assert np.median(error) <= 0.011
    assert np.percentile(error, 99) <= 0.03


def test_display_headroom_scales_the_gain_by_the_iso_weight(ultrahdr_bytes):
    full = decode_ultrahdr(ultrahdr_bytes)
    headroom = full.metadata.alternate_hdr_headroom
    sdr_display = decode_ultrahdr(ultrahdr_bytes, display_hdr_headroom_log2=0.0)
    half = decode_ultrahdr(ultrahdr_bytes, display_hdr_headroom_log2=headroom / 2)
    # W = 0 gives the base exactly; W = 1/2 applies half the log2 gain (ISO 21496-1).
    np.testing.assert_allclose(sdr_display.hdr, full.sdr, rtol=1e-6, atol=1e-7)
    expected = apply_gain_map(full.sdr, full.gain_map, full.metadata, headroom / 2)
    np.testing.assert_allclose(half.hdr, expected, rtol=1e-6)


def test_three_channel_map_writes_a_multichannel_box_and_rgb_map(chart):
    data = encode_ultrahdr(chart, channels=3, gain_map_quality=100)
    gain_map = header_segments(data, gain_map_start(data))
    fields = parse_iso_21496_1(app(gain_map, 0xE2, ISO_URN))
    assert (fields["is_multichannel"], fields["size"]) == (1, 141)
    image = decode_ultrahdr(data)
    assert image.gain_map.shape == (64, 96, 3)
    # Per-channel maps rebuild each channel: each spans ~8.3 stops (half a step 1.1 %);
    # measured median 0.89 %, 99th percentile 4.7 % (JPEG, as above).
    error = offset_error(image.hdr, chart, luminance=False)
    assert np.median(error) <= 0.011
    assert np.percentile(error, 99) <= 0.06


def test_quarter_size_map_is_box_sampled_and_resampled_with_a_note(smooth_scene):
    image = decode_ultrahdr(encode_ultrahdr(smooth_scene, gain_map_scale=4))
    assert image.gain_map.shape == (16, 24, 1)
    assert image.notes == ("gain map 24x16 resampled (bilinear) to the base's 96x64",)
    # Inside the two-pixel border the bilinear map follows the ramp: measured median
    # 0.74 %, 99th percentile 2.8 %. On the border the map is held at its outer block
    # centre, 1.5 pixels away (0.19 stop of ramp), so it is left out.
    error = offset_error(image.hdr, smooth_scene)[2:-2, 2:-2]
    assert np.median(error) <= 0.011
    assert np.percentile(error, 99) <= 0.04


def test_an_existing_gain_map_and_metadata_are_written_as_given():
    sdr = np.full((32, 48, 3), 0.25, np.float32)
    gain_map = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (32, 1))[..., None]
    metadata = GainMapMetadata(gain_map_max=3.0, alternate_hdr_headroom=3.0,
                               gain_map_min=-0.5, gamma=1.5)
    image = decode_ultrahdr(encode_ultrahdr(sdr_base_linear=sdr, gain_map=gain_map,
                                            metadata=metadata, gain_map_quality=100))
    assert image.metadata == metadata
    # Quality-100 JPEG of a smooth ramp keeps each code within 1 of 255.
    assert np.abs(image.gain_map - np.round(gain_map * 255) / 255).max() <= 1 / 255 + 1e-6
    np.testing.assert_allclose(image.sdr, 0.25, rtol=0.01)  # sRGB code 137 of 255


def test_write_is_atomic_and_never_clobbers(tmp_path, chart):
    path = write_ultrahdr(tmp_path / "chart.jpg", chart)
    assert read_ultrahdr(path).hdr.shape == (64, 96, 3)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_ultrahdr(path, chart * 2)
    assert path.read_bytes() == before
    write_ultrahdr(path, chart * 2, overwrite=True)
    assert path.read_bytes() != before
    with pytest.raises(ValueError, match="hdr_linear"):
        write_ultrahdr(tmp_path / "bad.jpg", np.full((8, 8, 3), np.nan, np.float32))
    assert sorted(item.name for item in tmp_path.iterdir()) == ["chart.jpg"]


# --- bad input -------------------------------------------------------------------------------

def plain_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 100, 50)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_a_plain_jpeg_raises_or_loads_as_sdr_only_by_choice():
    with pytest.raises(ValueError, match="allow_sdr_only"):
        decode_ultrahdr(plain_jpeg())
    image = decode_ultrahdr(plain_jpeg(), allow_sdr_only=True)
    assert image.metadata is None and image.gain_map is None
    np.testing.assert_array_equal(image.hdr, image.sdr)
    assert image.notes == ("no gain map: hdr is the SDR base",)


def test_a_gain_map_of_another_aspect_is_resampled_with_a_note():
    data = encode_ultrahdr(sdr_base_linear=np.full((30, 40, 3), 0.5, np.float32),
                           gain_map=np.full((7, 13, 1), 0.5, np.float32),
                           metadata=GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0))
    image = decode_ultrahdr(data)
    assert image.notes == ("gain map 13x7 resampled (bilinear) to the base's 40x30",)
    # A flat map stays flat: code 128 of 255 -> 2 ** (2 x 128/255) over (0.5 + 1/64).
    expected = (image.sdr + 1 / 64) * 2 ** (2 * 128 / 255) - 1 / 64
    np.testing.assert_allclose(image.hdr, expected, rtol=1e-5)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"hdr_linear": np.zeros((8, 8, 4), np.float32)}, "hdr_linear"),
    ({"hdr_linear": np.zeros((2, 8, 8, 3), np.float32)}, "image\\[0\\]"),
    ({"hdr_linear": np.full((8, 8, 3), np.inf, np.float32)}, "NaN or infinity"),
    ({"hdr_linear": np.ones((8, 8, 3)), "sdr_base_linear": np.ones((4, 8, 3))},
     "sdr_base_linear"),
    ({"hdr_linear": np.ones((8, 8, 3)), "gain_map_scale": 0}, "gain_map_scale"),
    ({"hdr_linear": np.ones((8, 8, 3)), "quality": 0}, "quality"),
    ({"hdr_linear": np.ones((8, 8, 3)), "channels": 2}, "channels"),
    ({"hdr_linear": np.ones((8, 8, 3)), "tone_mapper": "magic"}, "tone mapper"),
    ({"sdr_base_linear": np.ones((8, 8, 3))}, "gain_map and metadata"),
    ({"sdr_base_linear": np.ones((8, 8, 3)), "gain_map": np.zeros((8, 8, 2)),
      "metadata": GainMapMetadata(gain_map_max=1.0, alternate_hdr_headroom=1.0)}, "gain_map"),
    ({"sdr_base_linear": np.ones((8, 8, 3)), "gain_map": np.zeros((8, 8, 1)),
      "metadata": GainMapMetadata(gain_map_max=1.0, alternate_hdr_headroom=0.0)},
     "alternate_hdr_headroom"),
    ({"hdr_linear": np.ones((8, 8, 3)), "gain_map": np.zeros((8, 8, 1))}, "not both"),
])
def test_bad_encoder_input_raises_value_error_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name):
        encode_ultrahdr(**kwargs)


def test_bad_files_raise_value_error_naming_the_problem(ultrahdr_bytes):
    with pytest.raises(ValueError, match="start-of-image"):
        decode_ultrahdr(b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="truncated"):
        decode_ultrahdr(ultrahdr_bytes[:500])
    cmyk = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(cmyk, "JPEG")
    with pytest.raises(ValueError, match="CMYK"):
        decode_ultrahdr(cmyk.getvalue(), allow_sdr_only=True)
    # A four-channel gain map is not an Ultra HDR gain map.
    metadata = GainMapMetadata(gain_map_max=1.0, alternate_hdr_headroom=1.0)
    wrong = assemble(plain_jpeg(), cmyk.getvalue(), to_xmp(metadata), to_iso_box(metadata),
                     bytes(4))
    with pytest.raises(ValueError, match="gain map image is CMYK"):
        decode_ultrahdr(wrong)


def test_without_an_mpf_index_the_gain_map_after_the_primary_is_used(ultrahdr_bytes):
    # Hide the MPF segment (rename its signature): the reader walks the primary's
    # entropy-coded data to its EOI and finds the gain map right after it.
    hidden = ultrahdr_bytes.replace(b"\xff\xe2\x00\x58MPF\0", b"\xff\xe2\x00\x58XPF\0", 1)
    assert hidden != ultrahdr_bytes
    np.testing.assert_array_equal(decode_ultrahdr(hidden).hdr,
                                  decode_ultrahdr(ultrahdr_bytes).hdr)


def test_a_progressive_base_is_walked_scan_by_scan():
    buffer = io.BytesIO()
    rows = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    Image.fromarray(rows).save(buffer, "JPEG", quality=90, progressive=True)
    image = decode_ultrahdr(buffer.getvalue(), allow_sdr_only=True)
    assert image.sdr.shape == (48, 64, 3)


def test_torch_input_is_accepted_and_left_untouched(chart):
    hdr = torch.from_numpy(chart.copy()).requires_grad_(True)
    data = encode_ultrahdr(hdr)
    assert decode_ultrahdr(data).hdr.shape == (64, 96, 3)
    assert hdr.grad is None and torch.equal(hdr.detach(), torch.from_numpy(chart))
