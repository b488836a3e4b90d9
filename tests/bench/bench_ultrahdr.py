"""Benchmark hdr.ultrahdr against libultrahdr (through OpenImageIO) on a 4K HDR frame.

Run: ``.venv/bin/python tests/bench/bench_ultrahdr.py``. Prints the best of several runs
and the ratio ours / libultrahdr for the same work; no asserts. Target: <= 1.5x.

- extract + encode: float32 scene-linear Rec.709 (what ComfyUI holds) to an Ultra HDR
  file on disk. Ours tone maps (Reinhard max-RGB), encodes the base, extracts an 8-bit
  map against the decoded base and writes atomically; OIIO hands the frame as half to
  libultrahdr, which tone maps, extracts and encodes (its defaults).
- decode: an Ultra HDR file to float32 linear HDR at full display headroom, for our file
  and for libultrahdr's (each decoder reads both).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from _bench import hdr_frame, race

from comfyui_hdr.hdr.ultrahdr import read_ultrahdr, write_ultrahdr

HEIGHT, WIDTH = 2160, 3840
RUNS = 3


def frame() -> np.ndarray:
    return hdr_frame(HEIGHT, WIDTH, low_stops=-6.0)


def oiio_write(path: Path, pixels: np.ndarray) -> None:
    spec = oiio.ImageSpec(WIDTH, HEIGHT, 3, oiio.HALF)
    spec.attribute("oiio:ColorSpace", "lin_rec709_scene")
    spec.attribute("jpeg:ultrahdr", 1)
    output = oiio.ImageOutput.create(str(path))
    output.open(str(path), spec)
    output.write_image(pixels)
    output.close()


def oiio_read(path: Path) -> np.ndarray:
    image = oiio.ImageInput.open(str(path))
    pixels = image.read_image(oiio.FLOAT)[..., :3]
    image.close()
    return pixels


def main() -> None:
    pixels = frame()
    with tempfile.TemporaryDirectory() as folder:
        ours_path, oiio_path = Path(folder, "ours.jpg"), Path(folder, "oiio.jpg")
        rows = [("extract + encode", *race(RUNS,
            lambda: write_ultrahdr(ours_path, pixels, overwrite=True),
            lambda: oiio_write(oiio_path, pixels)))]
        rows += [(f"decode {name} file", *race(RUNS, lambda path=path: read_ultrahdr(path).hdr,
                                               lambda path=path: oiio_read(path)))
                 for name, path in (("our", ours_path), ("libultrahdr's", oiio_path))]
        sizes = ours_path.stat().st_size, oiio_path.stat().st_size
    print(f"4K ({WIDTH}x{HEIGHT}) Ultra HDR, best of {RUNS}; file sizes: ours "
          f"{sizes[0] / 1e6:.2f} MB, libultrahdr {sizes[1] / 1e6:.2f} MB")
    print(f"{'step':24s} {'ours s':>8s} {'libuhdr s':>10s} {'ours/libuhdr':>13s}")
    for step, ours, theirs in rows:
        print(f"{step:24s} {ours:8.3f} {theirs:10.3f} {ours / theirs:12.2f}x")


if __name__ == "__main__":
    main()
