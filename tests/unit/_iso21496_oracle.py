"""An independent reader of the ISO 21496-1 GainMapMetadata() field table (clause 6).

Written from the standard's table, not from our writer or parser, and shared by the gain
map and Ultra HDR tests so both check our bytes against the same oracle.
"""

from __future__ import annotations

from fractions import Fraction


def parse_iso_21496_1(data: bytes) -> dict:
    """Read GainMapMetadata() field by field: u16 minimum_version, u16 writer_version,
    u1 is_multichannel, u1 use_base_colour_space, u6 reserved, u32/u32 base and alternate
    headroom, then per channel s32/u32 min, s32/u32 max, u32/u32 gamma, s32/u32 base
    offset, s32/u32 alternate offset."""
    position = 0

    def take(size, signed=False):
        nonlocal position
        value = int.from_bytes(data[position:position + size], "big", signed=signed)
        position += size
        return value

    fields = {"minimum_version": take(2), "writer_version": take(2)}
    flags = take(1)
    fields["is_multichannel"] = flags >> 7
    fields["use_base_colour_space"] = (flags >> 6) & 1
    fields["reserved"] = flags & 0x3F
    for name in ("base_hdr_headroom", "alternate_hdr_headroom"):
        fields[name] = Fraction(take(4), take(4))
    for channel in range(3 if fields["is_multichannel"] else 1):
        for name, signed in (("gain_map_min", True), ("gain_map_max", True), ("gamma", False),
                             ("base_offset", True), ("alternate_offset", True)):
            fields[f"{name}_{channel}"] = Fraction(take(4, signed), take(4))
    fields["size"] = position
    return fields
