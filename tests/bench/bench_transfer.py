"""Transfer curves on a UHD float32 frame: eager torch, the fused kernel and a memory copy.

Run as ``python tests/bench/bench_transfer.py [--device cuda] [--rounds 3] [--curves ...]``.

For every curve, encode and decode of a 3840x2160x3 float32 frame: the best wall time over
interleaved rounds of the eager path (``COMFYUI_HDR_COMPILE=never``), of the fused kernel
(``always``; its first call, the compile, is timed apart) and of a same-device
``torch.clone`` (the memory-copy floor: read a frame, write a fresh one, as every curve
must). Ratios are to that clone; the target is fused <= 3x. On the CPU a fresh 100 MB frame
costs more in page faults than in copying, so a copy into an existing buffer is printed too.
"ulp" is the largest difference between the fused and the eager result in units in the last
place of the eager value, or of the curve's value at 0 where that is larger (the log toes
cross code 0 by cancellation); inf if NaN or Inf differ. On the CPU, eager's threaded
blocks themselves differ by several ulp where a curve amplifies the last bit of a scalar
remainder (log-gamma decode). The first compile in a process includes importing the
compiler; an empty ``TORCHINDUCTOR_CACHE_DIR`` gives cold-cache compile times.

On the CPU it then times LogC4 encode + decode against OCIO's CPU processor and
colour-science. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _bench import best_times

from comfyui_hdr.hdr import transfer_fused
from comfyui_hdr.hdr.transfer import CURVES, logc4_decode, logc4_encode, pu21_decode, pu21_encode

HEIGHT, WIDTH = 2160, 3840
PU21_NITS_AT_1 = 100.0
"""PU21 takes absolute luminance: the scene-linear frame is shown with 1.0 at 100 nits."""


def _curves() -> dict[str, tuple]:
    """Name -> (encode, decode, scale of the scene-linear frame before encoding)."""
    table = {name: (curve.encode, curve.decode, 1.0) for name, curve in CURVES.items()}
    table["pu21"] = (pu21_encode, pu21_decode, PU21_NITS_AT_1)
    return table


def _in_mode(mode: str, function, *args):
    def call():
        os.environ[transfer_fused.ENVIRONMENT] = mode
        return function(*args)

    return call


def _synchronised(function, device: torch.device):
    if device.type != "cuda":
        return function
    return lambda: (function(), torch.cuda.synchronize(device))


def ulp_difference(new: torch.Tensor, old: torch.Tensor, floor: float) -> float:
    """Largest ``|new - old|`` in float32 ulps of ``max(|old|, floor)``; inf if NaN/Inf
    differ."""
    if not torch.equal(new.isnan(), old.isnan()) or not torch.equal(new.isinf(), old.isinf()):
        return float("inf")
    finite = old.isfinite()
    scale = old.abs().clamp_min(floor).where(finite, 1.0)
    ulp = torch.nextafter(scale, torch.full_like(scale, float("inf"))) - scale
    return float(((new - old).where(finite, 0.0).abs() / ulp).max())


def _time_direction(function, source: torch.Tensor, rounds: int, device) -> dict[str, float]:
    start = time.perf_counter()
    _synchronised(_in_mode("always", function, source), device)()
    first = time.perf_counter() - start
    methods = {
        "eager": _in_mode("never", function, source),
        "fused": _in_mode("always", function, source),
        "clone": source.clone,
    }
    times = best_times({k: _synchronised(m, device) for k, m in methods.items()}, rounds)
    eager, fused = methods["eager"](), methods["fused"]()
    times["compile"] = max(first - times["fused"], 0.0)
    black = float(function(torch.zeros(3, device=source.device)).abs()[0])
    times["ulp"] = ulp_difference(fused, eager, black)
    return times


def curves_table(device: torch.device, rounds: int, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(
        rng.uniform(-0.02, 16.0, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    ).to(device)
    buffer = torch.empty_like(frame)
    copy = best_times({"copy": _synchronised(lambda: buffer.copy_(frame), device)}, rounds)
    print(f"{WIDTH}x{HEIGHT}x3 float32 on {device}: threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; copy into an "
          f"existing buffer {copy['copy']:.4f} s")
    print(f"{'curve':10s} {'dir':4s} {'eager s':>8s} {'fused s':>8s} {'clone s':>8s} "
          f"{'eager/cl':>8s} {'fused/cl':>8s} {'fused/cp':>8s} {'compile':>8s} {'ulp':>4s}")
    table = _curves()
    for name in names:
        encode, decode, scale = table[name]
        linear = frame * scale
        code = _in_mode("never", encode, linear)()
        for direction, function, source in (("enc", encode, linear), ("dec", decode, code)):
            t = _time_direction(function, source, rounds, device)
            print(f"{name:10s} {direction:4s} {t['eager']:8.4f} {t['fused']:8.4f} "
                  f"{t['clone']:8.4f} {t['eager'] / t['clone']:8.2f} "
                  f"{t['fused'] / t['clone']:8.2f} {t['fused'] / copy['copy']:8.2f} "
                  f"{t['compile']:7.1f}s {t['ulp']:4.0f}", flush=True)
    failure = transfer_fused.failure(device.type)
    if failure:
        print(f"fused kernels were unavailable on {device.type}, 'fused' ran eagerly: {failure}")


def _ocio_logc4_processors():
    import PyOpenColorIO as OCIO

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


def logc4_against_peers(rounds: int) -> None:
    import colour
    import colour.models as cm

    rng = np.random.default_rng(0)
    frame = rng.uniform(-0.02, 16.0, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    tensor = torch.from_numpy(frame)
    buffer = np.empty_like(frame)
    ocio_encode, ocio_decode = _ocio_logc4_processors()

    def ocio() -> None:
        np.copyto(buffer, frame)  # OCIO works in place; keep the source frame intact
        ocio_encode.applyRGB(buffer)
        ocio_decode.applyRGB(buffer)

    def round_trip() -> torch.Tensor:
        return logc4_decode(logc4_encode(tensor))

    timings = best_times(
        {
            "ocio CPU processor (lossless)": ocio,
            "ours, eager": _in_mode("never", round_trip),
            "ours, fused": _in_mode("always", round_trip),
            "ours, numpy in/out, fused": _in_mode(
                "always", lambda: logc4_decode(logc4_encode(frame))
            ),
            f"colour-science {colour.__version__}": lambda: cm.log_decoding_ARRILogC4(
                cm.log_encoding_ARRILogC4(frame)
            ),
            "2x torch clone": lambda: (tensor.clone(), tensor.clone()),
            "2x np.copyto (existing buffer)": lambda: (
                np.copyto(buffer, frame),
                np.copyto(buffer, frame),
            ),
        },
        rounds=rounds, warm_up=True,
    )
    restored = _in_mode("always", logc4_decode, logc4_encode(frame))()
    ocio()
    reference = timings["ocio CPU processor (lossless)"]
    print(f"\nLogC4 encode + decode, {WIDTH}x{HEIGHT}x3 float32 "
          f"({frame.nbytes / 2**20:.0f} MiB); OCIO applyRGB and numpy/colour: 1 thread")
    print(f"{'method':34s} {'seconds':>9s} {'x OCIO':>8s}")
    for method, seconds in timings.items():
        print(f"{method:34s} {seconds:9.4f} {seconds / reference:8.3f}")
    difference = np.abs(restored.astype(np.float64) - buffer) / np.maximum(np.abs(frame), 1)
    print(f"max |ours - OCIO| / max(|x|, 1) after the round trip: {difference.max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method")
    parser.add_argument("--curves", nargs="+", choices=list(_curves()), default=list(_curves()))
    args = parser.parse_args()
    device = torch.device(args.device)
    with torch.inference_mode():  # as ComfyUI runs nodes
        curves_table(device, args.rounds, args.curves)
        if device.type == "cpu":
            logc4_against_peers(args.rounds)


if __name__ == "__main__":
    main()
