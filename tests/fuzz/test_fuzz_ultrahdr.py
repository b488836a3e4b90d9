"""Fuzzed Ultra HDR readers: JPEG marker segments, the MPF index, XMP, ICC profiles, the
ISO 21496-1 box, the container walk and the pixel decode (see ``_fuzz.py`` for what passes).

Seeds: two files of our writer (one-channel map; three-channel map at a quarter size)
and one of libultrahdr (through OpenImageIO: Display P3 base with an ICC profile), and
the payloads cut out of them. ``-s`` prints each target's counts and time.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from _fuzz import Field, Seed, fuzz, text_fields
from PIL import ImageCms

from comfyui_hdr.hdr import gainmap_metadata, jpeg_markers, ultrahdr, ultrahdr_container
from comfyui_hdr.hdr.gainmap_metadata import GainMapMetadata
from comfyui_hdr.hdr.jpeg_markers import MARKERS, MPF, SIGNATURES, read_segments

FUZZ_SEED = 21496
INPUTS = 100_000
PIXEL_INPUTS = 1_000
"""Whole decodes (Pillow's JPEG decoder and the gain map maths) cost about 100 times a
header walk, so the pixel path takes fewer inputs; every header check before it takes
INPUTS."""
PIXEL_MAX = 2**20
"""max_pixels of the whole-decode target: the caller's limit that bounds its allocation."""
HEADROOM = 64 * 2**20
"""Allocation bound of the header and payload targets (the seeds are a few KiB)."""
PIXEL_HEADROOM = 256 * 2**20
"""Allocation bound of the whole decode: about 50 bytes per pixel of PIXEL_MAX, and the
gain map's."""
NAME = "upload.jpg"
XMP_TOKENS = (b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>', b"&a;", b"<rdf:li>", b"</rdf:li>",
              b'<!ENTITY b SYSTEM "file:///etc/passwd">', b"<rdf:Seq>", b'hdrgm:GainMapMax="',
              b'hdrgm:Version="1.0"', b"nan", b"inf", b"-1e309", b"1e999", b'="', b"<![CDATA[",
              b"\x00", b"\xff\xfe")


def _scene() -> np.ndarray:
    """16 x 32 scene-linear RGB from 0.18 (mid grey) up to 0.18 x 2**8 = 46."""
    x = np.linspace(0.0, 1.0, 32, dtype=np.float32)
    y = np.linspace(0.0, 1.0, 16, dtype=np.float32)[:, None]
    stops = 0.18 * 2.0 ** (8 * x) * np.ones_like(y)
    return np.stack([stops, stops * (0.7 + 0.3 * y), stops * 0.5], -1).astype(np.float32)


def _libultrahdr_file(scene: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "libultrahdr.jpg")
        spec = oiio.ImageSpec(scene.shape[1], scene.shape[0], 3, oiio.HALF)
        spec.attribute("oiio:ColorSpace", "lin_rec709_scene")  # else a plain SDR JPEG
        spec.attribute("jpeg:ultrahdr", 1)
        output = oiio.ImageOutput.create(path)
        assert output.open(path, spec), oiio.geterror()
        assert output.write_image(scene.astype(np.float16))
        output.close()
        return Path(path).read_bytes()


def _mpf_fields(data: bytes, segment: jpeg_markers.Segment) -> list[Field]:
    tiff = segment.offset + MPF.header_offset
    order = "big" if data[tiff:tiff + 2] == b"MM" else "little"
    ifd = tiff + int.from_bytes(data[tiff + 4:tiff + 8], order)
    fields = [Field(tiff + 4, 4, order), Field(ifd, 2, order)]
    for entry in range(int.from_bytes(data[ifd:ifd + 2], order)):
        fields += [Field(ifd + 2 + 12 * entry + 4, 4, order),
                   Field(ifd + 2 + 12 * entry + 8, 4, order)]
    return fields


def _icc_fields(data: bytes, segment: jpeg_markers.Segment) -> list[Field]:
    body = segment.offset + 4 + len(SIGNATURES.icc)
    profile = body + 2
    fields = [Field(body, 1), Field(body + 1, 1), Field(profile, 4), Field(profile + 128, 4)]
    count = int.from_bytes(data[profile + 128:profile + 132], "big")
    for tag in range(min(count, 64)):
        fields += [Field(profile + 136 + 12 * tag, 4), Field(profile + 140 + 12 * tag, 4)]
    return fields


def jpeg_fields(data: bytes) -> tuple[Field, ...]:
    """Every segment length, frame size, MPF offset and ICC tag offset of both streams."""
    fields: list[Field] = []
    start = 0
    while data[start:start + 2] == b"\xff\xd8":
        segments, start = read_segments(data, start)
        for segment in segments:
            fields.append(Field(segment.offset + 2, 2))
            if segment.marker in MARKERS.start_of_frame:
                fields += [Field(segment.offset + 5, 2), Field(segment.offset + 7, 2)]
            if segment.payload.startswith(SIGNATURES.mpf):
                fields += _mpf_fields(data, segment)
            if segment.payload.startswith(SIGNATURES.icc):
                fields += _icc_fields(data, segment)
    return tuple(fields)


@pytest.fixture(scope="module")
def files() -> list[bytes]:
    scene = _scene()
    return [ultrahdr.encode_ultrahdr(scene),
            ultrahdr.encode_ultrahdr(scene, channels=3, gain_map_scale=4),
            _libultrahdr_file(scene)]


def _payloads(files: list[bytes], marker: int, signature: bytes) -> list[bytes]:
    """Every stream's first ``marker`` payload after ``signature`` (the signature removed)."""
    found = []
    for data in files:
        start = 0
        while data[start:start + 2] == b"\xff\xd8":
            segments, start = read_segments(data, start)
            item = jpeg_markers.app_payload(segments, marker, signature)
            if item is not None:
                found.append(item.payload)
    return found


def _run(name, target, seeds, count=INPUTS, tokens=(), error_name=None, refuses=True,
         headroom=HEADROOM):
    report = fuzz(name, target, seeds, count, seed=FUZZ_SEED, tokens=tokens, name=error_name,
                  headroom_bytes=headroom)
    print(report.summary(), report.refusal_text(), sep="\n")
    assert not report.failures, report.failure_text()
    # The inputs reached both outcomes, with more than one kind of refusal (a reader that
    # never refuses, such as the ICC matcher, which answers None, is said so).
    assert report.accepted > 0 and (len(report.refusals) > 1) == refuses, report.summary()
    return report


def test_fuzz_container_walk_markers_mpf_xmp_icc(files):
    seeds = [Seed(data, jpeg_fields(data)) for data in files]
    _run("ultrahdr container",
         lambda data: ultrahdr_container.read_container(data, name=NAME), seeds,
         tokens=XMP_TOKENS + (b"\xff\xd8", b"\xff\xd9", b"\xff\xda", b"MPF\0MM\0*"),
         error_name=NAME)


def test_fuzz_pixel_decode(files):
    seeds = [Seed(data, jpeg_fields(data)) for data in files]
    _run("ultrahdr decode", lambda data: ultrahdr.decode_ultrahdr(
        data, name=NAME, max_pixels=PIXEL_MAX), seeds, count=PIXEL_INPUTS, error_name=NAME,
         headroom=PIXEL_HEADROOM)


def _little_endian_mpf() -> bytes:
    """The MP Index IFD of ``mpf_payload`` in Intel byte order (CIPA DC-007 allows both)."""
    body = bytearray(MPF.little_endian + struct.pack("<I", 8) + struct.pack("<H", 3))
    body += struct.pack("<HHI", MPF.version_tag, MPF.type_undefined, 4) + MPF.version
    body += struct.pack("<HHII", MPF.number_of_images_tag, MPF.type_long, 1, 2)
    body += struct.pack("<HHII", MPF.mp_entry_tag, MPF.type_undefined, 32, 50)
    body += struct.pack("<I", 0)
    body += struct.pack("<IIIHH", MPF.primary_attribute, 1000, 0, 0, 0)
    body += struct.pack("<IIIHH", MPF.gain_map_attribute, 200, 700, 0, 0)
    return bytes(body)


def test_fuzz_mpf_index(files):
    payloads = _payloads(files, MARKERS.app2, SIGNATURES.mpf)
    payloads.append(_little_endian_mpf())
    seeds = []
    for payload in payloads:
        order = "big" if payload[:2] == b"MM" else "little"
        ifd = int.from_bytes(payload[4:8], order)
        seeds.append(Seed(payload, (Field(4, 4, order), Field(ifd, 2, order), *(
            Field(ifd + 2 + 12 * entry + offset, 4, order) for entry in range(3)
            for offset in (4, 8)))))
    _run("MPF index", jpeg_markers.parse_mpf, seeds)


def test_fuzz_xmp(files):
    texts = _payloads(files, MARKERS.app1, SIGNATURES.xmp)
    metadata = GainMapMetadata(gain_map_max=(2.0, 2.5, 3.0), alternate_hdr_headroom=3.0,
                               gain_map_min=-0.5, gamma=(1.0, 1.1, 1.2))
    texts.append(gainmap_metadata.to_xmp(metadata).encode())
    # Text fields: every attribute value and element text.
    seeds = [Seed(text, text_fields(text, rb'="([^"]*)"') + text_fields(text, rb">([^<]+)<"))
             for text in texts]
    _run("XMP", lambda data: gainmap_metadata.from_xmp(data.decode("utf-8", "replace")),
         seeds, tokens=XMP_TOKENS)


def test_fuzz_iso_21496_box(files):
    boxes = _payloads(files, MARKERS.app2, SIGNATURES.iso)
    # The compact layout of the libultrahdr 1.0-1.3 drafts: flag bit 3, one denominator.
    boxes.append(struct.pack(">HHBIII", 0, 0, 1 << 3, 64, 0, 192)
                 + struct.pack(">iiIii", 0, 128, 64, 1, 1))
    seeds = [Seed(box, tuple(Field(offset, 4) for offset in range(5, len(box) - 3, 4)))
             for box in boxes]
    _run("ISO 21496-1 box", gainmap_metadata.from_iso_box, seeds)


def test_fuzz_icc_profiles(files):
    profiles = [jpeg_markers.icc_profile(read_segments(data)[0]) for data in files]
    profiles = [item for item in profiles if item is not None]
    profiles.append(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    seeds = []
    for profile in profiles:
        count = int.from_bytes(profile[128:132], "big")
        seeds.append(Seed(profile, (Field(0, 4), Field(128, 4), *(
            Field(136 + 12 * tag + offset, 4) for tag in range(count) for offset in (0, 4)))))
    _run("ICC profile", ultrahdr_container.icc_gamut, seeds, refuses=False)
