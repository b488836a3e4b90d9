"""Fuzzed Radiance RGBE reader (see ``_fuzz.py`` for what passes).

Seeds, written by the pack unless said: adaptive run-length scanlines (width 20) with an
EXPOSURE line; flat scanlines (width 5); a column-major ``+X 6 -Y 4`` picture with
COLORCORR and PRIMARIES lines, and one in the old run-length scheme (``1 1 1 n`` repeats),
both assembled here byte by byte. ``-s`` prints the counts and time.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
from _fuzz import Field, Seed, fuzz, text_fields

from comfyui_hdr.hdr import radiance

FUZZ_SEED = 1991  # Ward, "Real Pixels"
INPUTS = 100_000
NAME = "upload.hdr"
HEADROOM = 64 * 2**20
"""Allocation bound: the seeds are under 1 KiB and decode to a few KiB."""
TOKENS = (b"\n\n", b"#?RADIANCE\n", b"FORMAT=32-bit_rle_xyze\n", b"EXPOSURE=", b"-Y ", b"+X ",
          b"\x02\x02", b"\x01\x01\x01", b"\x80", b"\xff")


def _scene(height: int, width: int) -> np.ndarray:
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    stops = 0.18 * 2.0 ** (12 * x) * (1 + y)
    return np.stack([stops, stops * 0.8, stops * 0.5 + y], -1).astype(np.float32)


def _written(scene: np.ndarray, **options) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return radiance.write_hdr(Path(folder) / "seed.hdr", scene, **options).read_bytes()


def _seeds() -> list[Seed]:
    files = [_written(_scene(6, 20), exposure=2.0), _written(_scene(3, 5))]
    columns = radiance.encode_rgbe(_scene(6, 4))  # 6 columns of 4 pixels, stored as rows
    files.append(b"#?RADIANCE\nCOLORCORR=1 0.9 1.1\nPRIMARIES=0.64 0.33 0.3 0.6 0.15 0.06 "
                 b"0.3127 0.329\nFORMAT=32-bit_rle_rgbe\n\n+X 6 -Y 4\n" + columns.tobytes())
    first = radiance.encode_rgbe(_scene(1, 1))[0, 0].tobytes()
    old = first + bytes((1, 1, 1, 40)) + bytes((1, 1, 1, 1))  # 1 + 40 + (1 << 8) pixels
    files.append(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 297\n" + old * 2)
    seeds = []
    for data in files:
        header_end = data.index(b"\n\n") + 2
        numbers = text_fields(data[:header_end + 24], rb"([-+]?[0-9][0-9.e+-]*)")
        # The width bytes of each adaptive scanline's marker (2, 2, width high, width low).
        widths = tuple(Field(header_end + match.start() + 2, 2)
                       for match in re.finditer(rb"\x02\x02", data[header_end:]))
        seeds.append(Seed(data, numbers + widths))
    return seeds


def test_fuzz_radiance_reader():
    report = fuzz("Radiance reader", lambda data: radiance.decode_hdr(data, name=NAME),
                  _seeds(), INPUTS, seed=FUZZ_SEED, tokens=TOKENS, name=NAME,
                  headroom_bytes=HEADROOM)
    print(report.summary(), report.refusal_text(), sep="\n")
    assert not report.failures, report.failure_text()
    assert report.accepted > 0 and len(report.refusals) > 1, report.summary()
