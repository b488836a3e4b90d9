"""Benchmark the HDR VAE's tiled decode and a DiT training step's precision, as ratios.

Run: ``.venv/bin/python tests/bench/bench_hdr_vae.py``. No asserts; prints one run. On a
machine shared with other jobs prefix ``OMP_NUM_THREADS=1``: spinning OpenMP threads
slow the many small kernels of the tiled decode far more than the untiled one (under
load 4 with two threads the 1024^2 time ratio read 3.7x, with one thread 1.3x).

1. Tiled vs untiled decode (both heads) of a small-but-not-tiny HDR VAE (block widths
   32/64/128/128, one layer per block, 8x compression, mid-block attention) at 1024^2 and
   2048^2 output, tiles of 64 latent pixels (512 output pixels). Each case runs in its own
   subprocess; peak memory is the process's maximum resident set size
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which sees torch's CPU allocations,
   unlike ``tracemalloc``) after the decode minus the same figure just before it (model,
   latent and a warm-up decode at 64^2 already resident). Time is the best of two decodes.
   Issue 6's goals: peak memory <= 1/4 at 2048^2, time <= 1.3x.
2. One training step (forward, backward, AdamW) of a small widened Flux transformer
   (32-channel latent at 64x64, 1024 image + 32 text tokens, width 256, 2 double and 4
   single blocks) in float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
   best of several steps after a warm-up. The HDR VAE itself stays float32.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

VAE_CONFIG = dict(block_out_channels=(32, 64, 128, 128), layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4)
SIZES = (1024, 2048)
TILE_LATENT = 64
DIT_STEPS = 4


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def decode_case(size: int, tiled: bool) -> dict:
    """Run in a subprocess: one decode's peak memory above the resident baseline, and time."""
    from comfyui_hdr.hdr.models.hdr_vae import HDRAutoencoder

    torch.manual_seed(0)
    model = HDRAutoencoder(**VAE_CONFIG).eval()
    factor = model.spatial_compression_ratio
    latent = torch.randn(1, 32, size // factor, size // factor,
                         generator=torch.Generator().manual_seed(1))

    def decode(z):
        with torch.no_grad():
            return model.decode_tiled(z, TILE_LATENT) if tiled else model.decode(z)

    decode(latent[..., :64 // factor, :64 // factor])
    baseline = _max_rss_bytes()
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        decoded = decode(latent)
        seconds.append(time.perf_counter() - start)
        del decoded
    return {"peak_bytes": _max_rss_bytes() - baseline, "seconds": min(seconds)}


def _in_subprocess(size: int, tiled: bool) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from bench_hdr_vae import decode_case; "
            f"print(json.dumps(decode_case({size}, {tiled})))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_tiled_decode() -> None:
    print(f"HDR VAE decode, both heads, blocks {VAE_CONFIG['block_out_channels']}, "
          f"tiles {TILE_LATENT} latent px; peak = max RSS growth during the decode")
    for size in SIZES:
        whole, tiles = _in_subprocess(size, False), _in_subprocess(size, True)
        print(f"{size:5d}^2  untiled {whole['peak_bytes'] / 2**20:8.0f} MiB "
              f"{whole['seconds']:7.2f} s | tiled {tiles['peak_bytes'] / 2**20:8.0f} MiB "
              f"{tiles['seconds']:7.2f} s | memory ratio "
              f"{tiles['peak_bytes'] / whole['peak_bytes']:.3f}, time ratio "
              f"{tiles['seconds'] / whole['seconds']:.2f}x")


def _tiny_widened_flux():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(patch_size=1, in_channels=128, out_channels=128, num_layers=2,
                                  num_single_layers=4, attention_head_dim=64,
                                  num_attention_heads=4, joint_attention_dim=256,
                                  pooled_projection_dim=128, axes_dims_rope=(16, 24, 24))


def _dit_step_seconds(autocast: bool) -> float:
    model = _tiny_widened_flux().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(2)
    image_tokens, text_tokens = 32 * 32, 32
    inputs = dict(hidden_states=torch.randn(1, image_tokens, 128, generator=generator),
                  encoder_hidden_states=torch.randn(1, text_tokens, 256, generator=generator),
                  pooled_projections=torch.randn(1, 128, generator=generator),
                  timestep=torch.tensor([0.5]), img_ids=torch.zeros(image_tokens, 3),
                  txt_ids=torch.zeros(text_tokens, 3))
    target = torch.randn(1, image_tokens, 128, generator=generator)
    best = float("inf")
    for step in range(DIT_STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            prediction = model(**inputs).sample
        loss = torch.nn.functional.mse_loss(prediction.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:
            best = min(best, time.perf_counter() - start)
    return best


def bench_dit_precision() -> None:
    fp32, bf16 = _dit_step_seconds(False), _dit_step_seconds(True)
    print(f"DiT training step (widened Flux, width 256, 1056 tokens): fp32 {fp32 * 1e3:.0f} ms, "
          f"bf16 autocast {bf16 * 1e3:.0f} ms, bf16/fp32 time ratio {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    bench_tiled_decode()
    bench_dit_precision()
