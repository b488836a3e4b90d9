"""Benchmark the Save EXR node against raw OpenEXR and OpenImageIO on a 4K half ZIP frame.

Run: ``.venv/bin/python tests/bench/bench_save_node.py``. ComfyUI is imported in process
(its ``folder_paths`` points at a temp folder); the node runs as ComfyUI runs it, under
``torch.inference_mode()``, with the HDR viewer's proxy on (as shipped) and off (its
``hdr_view`` replaced by nothing), overwriting one fixed frame. Prints the best wall time
of several interleaved runs, the best CPU time of the process (all threads; steadier than
wall time on a shared machine) and each one's ratio to the raw OpenEXR write of the same
float32 pixels; no asserts. Target (issue 15): node with the viewer on <= 1.1x raw.

- raw f32: what a script does with OpenEXR alone: numpy float32 -> half, then write.
- raw half: the write alone, pixels already half (the floor nothing can beat).
- oiio: OpenImageIO writing the float32 pixels as half.
- node: the node's whole call: checks, torch conversion, atomic write (temp file, fsync,
  link), HDR statistics and, when on, the viewer's float proxy and SDR picture.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenEXR
import OpenImageIO as oiio
import torch
from _bench import hdr_frame

from comfyui_hdr.harness.inprocess import use_comfyui

HEIGHT, WIDTH = 2160, 3840
ROUNDS = 5


def raw_write(path: Path, pixels: np.ndarray) -> None:
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {"RGB": pixels.astype(np.float16)}).write(str(path))


def oiio_write(path: Path, pixels: np.ndarray) -> None:
    spec = oiio.ImageSpec(WIDTH, HEIGHT, 3, oiio.HALF)
    spec.attribute("compression", "zip")
    output = oiio.ImageOutput.create(str(path))
    output.open(str(path), spec)
    output.write_image(pixels)
    output.close()


def best_wall_and_cpu(methods: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """Best (wall, process CPU) seconds of each method over interleaved rounds, after one
    warm-up call each."""
    for method in methods.values():
        method()
    best = {name: (float("inf"), float("inf")) for name in methods}
    for _ in range(rounds):
        for name, method in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            method()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def main() -> None:
    use_comfyui()
    import folder_paths

    from comfyui_hdr.nodes import exr_io

    threads = os.cpu_count() or 1
    OpenEXR.set_global_thread_count(threads)
    oiio.attribute("threads", threads)
    oiio.attribute("exr_threads", threads)
    pixels = hdr_frame(HEIGHT, WIDTH)
    half = pixels.astype(np.float16)
    images = torch.from_numpy(pixels)[None]
    with tempfile.TemporaryDirectory() as folder:
        folder_paths.set_output_directory(folder)
        folder_paths.set_temp_directory(folder)
        node = exr_io.HDRSaveEXR()
        with_viewer = exr_io.hdr_view

        def save(prefix: str, viewer: bool) -> None:
            exr_io.hdr_view = with_viewer if viewer else (lambda *_, **__: {})
            with torch.inference_mode():
                node.save(images, prefix, "half", "zip", "Linear Rec.709 (sRGB)", True,
                          start_frame=1)

        times = best_wall_and_cpu({
            "raw f32": lambda: raw_write(Path(folder, "raw.exr"), pixels),
            "raw half": lambda: OpenEXR.File(
                {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                {"RGB": half}).write(str(Path(folder, "raw_half.exr"))),
            "oiio": lambda: oiio_write(Path(folder, "oiio.exr"), pixels),
            "node, viewer on": lambda: save("on", True),
            "node, viewer off": lambda: save("off", False),
        }, ROUNDS)
        exr_io.hdr_view = with_viewer
    print(f"{WIDTH}x{HEIGHT} float32 -> half ZIP, best of {ROUNDS}, {threads} threads; "
          "ratio = x / raw f32")
    print(f"{'':18} {'wall s':>7} {'ratio':>6} {'cpu s':>7} {'ratio':>6}")
    wall_raw, cpu_raw = times["raw f32"]
    for name, (wall, cpu) in times.items():
        print(f"{name:18} {wall:7.3f} {wall / wall_raw:6.2f} {cpu:7.3f} {cpu / cpu_raw:6.2f}")


if __name__ == "__main__":
    main()
