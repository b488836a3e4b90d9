"""LogC4 encode + decode of a UHD float32 frame: ours against colour-science and OCIO.

Run as ``python tests/bench/bench_transfer.py``. Prints each method's best wall time over
interleaved rounds and its ratio to OCIO's CPU processor in the same run; it asserts
nothing about time.
"""

from __future__ import annotations

import os

import colour
import colour.models as cm
import numpy as np
import PyOpenColorIO as OCIO
import torch
from _bench import best_times

from comfyui_hdr.hdr.transfer import logc4_decode, logc4_encode

HEIGHT, WIDTH = 2160, 3840


def _ocio_logc4_processors():
    config = OCIO.Config.CreateFromFile("ocio://studio-config-latest")
    to_reference = config.getColorSpace("ARRI LogC4").getTransform(
        OCIO.COLORSPACE_DIR_TO_REFERENCE
    )
    curve = next(
        step
        for step in config.getProcessor(to_reference).createGroupTransform()
        if isinstance(step, OCIO.LogCameraTransform)
    )
    flags = OCIO.OptimizationFlags.OPTIMIZATION_LOSSLESS
    encode = config.getProcessor(curve, OCIO.TRANSFORM_DIR_INVERSE)
    decode = config.getProcessor(curve, OCIO.TRANSFORM_DIR_FORWARD)
    return encode.getOptimizedCPUProcessor(flags), decode.getOptimizedCPUProcessor(flags)


def main() -> None:
    rng = np.random.default_rng(0)
    frame = rng.uniform(-0.02, 16.0, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    tensor = torch.from_numpy(frame)
    buffer = np.empty_like(frame)
    ocio_encode, ocio_decode = _ocio_logc4_processors()

    def ocio() -> None:
        np.copyto(buffer, frame)  # OCIO works in place; keep the source frame intact
        ocio_encode.applyRGB(buffer)
        ocio_decode.applyRGB(buffer)

    def torch_single_thread() -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            logc4_decode(logc4_encode(tensor))
        finally:
            torch.set_num_threads(threads)

    timings = best_times(
        {
            "ocio CPU processor (lossless)": ocio,
            "ours, torch": lambda: logc4_decode(logc4_encode(tensor)),
            "ours, torch, 1 thread": torch_single_thread,
            "ours, numpy in/out": lambda: logc4_decode(logc4_encode(frame)),
            f"colour-science {colour.__version__}": lambda: cm.log_decoding_ARRILogC4(
                cm.log_encoding_ARRILogC4(frame)
            ),
            "memcpy floor (2x np.copyto)": lambda: (
                np.copyto(buffer, frame),
                np.copyto(buffer, frame),
            ),
        },
        rounds=5, warm_up=True,
    )
    restored = logc4_decode(logc4_encode(frame))
    ocio()
    reference = timings["ocio CPU processor (lossless)"]
    print(f"LogC4 encode + decode, {WIDTH}x{HEIGHT}x3 float32 ({frame.nbytes / 2**20:.0f} MiB)")
    print(
        f"threads: ours {torch.get_num_threads()} (torch.get_num_threads), OCIO applyRGB 1, "
        f"numpy/colour 1; CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'method':34s} {'seconds':>9s} {'x OCIO':>8s}")
    for method, seconds in timings.items():
        print(f"{method:34s} {seconds:9.4f} {seconds / reference:8.3f}")
    difference = np.abs(restored.astype(np.float64) - buffer) / np.maximum(np.abs(frame), 1)
    print(f"max |ours - OCIO| / max(|x|, 1) after the round trip: {difference.max():.3g}")


if __name__ == "__main__":
    main()
