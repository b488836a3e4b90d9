"""JPEG marker segments, the Multi-Picture Format index and the GContainer XMP of Ultra HDR.

An Ultra HDR JPEG is two JPEG streams back to back: the primary (SDR base) image, whose
header carries an XMP directory of the items and an MPF index of where each image starts,
and the gain map image, whose header carries the gain map metadata. This module reads and
writes those header segments on raw bytes; it never touches pixels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class _Markers:
    """ITU-T T.81 (1992), Table B.1: the marker codes (each follows a 0xFF byte)."""

    soi: int = 0xD8
    eoi: int = 0xD9
    sos: int = 0xDA
    app0: int = 0xE0
    app1: int = 0xE1
    app2: int = 0xE2
    # Markers without a length field: TEM and RST0..RST7 (Table B.1); 0x00 is a stuffed
    # 0xFF data byte inside entropy-coded data (section B.1.1.5).
    standalone: frozenset = frozenset({0x01, *range(0xD0, 0xD8)})
    stuffing: int = 0x00
    # The length field counts itself (2 bytes), so a payload holds at most 65533 bytes.
    max_payload: int = 0xFFFF - 2
    # Start-of-frame markers SOF0..SOF15 (Table B.1) are 0xC0..0xCF but for DHT (0xC4),
    # JPG (0xC8) and DAC (0xCC); SOF9..SOF15 (0xC9 and up) use arithmetic coding.
    start_of_frame: frozenset = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
    first_arithmetic_frame: int = 0xC9
    # A Huffman-coded 8x8 block costs at least one bit (its DC difference's code, Annex
    # F.1.2.1 and Table K.3 codes are >= 1 bit), so a complete Huffman JPEG holds at most
    # 8 blocks x 64 pixels per byte of one component.
    max_huffman_pixels_per_byte: int = 8 * 64


MARKERS = _Markers()


@dataclass(frozen=True)
class _Signatures:
    """The null-terminated identifiers that open each application segment."""

    # Adobe XMP Specification Part 3 (2016), section 1.1.3: APP1 namespace.
    xmp: bytes = b"http://ns.adobe.com/xap/1.0/\0"
    # ISO/TS 21496-1, carriage in JPEG: APP2 with this URN, as libultrahdr writes it.
    iso: bytes = b"urn:iso:std:iso:ts:21496:-1\0"
    # CIPA DC-007-2009 (Multi-Picture Format), section 5.2.1: APP2 "MPF\0".
    mpf: bytes = b"MPF\0"
    # ICC.1:2010, Annex B.4: APP2 "ICC_PROFILE\0", then sequence number and chunk count.
    icc: bytes = b"ICC_PROFILE\0"
    jfif: bytes = b"JFIF\0"


SIGNATURES = _Signatures()


@dataclass(frozen=True)
class _MpfLayout:
    """CIPA DC-007-2009 (Multi-Picture Format) MP Index IFD, as libultrahdr
    ``multipictureformat.cpp`` writes it: big-endian, three tags, no attribute IFD."""

    big_endian: bytes = b"MM\x00\x2a"
    little_endian: bytes = b"II\x2a\x00"
    version_tag: int = 0xB000
    number_of_images_tag: int = 0xB001
    mp_entry_tag: int = 0xB002
    type_long: int = 4
    type_undefined: int = 7
    version: bytes = b"0100"
    entry_size: int = 16
    # Individual image attribute (section 5.2.3.3.1): data format JPEG (0) with type code
    # 0x030000 "Baseline MP Primary Image"; libultrahdr gives the gain map attribute 0.
    primary_attribute: int = 0x030000
    gain_map_attribute: int = 0x000000
    # Offsets of images after the first count from the TIFF header that follows the
    # signature: marker (2) + length (2) + "MPF\0" (4) bytes after the segment's 0xFF.
    header_offset: int = 8


MPF = _MpfLayout()


@dataclass(frozen=True)
class _ContainerXmp:
    """Android Ultra HDR image format 1.1, "Primary image XMP": the GContainer directory."""

    container: str = "http://ns.google.com/photos/1.0/container/"
    item: str = "http://ns.google.com/photos/1.0/container/item/"
    hdrgm: str = "http://ns.adobe.com/hdr-gain-map/1.0/"
    rdf: str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    xmpmeta: str = "adobe:ns:meta/"
    version: str = "1.0"
    mime: str = "image/jpeg"


CONTAINER_XMP = _ContainerXmp()


class Segment(NamedTuple):
    """One marker segment of a JPEG header."""

    marker: int
    offset: int
    payload: bytes


class FrameHeader(NamedTuple):
    """What a JPEG's start-of-frame segment declares (ITU-T T.81, B.2.2)."""

    width: int
    height: int
    components: int
    arithmetic: bool


class MpEntry(NamedTuple):
    """One image of an MPF index: attribute, size in bytes, offset (see :data:`MPF`)."""

    attribute: int
    size: int
    offset: int


def segment(marker: int, payload: bytes) -> bytes:
    """Return the bytes of one marker segment: 0xFF, marker, 16-bit length, payload.

    >>> segment(MARKERS.app2, b"MPF\\0").hex()
    'ffe200064d504600'
    """
    if len(payload) > MARKERS.max_payload:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a JPEG segment "
                         f"(at most {MARKERS.max_payload}); shorten the metadata")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _check_soi(stream: bytes, start: int, name: str) -> None:
    if stream[start:start + 2] != bytes((0xFF, MARKERS.soi)):
        raise ValueError(f"{name} has no JPEG start-of-image marker at byte {start}; pass "
                         "the bytes of a .jpg file")


def _next_marker(stream: bytes, position: int, name: str) -> int:
    """Offset of the next marker after entropy-coded data that starts at ``position``."""
    while True:
        position = stream.find(b"\xff", position)
        if position < 0 or position + 1 >= len(stream):
            raise ValueError(f"{name} ends inside the entropy-coded data (no EOI marker); "
                             "the file is truncated")
        code = stream[position + 1]
        if code == 0xFF:
            position += 1
        elif code == MARKERS.stuffing or code in MARKERS.standalone:
            position += 2
        else:
            return position


def read_segments(stream: bytes, start: int = 0, *,
                  name: str = "data") -> tuple[list[Segment], int]:
    """Walk the JPEG at ``start``: its marker segments and the offset just past its EOI.

    Segments after the first scan (progressive tables) are included; entropy-coded data
    is skipped by its byte stuffing, so the walk needs no MPF index.

    Parameters
    ----------
    stream
        Bytes holding a JPEG stream at ``start``.
    start
        Offset of its SOI marker.
    name
        What to call ``stream`` in errors.

    Returns
    -------
    ``(segments, end)``.

    References
    ----------
    ITU-T T.81 (1992), Annex B (syntax, byte stuffing).

    >>> stream = b"\\xff\\xd8" + segment(0xE2, b"MPF\\0") + b"\\xff\\xd9"
    >>> segments, end = read_segments(stream)
    >>> hex(segments[0].marker), segments[0].payload, end
    ('0xe2', b'MPF\\x00', 12)
    """
    _check_soi(stream, start, name)
    segments: list[Segment] = []
    position = start + 2
    while True:
        if position + 2 > len(stream) or stream[position] != 0xFF:
            raise ValueError(f"{name} has a malformed JPEG header at byte {position}; the "
                             "file is truncated or not a JPEG")
        marker = stream[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == MARKERS.eoi:
            return segments, position + 2
        if marker in MARKERS.standalone:
            position += 2
            continue
        if position + 4 > len(stream):
            raise ValueError(f"{name} ends inside a JPEG segment header; the file is "
                             "truncated")
        length = struct.unpack_from(">H", stream, position + 2)[0]
        if length < 2 or position + 2 + length > len(stream):
            raise ValueError(f"{name} has a JPEG segment of impossible length {length} at "
                             f"byte {position}; the file is truncated or corrupt")
        segments.append(Segment(marker, position, stream[position + 4:position + 2 + length]))
        position += 2 + length
        if marker == MARKERS.sos:
            position = _next_marker(stream, position, name)


def frame_header(segments: list[Segment], name: str = "data") -> FrameHeader:
    """The first start-of-frame segment's size, component count and coding.

    References
    ----------
    ITU-T T.81 (1992), B.2.2 (frame header: P, Y, X, Nf, then 3 bytes per component).

    >>> sof = Segment(0xC0, 2, bytes((8, 0, 16, 0, 32, 1, 1, 0x11, 0)))
    >>> frame_header([sof])
    FrameHeader(width=32, height=16, components=1, arithmetic=False)
    """
    for item in segments:
        if item.marker in MARKERS.start_of_frame:
            payload = item.payload
            if len(payload) < 6 or len(payload) < 6 + 3 * payload[5]:
                raise ValueError(f"{name} has a start-of-frame segment of {len(payload)} bytes, "
                                 "too short for its components; the file is corrupt")
            height, width = struct.unpack_from(">HH", payload, 1)
            if not (width and height and payload[5]):
                raise ValueError(f"{name} declares a {width} x {height} picture of {payload[5]} "
                                 "components; the file is corrupt")
            return FrameHeader(width, height, payload[5],
                               item.marker >= MARKERS.first_arithmetic_frame)
    raise ValueError(f"{name} has no start-of-frame segment before its image data; the file "
                     "is truncated or not a JPEG")


def app_payload(segments: list[Segment], marker: int, signature: bytes) -> Segment | None:
    """The first ``marker`` segment whose payload starts with ``signature`` (signature
    removed from its payload), or None.

    >>> found = app_payload([Segment(0xE2, 2, b"MPF\\0MM")], MARKERS.app2, SIGNATURES.mpf)
    >>> found.payload
    b'MM'
    """
    for item in segments:
        if item.marker == marker and item.payload.startswith(signature):
            return Segment(item.marker, item.offset, item.payload[len(signature):])
    return None


def icc_profile(segments: list[Segment]) -> bytes | None:
    """Reassemble the ICC profile split over APP2 ``ICC_PROFILE`` chunks, or None.

    References
    ----------
    ICC.1:2010, Annex B.4 (embedding ICC profiles in JPEG files).

    >>> chunk = Segment(0xE2, 2, SIGNATURES.icc + bytes((1, 1)) + b"profile")
    >>> icc_profile([chunk])
    b'profile'
    """
    chunks = {}
    for item in segments:
        if item.marker == MARKERS.app2 and item.payload.startswith(SIGNATURES.icc):
            body = item.payload[len(SIGNATURES.icc):]
            if len(body) >= 2:
                chunks[body[0]] = body[2:]
    if not chunks:
        return None
    return b"".join(chunks[number] for number in sorted(chunks))


def insertion_point(jpeg: bytes) -> int:
    """Offset after a JPEG's SOI and leading APP0 (JFIF) segments: where new header
    segments go so a JFIF header stays first, as ITU-T T.871 requires.

    >>> insertion_point(b"\\xff\\xd8" + segment(0xE0, b"JFIF\\0") + b"\\xff\\xd9")
    11
    """
    _check_soi(jpeg, 0, "jpeg")
    position = 2
    while (jpeg[position:position + 2] == bytes((0xFF, MARKERS.app0))
           and position + 4 <= len(jpeg)):
        position += 2 + struct.unpack_from(">H", jpeg, position + 2)[0]
    return position


def insert_segments(jpeg: bytes, segments: list[bytes]) -> bytes:
    """Insert encoded segments into a JPEG stream at :func:`insertion_point`.

    >>> jpeg = b"\\xff\\xd8" + segment(0xE0, b"JFIF\\0") + b"\\xff\\xd9"
    >>> insert_segments(jpeg, [segment(0xE2, b"x")]).hex()
    'ffd8ffe000074a46494600ffe2000378ffd9'
    """
    position = insertion_point(jpeg)
    return jpeg[:position] + b"".join(segments) + jpeg[position:]


def mpf_payload(primary_size: int, gain_map_size: int, gain_map_offset: int) -> bytes:
    """The APP2 payload of an MPF index of two images: the primary at 0, the gain map.

    Parameters
    ----------
    primary_size
        Bytes of the whole primary stream, SOI to EOI (this segment included).
    gain_map_size
        Bytes of the whole gain map stream.
    gain_map_offset
        Offset of the gain map's SOI from the MPF TIFF header (the segment's 0xFF byte
        plus ``MPF.header_offset``).

    Returns
    -------
    ``b"MPF\\0"`` and the big-endian MP Index IFD (86 bytes in all).

    References
    ----------
    CIPA DC-007-2009, section 5.2 (MP Index IFD); libultrahdr ``multipictureformat.cpp``.

    >>> len(mpf_payload(1000, 200, 700))
    86
    """
    tags = ((MPF.version_tag, MPF.type_undefined, len(MPF.version), MPF.version),
            (MPF.number_of_images_tag, MPF.type_long, 1, struct.pack(">I", 2)))
    ifd_offset = len(MPF.big_endian) + 4
    entries_offset = ifd_offset + 2 + 3 * 12 + 4
    body = bytearray(MPF.big_endian + struct.pack(">I", ifd_offset) + struct.pack(">H", 3))
    for tag, kind, count, value in tags:
        body += struct.pack(">HHI", tag, kind, count) + value
    body += struct.pack(">HHII", MPF.mp_entry_tag, MPF.type_undefined, 2 * MPF.entry_size,
                        entries_offset)
    body += struct.pack(">I", 0)
    body += struct.pack(">IIIHH", MPF.primary_attribute, primary_size, 0, 0, 0)
    body += struct.pack(">IIIHH", MPF.gain_map_attribute, gain_map_size, gain_map_offset, 0, 0)
    return SIGNATURES.mpf + bytes(body)


def parse_mpf(body: bytes) -> list[MpEntry]:
    """Read the MP entries of an MPF index (the APP2 payload after ``MPF\\0``).

    Both byte orders are read; a malformed index raises ValueError.

    References
    ----------
    CIPA DC-007-2009, section 5.2 (MP Index IFD).

    >>> parse_mpf(mpf_payload(1000, 200, 700)[4:])
    [MpEntry(attribute=196608, size=1000, offset=0), MpEntry(attribute=0, size=200, offset=700)]
    """
    if body[:4] == MPF.big_endian:
        order = ">"
    elif body[:4] == MPF.little_endian:
        order = "<"
    else:
        raise ValueError("the MPF segment has no TIFF byte-order header; the file's "
                         "multi-picture index is corrupt")
    try:
        ifd_offset = struct.unpack_from(order + "I", body, 4)[0]
        count = struct.unpack_from(order + "H", body, ifd_offset)[0]
        for index in range(count):
            tag, _kind, size, value = struct.unpack_from(order + "HHII", body,
                                                         ifd_offset + 2 + 12 * index)
            if tag == MPF.mp_entry_tag:
                return [MpEntry(*struct.unpack_from(order + "III", body,
                                                    value + MPF.entry_size * number))
                        for number in range(size // MPF.entry_size)]
    except struct.error as error:
        raise ValueError(f"the MPF index is truncated ({error}); the file's multi-picture "
                         "index is corrupt") from error
    raise ValueError("the MPF index has no MP Entry tag (0xB002); the file's multi-picture "
                     "index is corrupt")


def container_xmp(gain_map_length: int) -> str:
    """The primary image's XMP: ``hdrgm:Version`` and a GContainer directory listing the
    primary and the gain map item with its length in bytes.

    References
    ----------
    Android Ultra HDR image format 1.1, "Primary image XMP"; libultrahdr ``jpegrutils.cpp``
    (generateXmpForPrimaryImage).

    >>> 'Item:Length="512"' in container_xmp(512)
    True
    """
    namespaces = (f'xmlns:Container="{CONTAINER_XMP.container}" '
                  f'xmlns:Item="{CONTAINER_XMP.item}" xmlns:hdrgm="{CONTAINER_XMP.hdrgm}"')
    items = (f'<rdf:li rdf:parseType="Resource"><Container:Item Item:Semantic="Primary" '
             f'Item:Mime="{CONTAINER_XMP.mime}"/></rdf:li>'
             f'<rdf:li rdf:parseType="Resource"><Container:Item Item:Semantic="GainMap" '
             f'Item:Mime="{CONTAINER_XMP.mime}" Item:Length="{gain_map_length}"/></rdf:li>')
    return (f'<x:xmpmeta xmlns:x="{CONTAINER_XMP.xmpmeta}"><rdf:RDF xmlns:rdf='
            f'"{CONTAINER_XMP.rdf}"><rdf:Description rdf:about="" {namespaces} '
            f'hdrgm:Version="{CONTAINER_XMP.version}"><Container:Directory><rdf:Seq>{items}'
            "</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>")


def icc_colorants(profile: bytes) -> tuple[tuple[float, ...], ...] | None:
    """The rXYZ, gXYZ, bXYZ colorant tags of an ICC profile as XYZ rows of a 3x3 matrix
    (columns R, G, B; PCS D50), or None if the profile lacks them.

    References
    ----------
    ICC.1:2010, sections 7.3 (tag table), 9.2.44-9.2.46 (colorant tags), 10.31
    (XYZType: s15Fixed16Number triplets after an 8-byte type header).
    """
    try:
        count = struct.unpack_from(">I", profile, 128)[0]
        tags = {profile[132 + 12 * index:136 + 12 * index]:
                struct.unpack_from(">I", profile, 136 + 12 * index)[0] for index in range(count)}
        columns = [struct.unpack_from(">3i", profile, tags[name] + 8)
                   for name in (b"rXYZ", b"gXYZ", b"bXYZ")]
    except (struct.error, KeyError):
        return None
    return tuple(tuple(column[row] / 65536 for column in columns) for row in range(3))


def assemble(base_jpeg: bytes, gain_map_jpeg: bytes, gain_map_xmp: str, iso_box: bytes,
             iso_versions: bytes) -> bytes:
    """Join a base JPEG and a gain map JPEG into an Ultra HDR file.

    The gain map gets its ``hdrgm:`` XMP (APP1) and ISO 21496-1 box (APP2); the primary
    gets the GContainer XMP, the ISO version box and the MPF index (in that order), all
    after the streams' JFIF headers.

    Parameters
    ----------
    base_jpeg, gain_map_jpeg
        The two encoded images.
    gain_map_xmp
        The gain map's ``hdrgm:`` XMP document.
    iso_box, iso_versions
        The ISO 21496-1 ``GainMapMetadata()`` payload, and its 4 version bytes alone.

    Returns
    -------
    The file's bytes.

    References
    ----------
    Android Ultra HDR image format 1.1; CIPA DC-007-2009; libultrahdr ``jpegr.cpp``
    (appendGainMap).
    """
    gain_map = insert_segments(gain_map_jpeg, [
        segment(MARKERS.app1, SIGNATURES.xmp + gain_map_xmp.encode()),
        segment(MARKERS.app2, SIGNATURES.iso + iso_box),
    ])
    head = (segment(MARKERS.app1, SIGNATURES.xmp + container_xmp(len(gain_map)).encode())
            + segment(MARKERS.app2, SIGNATURES.iso + iso_versions))
    position = insertion_point(base_jpeg)
    primary_size = len(base_jpeg) + len(head) + len(segment(MARKERS.app2, mpf_payload(0, 0, 0)))
    mpf = segment(MARKERS.app2, mpf_payload(
        primary_size, len(gain_map), primary_size - position - len(head) - MPF.header_offset))
    return base_jpeg[:position] + head + mpf + base_jpeg[position:] + gain_map


def locate_gain_map(data: bytes, segments: list[Segment],
                    primary_end: int) -> tuple[int | None, tuple[str, ...]]:
    """Offset of the gain map JPEG: the first MPF entry after the primary that points at
    an SOI, else the JPEG right after the primary's EOI; None if there is neither.

    Returns
    -------
    ``(offset or None, notes)``.

    >>> stream = b"\\xff\\xd8\\xff\\xd9"
    >>> locate_gain_map(stream * 2, [], 4)
    (4, ())
    """
    soi = bytes((0xFF, MARKERS.soi))
    notes: tuple[str, ...] = ()
    mpf = app_payload(segments, MARKERS.app2, SIGNATURES.mpf)
    if mpf is not None:
        for entry in parse_mpf(mpf.payload)[1:]:
            start = mpf.offset + MPF.header_offset + entry.offset
            if data[start:start + 2] == soi:
                return start, notes
        notes = ("the MPF index points at no JPEG; used the image after the primary",)
    return (primary_end if data[primary_end:primary_end + 2] == soi else None), notes
