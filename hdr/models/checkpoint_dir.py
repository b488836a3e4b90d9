"""The one check every loader of a diffusers model folder runs before reading it, and the
config hash that identifies a base model (what adapters and LoRAs record they were trained on)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
"""Checkpoint files that are pickles: refused, since unpickling can run arbitrary code."""


def check_safetensors_dir(path: str | os.PathLike, argument: str = "path") -> dict:
    """Check a diffusers model folder (``config.json`` + ``*.safetensors``); return its config.

    Raises ``ValueError`` naming ``argument`` if ``path`` is not a directory, has no
    ``config.json``, or holds no ``*.safetensors`` (a pickle checkpoint is refused).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(f"{argument} {directory} is not a directory; point it at a diffusers "
                         "model folder (config.json + *.safetensors)")
    if not (directory / "config.json").is_file():
        raise ValueError(f"{argument} {directory} is not a model folder: config.json is "
                         "missing; point it at the folder save_pretrained wrote")
    if not any(directory.glob("*.safetensors")):
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        found = f"only a pickle checkpoint ({', '.join(pickles)})" if pickles else "no weights"
        raise ValueError(f"{argument} {directory} holds {found}; only safetensors are read "
                         "(pickles can run code): re-save it with save_pretrained(..., "
                         "safe_serialization=True)")
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


def config_sha256(model) -> str:
    """SHA-256 of a diffusers model's config (private ``_`` entries left out): the identity
    of a base model that adapters and LoRAs record, so they are not loaded into another."""
    config = {key: value for key, value in dict(model.config).items()
              if not key.startswith("_")}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
