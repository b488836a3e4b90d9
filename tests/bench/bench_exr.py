"""Benchmark hdr.exr against raw OpenEXR calls and OpenImageIO on a 4K half RGB frame.

Run: ``.venv/bin/python tests/bench/bench_exr.py``. Prints the best of several runs and the
ratio of each path to the raw OpenEXR call doing the same work (same input dtype, same output
dtype, same thread pool); no asserts. Target: hdr.exr <= 1.1x raw OpenEXR.

- write: float32 scene-linear input (what ComfyUI holds) stored as half. Ours converts with
  torch, checks for NaN/Inf and writes atomically (temp file, fsync, link); raw converts with
  numpy and writes in place.
- read: to float32 (ComfyUI's dtype), and with ``dtype=None`` against the raw half array.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import OpenEXR
import OpenImageIO as oiio
from _bench import hdr_frame, race

from comfyui_hdr.hdr.exr import read_exr, write_exr

HEIGHT, WIDTH = 2160, 3840
RUNS = 7
CODECS = {"zip": OpenEXR.ZIP_COMPRESSION, "piz": OpenEXR.PIZ_COMPRESSION,
          "dwaa": OpenEXR.DWAA_COMPRESSION}


def frame() -> np.ndarray:
    return hdr_frame(HEIGHT, WIDTH, low_stops=-5.0)


def raw_write(path: Path, pixels: np.ndarray, compression) -> None:
    OpenEXR.File({"compression": compression, "type": OpenEXR.scanlineimage},
                 {"RGB": pixels.astype(np.float16)}).write(str(path))


def oiio_write(path: Path, pixels: np.ndarray, compression: str) -> None:
    spec = oiio.ImageSpec(WIDTH, HEIGHT, 3, oiio.HALF)
    spec.attribute("compression", compression)
    output = oiio.ImageOutput.create(str(path))
    output.open(str(path), spec)
    output.write_image(pixels)
    output.close()


def oiio_read(path: Path) -> np.ndarray:
    image = oiio.ImageInput.open(str(path))
    pixels = image.read_image(oiio.FLOAT)
    image.close()
    return pixels


def bench_codec(folder: str, name: str, pixels: np.ndarray) -> list[tuple]:
    """(step, raw seconds, ours seconds, OIIO seconds) for one codec."""
    compression = CODECS[name]
    ours_path, raw_path = Path(folder, f"ours_{name}.exr"), Path(folder, f"raw_{name}.exr")
    oiio_path = Path(folder, f"oiio_{name}.exr")
    rows = [("write f32->half", *race(RUNS,
        lambda: raw_write(raw_path, pixels, compression),
        lambda: write_exr(ours_path, pixels, compression=name, overwrite=True),
        lambda: oiio_write(oiio_path, pixels, name)))]
    rows.append(("read -> f32", *race(RUNS,
        lambda: OpenEXR.File(str(raw_path)).channels()["RGB"].pixels.astype(np.float32),
        lambda: read_exr(ours_path),
        lambda: oiio_read(raw_path))))
    rows.append(("read -> half", *race(RUNS,
        lambda: OpenEXR.File(str(raw_path)).channels()["RGB"].pixels,
        lambda: read_exr(ours_path, dtype=None)), float("nan")))
    rows.append(("file MiB", raw_path.stat().st_size / 2**20,
                 ours_path.stat().st_size / 2**20, oiio_path.stat().st_size / 2**20))
    return rows


def main() -> None:
    threads = os.cpu_count() or 1
    OpenEXR.set_global_thread_count(threads)
    oiio.attribute("threads", threads)
    oiio.attribute("exr_threads", threads)
    pixels = frame()
    print(f"{WIDTH}x{HEIGHT} half RGB, best of {RUNS}, {threads} threads; ratio = x / raw")
    print(f"{'codec':6} {'step':15} {'raw':>7} {'ours':>7} {'ratio':>6} {'oiio':>7} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for name in CODECS:
            for step, raw, ours, theirs in bench_codec(folder, name, pixels):
                print(f"{name:6} {step:15} {raw:7.3f} {ours:7.3f} {ours / raw:6.2f} "
                      f"{theirs:7.3f} {theirs / raw:6.2f}")


if __name__ == "__main__":
    main()
