"""The demo's models, built here with no downloads: a tiny HDR VAE trained for a few CPU
seconds on procedural HDR scenes (``train-vae``), and the tiny widened Qwen-Image-style DiT
with its prompt embeddings (:mod:`.tiny_models`; untrained). With real weights, the same
workflow runs unchanged: put an HDR VAE folder in ``models/vae_hdr`` and a widened
checkpoint in ``models/diffusion_models``, and pick them in the workflow's loaders.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from .comfyui import DEFAULT_HOME
from .tiny_models import write_tiny_hdr_set

DEMO_VAE = "comfyui_hdr_demo_vae"
"""Folder name of the demo's trained HDR VAE under ``models/vae_hdr``."""

DEMO_VAE_TRAINING = [
    "--block-out-channels", "32,64", "--layers-per-block", "1", "--no-mid-block-attention",
    "--procedural", "48", "--size", "32", "--crop", "32", "--heldout", "8",
    "--batch-size", "8", "--learning-rate", "1e-3", "--highlight-weight", "1.0",
]
"""A tiny model (2x compression) on 32 px procedural scenes: fully convolutional, so it
decodes frames of any size."""

MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors", "hdr_vae.json",
               "latent_stats.json", "loss.png")
CACHE_VERSION = "2"
"""Part of the cache key: 2 since train-vae writes latent_stats.json."""


def _copy_model(source: Path, target: Path) -> None:
    """Copy the model files into ``target`` through a hidden folder renamed last."""
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(source / name, staging / name)
    staging.rename(target)


def build_demo_vae(models_dir: str | Path, steps: int = 150,
                   cache: Path | None = DEFAULT_HOME / "demo-models") -> Path:
    """Train the demo HDR VAE into ``models/vae_hdr/comfyui_hdr_demo_vae`` unless it is
    there; returns its folder. A trained copy is kept in ``cache`` (the harness's own
    folder, keyed by the training arguments) so the demo, the tests and the scripts train
    it once per machine; checkpoints stay in a temporary folder."""
    from ..training import train_vae

    target = Path(models_dir) / "vae_hdr" / DEMO_VAE
    if (target / "config.json").exists():
        return target
    arguments = [*DEMO_VAE_TRAINING, "--steps", str(steps), "--checkpoint-every", str(steps)]
    key = hashlib.sha256("\0".join([CACHE_VERSION, *arguments]).encode()).hexdigest()[:16]
    cached = None if cache is None else Path(cache) / f"{DEMO_VAE}-{key}"
    if cached is not None and (cached / "config.json").exists():
        _copy_model(cached, target)
        return target
    with tempfile.TemporaryDirectory(prefix="train-vae-") as work:
        run = Path(work) / "run"
        code = train_vae.main([*arguments, "--output", str(run)])
        if code != 0:
            raise RuntimeError(f"train-vae failed with exit code {code}")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            _copy_model(run, cached)
        _copy_model(run, target)
    return target


def build_demo_models(models_dir: str | Path, vae_steps: int = 150) -> dict[str, str]:
    """Every model the demo workflow loads; returns the names it uses."""
    build_demo_vae(models_dir, vae_steps)
    return {**write_tiny_hdr_set(models_dir), "demo_vae": DEMO_VAE}
