"""Gain maps: ISO 21496-1 maths against libavif's published values, and the metadata's
binary box and hdrgm XMP against an independent parser written from the standard."""

import math

import colour
import numpy as np
import pytest
import torch
from _devices import OnDevice
from _iso21496_oracle import parse_iso_21496_1

import comfyui_hdr.hdr.gainmap as gainmap_module
from comfyui_hdr.hdr.gainmap import (
    apply_gain_map,
    extract_gain_map,
    gain_map_weight,
)
from comfyui_hdr.hdr.gainmap_metadata import (
    GainMapMetadata,
    from_iso_box,
    from_xmp,
    to_iso_box,
    to_xmp,
)

REC709 = colour.RGB_COLOURSPACES["ITU-R BT.709"]


@pytest.fixture(name="gm")
def _gm_on_device(device):
    """The library with numpy arguments moved to ``device`` (tests/_devices.py)."""
    return OnDevice(gainmap_module, device, numpy_results=('extract_gain_map',))


def luminance(rgb):
    return colour.RGB_luminance(rgb, REC709.primaries, REC709.whitepoint)


def synthetic_pair():
    """A 32x32 HDR image from 2**-8 to 2**10 (with an 18 % grey patch) and an SDR base."""
    rng = np.random.default_rng(21496)
    hdr = np.exp2(rng.uniform(-8, 10, (32, 32, 1))) * rng.uniform(0.6, 1.0, (32, 32, 3))
    hdr[:4, :4] = 0.18
    hdr[-1, -1] = 2.0**10
    sdr = hdr / (1 + hdr)  # any plausible base works; the map carries the ratio
    return hdr, sdr


def relative_error(estimate, truth):
    return np.abs(estimate - truth) / np.abs(truth)


def test_8bit_luminance_map_round_trip_is_within_1_percent_median_luminance(gm):
    hdr, sdr = synthetic_pair()
    image, metadata = gm.extract_gain_map(hdr, sdr, bits=8)
    assert np.all(image * 255 == np.round(image * 255))
    restored = gm.apply_gain_map(sdr, image, metadata)
    target = luminance(hdr)
    error = relative_error(luminance(restored), target)
    # Measured median 0.74 %. Rounding to the nearest of 255 steps over the map's 10-stop
    # range leaves at most half a step, 0.0196 stop, in log2(Y + 1/64); relative to Y that
    # is (2 ** 0.0098 - 1) (Y + 1/64) / Y: 0.68 % at white, more in the deep shadows.
    assert np.median(error) <= 0.01
    half_step = (metadata.gain_map_max[0] - metadata.gain_map_min[0]) / 255 / 2
    bound = (2**half_step - 1) * (target + 1 / 64) / target
    assert np.all(error <= bound * (1 + 1e-9))


@pytest.mark.parametrize("channels", [1, 3])
def test_float_map_round_trip_is_exact_to_1e_5(gm, channels):
    hdr, sdr = synthetic_pair()
    image, metadata = gm.extract_gain_map(hdr.astype(np.float32), sdr.astype(np.float32),
                                       bits=None, channels=channels)
    restored = gm.apply_gain_map(sdr.astype(np.float32), image, metadata)
    # float32 log2/exp2 over 18 stops: the residual is rounding, ~1e-6 relative.
    target = luminance(hdr) if channels == 1 else hdr
    result = luminance(restored) if channels == 1 else restored
    assert np.median(relative_error(result, target)) <= 1e-5
    assert image.shape == (32, 32, channels)


def test_uint8_map_equals_its_float_codes_and_upsampling_keeps_a_constant_map(gm):
    hdr, sdr = synthetic_pair()
    codes, metadata = gm.extract_gain_map(hdr, sdr, as_uint8=True)
    assert codes.dtype == np.uint8
    np.testing.assert_allclose(gm.apply_gain_map(sdr, codes, metadata),
                               gm.apply_gain_map(sdr, codes / 255.0, metadata), rtol=1e-12)
    constant = np.full((8, 8, 1), 0.5)
    np.testing.assert_allclose(gm.apply_gain_map(sdr, constant, metadata),
                               gm.apply_gain_map(sdr, np.full((32, 32, 1), 0.5), metadata),
                               rtol=1e-12)


# libavif avifGetGainMapWeight and its apply-gain core (float32), as published in the
# ultrahdr-core crate's tests/data/libavif_apply_gain.csv: metadata gainMapMin 0,
# gainMapMax 2, gamma 1, offsets 1/64, weight 1.
LIBAVIF_WEIGHTS = [(0.0, 0.0), (0.5, 0.25), (1.0, 0.5), (1.5, 0.75), (2.0, 1.0), (3.0, 1.0)]
LIBAVIF_APPLY = [(0.0, 0.5, 0.5), (0.25, 0.0, 0.00647208653), (0.25, 0.18, 0.261030525),
                 (0.5, 0.01, 0.0356249996), (0.5, 0.18, 0.375625014),
                 (0.75, 0.5, 1.44278276), (0.75, 1.0, 2.8569963), (1.0, 1.0, 4.046875)]


@pytest.mark.parametrize(("display", "weight"), LIBAVIF_WEIGHTS)
def test_weight_matches_libavif(display, weight):
    metadata = GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0)
    assert gain_map_weight(metadata, display) == weight


def test_apply_matches_libavif_apply_gain_values(gm):
    metadata = GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0)
    gains, bases, expected = (np.array(column) for column in zip(*LIBAVIF_APPLY, strict=True))
    base = np.repeat(bases[:, None, None], 3, axis=-1).reshape(1, -1, 3)
    result = gm.apply_gain_map(base, gains.reshape(1, -1, 1), metadata, 2.0)
    # libavif computes in float32: agreement to 1e-6 relative (plus 1e-9 at black).
    np.testing.assert_allclose(result[0, :, 1], expected, rtol=1e-6, atol=1e-9)


def test_weight_clamps_below_the_base_and_above_the_alternate_headroom():
    hdr, sdr = synthetic_pair()
    image, metadata = extract_gain_map(hdr, sdr, bits=None, base_hdr_headroom=1.0,
                                       alternate_hdr_headroom=3.0)
    full = apply_gain_map(sdr, image, metadata)
    # Below the base headroom W = 0: the base comes back (offsets equal, so exactly).
    np.testing.assert_allclose(apply_gain_map(sdr, image, metadata, 0.5), sdr, rtol=1e-12)
    np.testing.assert_allclose(apply_gain_map(sdr, image, metadata, 1.0), sdr, rtol=1e-12)
    np.testing.assert_allclose(apply_gain_map(sdr, image, metadata, 3.0), full, rtol=1e-12)
    np.testing.assert_allclose(apply_gain_map(sdr, image, metadata, 8.0), full, rtol=1e-12)
    # Half-way, the log boost is halved: geometric mean of base and alternate (+offsets).
    offset = 1 / 64
    halfway = np.sqrt((sdr + offset) * (full + offset)) - offset
    np.testing.assert_allclose(apply_gain_map(sdr, image, metadata, 2.0), halfway, rtol=1e-12)


def test_torch_path_matches_numpy_and_is_differentiable():
    hdr, sdr = synthetic_pair()
    image, metadata = extract_gain_map(hdr, sdr, bits=None)
    base = torch.tensor(sdr, requires_grad=True)
    result = apply_gain_map(base, torch.tensor(image), metadata)
    np.testing.assert_array_equal(result.detach().numpy(), apply_gain_map(sdr, image, metadata))
    result.sum().backward()
    assert torch.isfinite(base.grad).all()


# --- metadata: checked with the independent reader in _iso21496_oracle.py -------------


METADATA_3 = GainMapMetadata(
    gain_map_min=(-0.5, -0.25, 0.0), gain_map_max=(math.log2(1000 / 203), 3.0, 2.75),
    gamma=(1.0, 1.25, 0.8), base_offset=1 / 64, alternate_offset=(1 / 64, 0.0, 1 / 32),
    base_hdr_headroom=0.0, alternate_hdr_headroom=math.log2(1000 / 203),
    use_base_colour_space=False)


@pytest.mark.parametrize("metadata", [
    GainMapMetadata(gain_map_max=3.5, alternate_hdr_headroom=3.5, gain_map_min=-1 / 3,
                    gamma=1.2, base_offset=-1 / 7, alternate_offset=2 / 9),
    METADATA_3])
def test_iso_box_fields_read_back_by_an_independent_parser(metadata):
    data = to_iso_box(metadata)
    fields = parse_iso_21496_1(data)
    assert fields["size"] == len(data) == (141 if metadata.channels == 3 else 61)
    assert (fields["minimum_version"], fields["writer_version"], fields["reserved"]) == (0, 0, 0)
    assert fields["is_multichannel"] == (metadata.channels == 3)
    assert fields["use_base_colour_space"] == metadata.use_base_colour_space
    # Every fraction equals the float it encodes to float64 precision (exactly for
    # dyadic values such as 1/64).
    for name in ("base_hdr_headroom", "alternate_hdr_headroom"):
        assert float(fields[name]) == pytest.approx(getattr(metadata, name), rel=1e-15)
    for channel in range(metadata.channels):
        for name in ("gain_map_min", "gain_map_max", "gamma", "base_offset",
                     "alternate_offset"):
            value = getattr(metadata, name)[channel]
            assert float(fields[f"{name}_{channel}"]) == pytest.approx(value, rel=1e-15)


# libultrahdr tests/gainmapmetadata_test.cpp, kSingleMixedDenominators: the final
# ISO 21496-1 layout of headrooms 0/1 and 7/2, min -1/3, max 5/4, gamma 6/5,
# offsets -1/7 and 2/9, use_base_colour_space false.
LIBULTRAHDR_SINGLE_MIXED = bytes.fromhex(
    "0000000000" "0000000000000001" "0000000700000002" "ffffffff00000003"
    "0000000500000004" "0000000600000005" "ffffffff00000007" "0000000200000009")
# ... and kLegacySingleEqualDenominators, the compact draft layout (common denominator 64).
LIBULTRAHDR_LEGACY = bytes.fromhex(
    "0000000048" "00000040" "00000000" "000000c0" "ffffffc0" "00000080" "00000040"
    "00000001" "00000002")


def test_iso_box_matches_libultrahdr_golden_bytes():
    metadata = GainMapMetadata(gain_map_max=5 / 4, alternate_hdr_headroom=7 / 2,
                               gain_map_min=-1 / 3, gamma=6 / 5, base_offset=-1 / 7,
                               alternate_offset=2 / 9, use_base_colour_space=False)
    assert to_iso_box(metadata) == LIBULTRAHDR_SINGLE_MIXED
    assert from_iso_box(LIBULTRAHDR_SINGLE_MIXED) == metadata


def test_iso_box_reads_the_legacy_common_denominator_layout():
    metadata = from_iso_box(LIBULTRAHDR_LEGACY)
    assert metadata == GainMapMetadata(
        gain_map_min=-1.0, gain_map_max=2.0, gamma=1.0, base_offset=1 / 64,
        alternate_offset=2 / 64, base_hdr_headroom=0.0, alternate_hdr_headroom=3.0,
        use_base_colour_space=True)


@pytest.mark.parametrize("metadata", [
    GainMapMetadata(gain_map_max=2.5, alternate_hdr_headroom=2.5, gamma=0.5), METADATA_3])
def test_iso_box_and_xmp_round_trip_every_field(metadata):
    assert from_iso_box(to_iso_box(metadata)) == metadata
    xmp_safe = GainMapMetadata(**{**metadata.__dict__, "use_base_colour_space": True})
    assert from_xmp(to_xmp(xmp_safe)) == xmp_safe


def test_xmp_reader_takes_libultrahdr_attributes_and_spec_defaults():
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.1.2">'
           '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/" '
           'hdrgm:Version="1.0" hdrgm:GainMapMax="3.5" hdrgm:HDRCapacityMax="3.5"/>'
           "</rdf:RDF></x:xmpmeta>")
    assert from_xmp(xmp) == GainMapMetadata(gain_map_max=3.5, alternate_hdr_headroom=3.5)
    with pytest.raises(ValueError, match="GainMapMax"):
        from_xmp(xmp.replace('hdrgm:GainMapMax="3.5" ', ""))


@pytest.mark.parametrize(("make", "name"), [
    (lambda: GainMapMetadata(gain_map_max=1.0, gain_map_min=2.0, alternate_hdr_headroom=1.0),
     "gain_map_min"),
    (lambda: GainMapMetadata(gain_map_max=1.0, gamma=0.0, alternate_hdr_headroom=1.0), "gamma"),
    (lambda: GainMapMetadata(gain_map_max=(1.0, 2.0), alternate_hdr_headroom=1.0),
     "gain_map_max"),
    (lambda: GainMapMetadata(gain_map_max=1.0, alternate_hdr_headroom=-1.0),
     "alternate_hdr_headroom"),
    (lambda: from_iso_box(LIBULTRAHDR_SINGLE_MIXED[:40]), "truncated"),
    (lambda: from_xmp("<x/>"), "hdrgm"),
])
def test_bad_metadata_raises_value_error_naming_the_field(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_images_raise_value_error_naming_the_input():
    hdr, sdr = synthetic_pair()
    metadata = GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0)
    cases = [
        (lambda: extract_gain_map(hdr, sdr, min_content_boost=8.0, max_content_boost=2.0),
         "min_content_boost"),
        (lambda: extract_gain_map(hdr, sdr, gamma=0.0), "gamma"),
        (lambda: extract_gain_map(hdr, sdr[:16]), "sdr_base_linear"),
        (lambda: extract_gain_map(hdr[..., :2], sdr[..., :2]), "hdr_linear"),
        (lambda: extract_gain_map(hdr, sdr, channels=2), "channels"),
        (lambda: extract_gain_map(-hdr, sdr), "hdr_linear"),
        (lambda: apply_gain_map(sdr, np.zeros((32, 32, 2)), metadata), "gain_map"),
        (lambda: apply_gain_map(sdr, np.zeros((32, 32, 1), np.int32), metadata), "gain_map"),
    ]
    for make, name in cases:
        with pytest.raises(ValueError, match=name):
            make()
