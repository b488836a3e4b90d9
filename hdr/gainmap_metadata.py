"""Gain map metadata: the ISO 21496-1 record, its binary form and Adobe's ``hdrgm:`` XMP.

A gain map turns a base rendition (usually SDR) into an alternate rendition (usually HDR)
for any display between them. :class:`GainMapMetadata` holds every field ISO 21496-1
defines; :func:`to_iso_box`/:func:`from_iso_box` write and read the standard's binary
``GainMapMetadata()`` syntax, and :func:`to_xmp`/:func:`from_xmp` the Adobe Gain Map
XMP that Ultra HDR JPEGs carry beside it. Pure Python: no torch needed. XMP comes from
files anyone can upload, so it is parsed with ``defusedxml`` with DTDs refused (no entity
expansion, no external references: XMP packets never carry a DTD).
"""

from __future__ import annotations

import math
import struct
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_untrusted_xml

PER_CHANNEL_FIELDS = ("gain_map_min", "gain_map_max", "gamma", "base_offset", "alternate_offset")


@dataclass(frozen=True)
class _IsoLayout:
    """ISO/TS 21496-1 ``GainMapMetadata()`` syntax (also libultrahdr
    ``gainmapmetadata.cpp``): big-endian fractions, int32 numerators where the value may be
    negative, uint32 numerators otherwise, uint32 denominators."""

    is_multichannel: int = 1 << 7
    use_base_colour_space: int = 1 << 6
    # Drafts written by libultrahdr 1.0-1.3 and libavif 1.0: bit 2 flagged an HDR base,
    # bit 3 a single denominator shared by every fraction (the compact layout).
    legacy_backward_direction: int = 1 << 2
    legacy_common_denominator: int = 1 << 3
    int32: tuple[int, int] = (-(2**31), 2**31 - 1)
    uint32: tuple[int, int] = (0, 2**32 - 1)
    supported_minimum_version: int = 0


ISO = _IsoLayout()

# (ISO 21496-1 field, signed numerator) per channel, in the order the syntax stores them.
_ISO_CHANNEL_FIELDS = (("gain_map_min", True), ("gain_map_max", True), ("gamma", False),
                       ("base_offset", True), ("alternate_offset", True))


@dataclass(frozen=True)
class _HdrgmXmp:
    """Adobe Gain Map specification 1.0, section "XMP metadata" (namespace and names)."""

    namespace: str = "http://ns.adobe.com/hdr-gain-map/1.0/"
    rdf: str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    xmpmeta: str = "adobe:ns:meta/"
    version: str = "1.0"
    # XMP name -> GainMapMetadata field, for the per-channel values.
    per_channel: tuple = (("GainMapMin", "gain_map_min"), ("GainMapMax", "gain_map_max"),
                          ("Gamma", "gamma"), ("OffsetSDR", "base_offset"),
                          ("OffsetHDR", "alternate_offset"))
    # The spec's defaults for optional entries; GainMapMax and HDRCapacityMax are required.
    defaults: tuple = (("GainMapMin", "0"), ("Gamma", "1"), ("OffsetSDR", "0.015625"),
                       ("OffsetHDR", "0.015625"), ("HDRCapacityMin", "0"),
                       ("BaseRenditionIsHDR", "False"))


HDRGM = _HdrgmXmp()


def _per_channel(name: str, value) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    if len(values) not in (1, 3):
        raise ValueError(f"{name} must be a number or 3 per-channel numbers (R, G, B), "
                         f"got {len(values)} values")
    values = tuple(float(item) for item in values)
    if not all(math.isfinite(item) for item in values):
        raise ValueError(f"{name} must be finite, got {values}")
    return values


@dataclass(frozen=True)
class GainMapMetadata:
    """ISO 21496-1 gain map metadata: how a gain map turns the base into the alternate.

    Per-channel fields take one number or three (R, G, B); one number with another field's
    three is repeated. Every log2 field is in stops.

    Parameters
    ----------
    gain_map_max
        log2 of the largest boost the map encodes (code value 1.0), per channel.
    alternate_hdr_headroom
        log2 headroom (peak over diffuse white) of the alternate rendition, e.g. the HDR one.
    gain_map_min
        log2 of the smallest boost (code value 0.0), per channel; at most ``gain_map_max``.
    gamma
        Gamma the normalised map was encoded with (``code = normalised ** gamma``), > 0.
    base_offset, alternate_offset
        The offsets k_base and k_alternate added before the log ratio, per channel
        (Adobe's OffsetSDR / OffsetHDR; 1/64 by default).
    base_hdr_headroom
        log2 headroom of the base rendition (0.0 for an SDR base).
    use_base_colour_space
        True when the gain map maths is done in the base image's colour space.
    minimum_version, writer_version
        ISO 21496-1 syntax versions (0 for this edition).

    References
    ----------
    ISO/TS 21496-1 (metadata semantics and syntax); Adobe Gain Map
    specification 1.0, "Gain map metadata".

    >>> GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0).channels
    1
    """

    gain_map_max: tuple[float, ...]
    alternate_hdr_headroom: float
    gain_map_min: tuple[float, ...] = (0.0,)
    gamma: tuple[float, ...] = (1.0,)
    base_offset: tuple[float, ...] = (1 / 64,)
    alternate_offset: tuple[float, ...] = (1 / 64,)
    base_hdr_headroom: float = 0.0
    use_base_colour_space: bool = True
    minimum_version: int = 0
    writer_version: int = 0

    def __post_init__(self):
        values = {name: _per_channel(name, getattr(self, name)) for name in PER_CHANNEL_FIELDS}
        channels = max(len(item) for item in values.values())
        for name, item in values.items():
            object.__setattr__(self, name, item * (channels // len(item)))
        for name in ("base_hdr_headroom", "alternate_hdr_headroom"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite log2 headroom >= 0 (ISO 21496-1 "
                                 f"stores it unsigned), got {value}")
            object.__setattr__(self, name, value)
        for low, high in zip(self.gain_map_min, self.gain_map_max, strict=True):
            if low > high:
                raise ValueError(f"gain_map_min {self.gain_map_min} exceeds gain_map_max "
                                 f"{self.gain_map_max}; swap them or lower gain_map_min")
        if any(value <= 0 for value in self.gamma):
            raise ValueError(f"gamma must be > 0 for every channel, got {self.gamma}")
        for name in ("minimum_version", "writer_version"):
            version = getattr(self, name)
            if not isinstance(version, int) or not 0 <= version <= 0xFFFF:
                raise ValueError(f"{name} must be an integer in 0..65535, got {version!r}")
        object.__setattr__(self, "use_base_colour_space", bool(self.use_base_colour_space))

    @property
    def channels(self) -> int:
        """1 when one set of values serves R, G and B, 3 for per-channel values."""
        return len(self.gain_map_max)

    @property
    def base_rendition_is_hdr(self) -> bool:
        """True when the base has more headroom than the alternate (the map darkens)."""
        return self.base_hdr_headroom > self.alternate_hdr_headroom


def _fraction(value: float, name: str, signed: bool) -> tuple[int, int]:
    """The closest convergent n/d of ``value`` whose n and d fit the ISO 21496-1 field."""
    low, high = ISO.int32 if signed else ISO.uint32
    remainder = Fraction(value)
    previous_n, n, previous_d, d = 0, 1, 1, 0
    best = None
    while True:
        whole = math.floor(remainder)
        previous_n, n = n, whole * n + previous_n
        previous_d, d = d, whole * d + previous_d
        if not (low <= n <= high and d <= ISO.uint32[1]):
            break
        best = (n, d)
        remainder -= whole
        if remainder == 0:
            break
        remainder = 1 / remainder
    if best is None:
        kind = "int32" if signed else "uint32"
        raise ValueError(f"{name}={value} does not fit an ISO 21496-1 {kind} fraction; "
                         f"keep it within {low}..{high}")
    return best


def to_iso_box(metadata: GainMapMetadata) -> bytes:
    """Serialise ``metadata`` as the ISO 21496-1 binary ``GainMapMetadata()`` syntax.

    Every value is written as the closest fraction whose numerator and denominator fit
    32 bits (exact for dyadic values such as 1/64). This is the payload an Ultra HDR JPEG
    stores in APP2 after ``urn:iso:std:iso:ts:21496:-1\\0``; a HEIF/AVIF ``tmap`` item puts
    one version byte (0) before it.

    Parameters
    ----------
    metadata
        The metadata to write.

    Returns
    -------
    61 bytes for single-channel metadata, 141 for per-channel.

    References
    ----------
    ISO/TS 21496-1 (``GainMapMetadata()`` syntax); libultrahdr ``gainmapmetadata.cpp``.

    >>> to_iso_box(GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0))[:9].hex()
    '000000004000000000'
    """
    flags = ISO.is_multichannel if metadata.channels == 3 else 0
    flags |= ISO.use_base_colour_space if metadata.use_base_colour_space else 0
    data = bytearray(struct.pack(">HHB", metadata.minimum_version, metadata.writer_version,
                                 flags))
    for name in ("base_hdr_headroom", "alternate_hdr_headroom"):
        data += struct.pack(">II", *_fraction(getattr(metadata, name), name, signed=False))
    for channel in range(metadata.channels):
        for name, signed in _ISO_CHANNEL_FIELDS:
            value = getattr(metadata, name)[channel]
            data += struct.pack(">iI" if signed else ">II", *_fraction(value, name, signed))
    return bytes(data)


class _Reader:
    """Big-endian fields read in order from ``data``, with a clear error on truncation."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.position + size > len(self.data):
            raise ValueError(f"data is truncated: ISO 21496-1 metadata needs more than "
                             f"{len(self.data)} bytes; pass the whole payload")
        values = struct.unpack_from(fmt, self.data, self.position)
        self.position += size
        return values


def _ratio(numerator: int, denominator: int, name: str) -> float:
    if denominator == 0:
        raise ValueError(f"data has a zero denominator for {name}; the metadata is corrupt")
    return numerator / denominator


def from_iso_box(data: bytes) -> GainMapMetadata:
    """Parse ISO 21496-1 binary ``GainMapMetadata()`` into :class:`GainMapMetadata`.

    Also reads the compact common-denominator layout of the libultrahdr 1.0-1.3 drafts.
    Bytes after the last field (added by later writer versions) are ignored.

    Parameters
    ----------
    data
        The payload (for JPEG, what follows the URN in APP2; for ``tmap``, what follows
        its version byte).

    Returns
    -------
    The metadata.

    References
    ----------
    ISO/TS 21496-1 (``GainMapMetadata()`` syntax); libultrahdr ``gainmapmetadata.cpp``
    (legacy layout).

    >>> box = to_iso_box(GainMapMetadata(gain_map_max=2.0, alternate_hdr_headroom=2.0))
    >>> from_iso_box(box).gain_map_max
    (2.0,)
    """
    reader = _Reader(bytes(data))
    minimum_version, writer_version, flags = reader.read(">HHB")
    if minimum_version > ISO.supported_minimum_version:
        raise ValueError(f"data needs an ISO 21496-1 reader of version {minimum_version}; "
                         f"this one reads version {ISO.supported_minimum_version}")
    if flags & ISO.legacy_backward_direction:
        raise ValueError("data sets the draft 'backward direction' flag (HDR base), which "
                         "ISO 21496-1 replaced by the headroom order; re-encode the file")
    channels = 3 if flags & ISO.is_multichannel else 1
    fields: dict[str, list[float]] = {name: [] for name, _ in _ISO_CHANNEL_FIELDS}
    if flags & ISO.legacy_common_denominator:
        denominator, base_n, alternate_n = reader.read(">III")
        headrooms = [_ratio(base_n, denominator, "base_hdr_headroom"),
                     _ratio(alternate_n, denominator, "alternate_hdr_headroom")]
        for _ in range(channels):
            numerators = reader.read(">iiIii")
            for (name, _), numerator in zip(_ISO_CHANNEL_FIELDS, numerators, strict=True):
                fields[name].append(_ratio(numerator, denominator, name))
    else:
        headrooms = [_ratio(*reader.read(">II"), name)
                     for name in ("base_hdr_headroom", "alternate_hdr_headroom")]
        for _ in range(channels):
            for name, signed in _ISO_CHANNEL_FIELDS:
                fields[name].append(_ratio(*reader.read(">iI" if signed else ">II"), name))
    return GainMapMetadata(
        base_hdr_headroom=headrooms[0], alternate_hdr_headroom=headrooms[1],
        use_base_colour_space=bool(flags & ISO.use_base_colour_space),
        minimum_version=minimum_version, writer_version=writer_version,
        **{name: tuple(values) for name, values in fields.items()})


def to_xmp(metadata: GainMapMetadata) -> str:
    """Serialise ``metadata`` as an Adobe Gain Map (``hdrgm:``) XMP packet.

    Single-channel values are written as attributes, per-channel ones as ``rdf:Seq``
    lists, every number in Python's shortest round-trip form. XMP has no field for
    ``use_base_colour_space`` or the ISO versions; readers assume True and 0.

    Parameters
    ----------
    metadata
        Metadata with an SDR base (``base_rendition_is_hdr`` False).

    Returns
    -------
    The ``x:xmpmeta`` document.

    References
    ----------
    Adobe Gain Map specification 1.0, "XMP metadata"; Android Ultra HDR image format 1.1.

    >>> 'hdrgm:GainMapMax="2.0"' in to_xmp(GainMapMetadata(2.0, alternate_hdr_headroom=2.0))
    True
    """
    if metadata.base_rendition_is_hdr:
        raise ValueError("metadata has an HDR base (base_hdr_headroom > alternate_hdr_headroom)"
                         "; the hdrgm XMP writer supports an SDR base only, use to_iso_box")
    attributes = [f'hdrgm:Version="{HDRGM.version}"']
    elements = []
    for xmp_name, field in HDRGM.per_channel:
        values = getattr(metadata, field)
        if metadata.channels == 1:
            attributes.append(f'hdrgm:{xmp_name}="{values[0]!r}"')
        else:
            items = "".join(f"<rdf:li>{value!r}</rdf:li>" for value in values)
            elements.append(f"<hdrgm:{xmp_name}><rdf:Seq>{items}</rdf:Seq></hdrgm:{xmp_name}>")
    attributes += [f'hdrgm:HDRCapacityMin="{metadata.base_hdr_headroom!r}"',
                   f'hdrgm:HDRCapacityMax="{metadata.alternate_hdr_headroom!r}"',
                   'hdrgm:BaseRenditionIsHDR="False"']
    description = (f'<rdf:Description rdf:about="" xmlns:hdrgm="{HDRGM.namespace}" '
                   + " ".join(attributes) + ">" + "".join(elements) + "</rdf:Description>")
    return (f'<x:xmpmeta xmlns:x="{HDRGM.xmpmeta}"><rdf:RDF xmlns:rdf="{HDRGM.rdf}">'
            f"{description}</rdf:RDF></x:xmpmeta>")


def _hdrgm_description(root: ElementTree.Element) -> ElementTree.Element:
    prefix = f"{{{HDRGM.namespace}}}"
    for description in root.iter(f"{{{HDRGM.rdf}}}Description"):
        if any(key.startswith(prefix) for key in description.attrib) or any(
                child.tag.startswith(prefix) for child in description):
            return description
    raise ValueError(f"xmp has no rdf:Description with hdrgm ({HDRGM.namespace}) properties; "
                     "pass the gain map image's XMP, not the primary image's")


def _hdrgm_values(description: ElementTree.Element, name: str) -> Sequence[str] | None:
    key = f"{{{HDRGM.namespace}}}{name}"
    if key in description.attrib:
        return (description.attrib[key],)
    element = description.find(key)
    if element is None:
        return None
    items = [item.text or "" for item in element.iter(f"{{{HDRGM.rdf}}}li")]
    return items if items else (element.text or "",)


def from_xmp(xmp: str) -> GainMapMetadata:
    """Parse Adobe Gain Map (``hdrgm:``) XMP into :class:`GainMapMetadata`.

    Missing optional entries take the spec's defaults (GainMapMin 0, Gamma 1, offsets
    1/64, HDRCapacityMin 0); Version, GainMapMax and HDRCapacityMax are required.

    Parameters
    ----------
    xmp
        An XMP packet or ``x:xmpmeta`` document.

    Returns
    -------
    The metadata (``use_base_colour_space`` True, ISO versions 0).

    References
    ----------
    Adobe Gain Map specification 1.0, "XMP metadata".

    >>> from_xmp(to_xmp(GainMapMetadata(2.0, alternate_hdr_headroom=2.0))).gain_map_max
    (2.0,)
    """
    try:
        root = parse_untrusted_xml(xmp, forbid_dtd=True)
    except ElementTree.ParseError as error:
        raise ValueError(f"xmp is not well-formed XML ({error}); pass the XMP text") from None
    except DefusedXmlException as error:
        raise ValueError(f"xmp holds a DTD or entity declaration ({error!r}), which XMP never "
                         "needs; refused so no entity is expanded or fetched") from None
    description = _hdrgm_description(root)
    defaults = dict(HDRGM.defaults)

    def values(name: str) -> Sequence[str]:
        found = _hdrgm_values(description, name)
        if found is None and name not in defaults:
            raise ValueError(f"xmp lacks the required hdrgm:{name}")
        return found if found is not None else (defaults[name],)

    values("Version")
    if values("BaseRenditionIsHDR")[0].strip().lower() == "true":
        raise ValueError("xmp has BaseRenditionIsHDR=True; HDR-base gain maps are read from "
                         "the ISO 21496-1 box (from_iso_box)")
    texts = {field: values(xmp_name) for xmp_name, field in HDRGM.per_channel}
    headroom_texts = [values(name)[0] for name in ("HDRCapacityMin", "HDRCapacityMax")]
    try:
        per_channel = {field: tuple(float(item) for item in items)
                       for field, items in texts.items()}
        headrooms = [float(text) for text in headroom_texts]
    except ValueError as error:
        raise ValueError(f"xmp has a non-numeric hdrgm value ({error})") from error
    return GainMapMetadata(base_hdr_headroom=headrooms[0], alternate_hdr_headroom=headrooms[1],
                           **per_channel)
