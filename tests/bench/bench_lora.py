"""Benchmark ``train-lora``: steps with and without the latent cache, and the data loader.

Run: ``.venv/bin/python tests/bench/bench_lora.py``. Writes an 8-frame 256x256 float EXR
sequence of procedural scenes, then trains the tiny Flux of the unit tests (0.98 M
parameters, rank 4) in reference mode (default degradations, 128 crops, batch 2) with an
8x VAE of widths 32-128 (1.6 M parameters; a real one is 50-80x larger, as is a real
transformer, 12 G for Flux):

1. without the cache: every step decodes EXRs, degrades, log-encodes and VAE-encodes;
2. with the cache, cold (fills it), then warm (reads latents only): the warm run's step
   time against (1) is the speed-up the cache buys (goal >= 1.5x; DiffHDR reports
   35-45 % on real models, where the transformer step dominates);
3. the data loader alone (EXR decode + crop + degradations, one process) in items/s
   against the items/s the warm-cache trainer consumes (above 1, one loader process
   keeps up with the tiny trainer; ``--num-workers`` scales it by about the core count),
   and its share of an uncached step.

Runs (1), (2 warm) and (3) twice, interleaved, keeping the best of each (other processes
on a shared machine slow single runs down); prints seconds and ratios; no asserts.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel

from comfyui_hdr.hdr.degrade import DegradationConfig
from comfyui_hdr.hdr.exr import write_exr
from comfyui_hdr.hdr.scenes import hdr_scene
from comfyui_hdr.training.data import ExrFolderDataset
from comfyui_hdr.training.lora import PromptEmbeddings, parse_args, train_lora

FRAMES, SIZE, CROP, BATCH, STEPS, ROUNDS = 8, 256, 128, 2, 6, 2


def write_models(folder: Path) -> None:
    torch.manual_seed(0)
    FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=64,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(16, 24, 24)).save_pretrained(folder / "flux")
    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 128, 128), latent_channels=16, norm_num_groups=32,
        scaling_factor=0.3611, shift_factor=0.1159).save_pretrained(folder / "vae")
    PromptEmbeddings.random([""], 8, 32, pooled_width=32).save(folder / "text.safetensors")


def train(folder: Path, name: str, *extra: str) -> float:
    """Seconds per optimizer step of one run (the step loop only, no model loading)."""
    options = parse_args([
        "--model", str(folder / "flux"), "--vae", str(folder / "vae"),
        "--prompt-embeddings", str(folder / "text.safetensors"), "--output",
        str(folder / name), "--data", str(folder / "shots"), "--crop", str(CROP),
        "--mode", "reference", "--batch-size", str(BATCH), "--rank", "4",
        "--steps", str(STEPS), "--eval-every", str(10 * STEPS),
        "--checkpoint-every", str(10 * STEPS), *extra])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = train_lora(options)
    return result.seconds / STEPS


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        shot = folder / "shots" / "shot"
        shot.mkdir(parents=True)
        for index in range(1, FRAMES + 1):
            write_exr(shot / f"frame_{index:05d}.exr", hdr_scene(index, SIZE).numpy(),
                      pixel_type="float")
        write_models(folder)
        cache = ("--latent-cache", str(folder / "cache"))
        cold = train(folder, "cold", *cache)
        dataset = ExrFolderDataset(folder / "shots", crop=CROP,
                                   degradation=DegradationConfig())
        uncached = warm = loader = float("inf")
        for round in range(ROUNDS):
            uncached = min(uncached, train(folder, f"uncached-{round}"))
            warm = min(warm, train(folder, f"warm-{round}", *cache))
            start = time.perf_counter()
            for index in range(len(dataset)):
                dataset[index]
            loader = min(loader, (time.perf_counter() - start) / len(dataset))
        loader_rate = 1 / loader
    print(f"tiny Flux + 1.6 M-parameter VAE, reference mode, {CROP}px crops of {SIZE}px "
          f"float EXRs, batch {BATCH}, {STEPS} steps per run, one process, best of {ROUNDS}")
    print(f"step without cache      {uncached * 1e3:8.1f} ms")
    print(f"step with cache (cold)  {cold * 1e3:8.1f} ms   {uncached / cold:5.2f}x")
    print(f"step with cache (warm)  {warm * 1e3:8.1f} ms   {uncached / warm:5.2f}x faster "
          "than without (goal >= 1.5x)")
    consumed = BATCH / warm
    print(f"data loader (EXR decode + crop + degradations) {loader_rate:7.1f} items/s; the "
          f"warm-cache trainer consumes {consumed:7.1f} items/s: ratio "
          f"{loader_rate / consumed:5.2f} (>1: one loader process keeps up)")
    print(f"without the cache, loading is {100 * BATCH / loader_rate / uncached:4.1f} % of a "
          "step (the rest: log encoding and VAE encoding of target and reference, the step)")


if __name__ == "__main__":
    main()
