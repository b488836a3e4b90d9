"""``latent-stats``: measure an HDR VAE's per-channel latent mean and std over a dataset.

    python -m comfyui_hdr.training latent-stats --vae VAE_DIR --data EXR_DIR --crop 256
    python -m comfyui_hdr.training latent-stats --vae VAE_DIR --procedural 256 --size 64

Every item of the dataset (``--items`` caps it) is encoded (the posterior's mode, what
"HDR VAE Encode" gives) and the statistics are accumulated in float64
(:mod:`~comfyui_hdr.hdr.models.latent_stats`), then written to ``VAE_DIR/latent_stats.json``
atomically; "Load HDR Diffusion Model" normalises the DiT's latent with them. ``train-vae``
runs the same measurement on its training set at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..hdr.models.hdr_vae import load_hdr_vae
from ..hdr.models.latent_stats import (
    LATENT_STATS_FILE,
    LatentStatistics,
    measure_latent_stats,
    write_latent_stats,
)
from .data import ExrFolderDataset, ProceduralScenes

__all__ = ["build_parser", "dataset_latent_stats", "main"]


def _batches(dataset, batch_size: int, items: int) -> Iterator[torch.Tensor]:
    """The dataset's frames as scene-linear ``[B, 3, H, W]`` batches."""
    frames = []
    for index in range(items):
        frames.extend(dataset[index]["hdr"].permute(0, 3, 1, 2))
        while len(frames) >= batch_size:
            yield torch.stack(frames[:batch_size])
            frames = frames[batch_size:]
    if frames:
        yield torch.stack(frames)


def dataset_latent_stats(vae, dataset, batch_size: int = 8,
                         items: int | None = None) -> LatentStatistics:
    """Per-channel statistics of ``vae``'s latent over the first ``items`` dataset items."""
    count = len(dataset) if items is None else min(items, len(dataset))
    if count < 1 or batch_size < 1:
        raise ValueError(f"measuring latent statistics needs at least one item and a batch "
                         f"size >= 1, got {count} items and batch size {batch_size}")
    was_training = vae.training
    vae.eval()
    try:
        return measure_latent_stats(vae, _batches(dataset, batch_size, count))
    finally:
        vae.train(was_training)


def build_parser() -> argparse.ArgumentParser:
    """The ``latent-stats`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training latent-stats",
        description="Measure an HDR VAE's per-channel latent mean/std over a dataset and store "
                    f"them as {LATENT_STATS_FILE} in the VAE folder.")
    parser.add_argument("--vae", type=Path, required=True, help="HDR VAE folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder of scene-linear EXR images/sequences")
    source.add_argument("--procedural", type=int, metavar="N", help="N procedural HDR scenes")
    parser.add_argument("--size", type=int, default=256,
                        help="render size of procedural scenes (default 256)")
    parser.add_argument("--crop", type=int, default=256,
                        help="centre crop side in pixels, a multiple of the VAE's compression "
                             "(default 256)")
    parser.add_argument("--gamut", default="rec709", help="gamut of the EXRs (default rec709)")
    parser.add_argument("--seed", type=int, default=0, help="first procedural seed (default 0)")
    parser.add_argument("--items", type=int, help="measure only the first N items")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace an existing {LATENT_STATS_FILE}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``latent-stats``; return the exit code (0, or 2 on bad input)."""
    arguments = build_parser().parse_args(argv)
    try:
        target = arguments.vae / LATENT_STATS_FILE
        if target.exists() and not arguments.overwrite:
            raise FileExistsError(f"{target} exists; pass --overwrite to measure again")
        vae = load_hdr_vae(arguments.vae)
        if arguments.procedural is not None:
            dataset = ProceduralScenes(arguments.procedural, arguments.size, arguments.seed,
                                       crop=arguments.crop, random_crop=False)
            source = {"kind": "procedural", "scenes": arguments.procedural,
                      "size": arguments.size, "seed": arguments.seed}
        else:
            dataset = ExrFolderDataset(arguments.data, crop=arguments.crop, random_crop=False,
                                       gamut=arguments.gamut)
            source = {"kind": "exr", "root": str(arguments.data), "gamut": arguments.gamut}
        stats = dataset_latent_stats(vae, dataset, arguments.batch_size, arguments.items)
        write_latent_stats(arguments.vae, stats, {**source, "crop": arguments.crop})
    except (ValueError, FileExistsError) as error:
        print(f"latent-stats: error: {error}", file=sys.stderr)
        return 2
    spread = f"std {min(stats.std):.4g}..{max(stats.std):.4g}"
    print(f"latent-stats: {stats.channels} channels over {stats.count:,} values per channel, "
          f"{spread}; wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
