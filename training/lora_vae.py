"""The frozen VAE of a ``train-lora`` run, loaded only when an item needs encoding.

Latent-cache keys name the VAE by its weights and config (SHA-256 of each). That identity
is remembered in the cache folder (``vae-<digest>.json``), keyed by the VAE folder's files
(path, modification time, size), so a run whose latents are all cached never loads the VAE.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .common import check_safetensors_dir, write_json
from .data import LatentCache, weights_hash
from .lora_memory import model_folder
from .lora_models import config_sha256, load_model

__all__ = ["FrozenVae"]


class FrozenVae:
    """The VAE of ``--vae`` (checked now, loaded on the CPU at the first :attr:`model`)."""

    def __init__(self, path: str, cache_folder: str | None = None):
        self.path = path
        self.folder = model_folder(path, "vae")
        check_safetensors_dir(self.folder, "--vae")
        self.cache = LatentCache(cache_folder) if cache_folder else None
        self._model: torch.nn.Module | None = None
        self._identity: dict | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load_model(self.path, "vae", "--vae")
        return self._model

    def _record(self) -> Path:
        files = sorted(path for path in self.folder.iterdir()
                       if path.name == "config.json" or path.suffix == ".safetensors")
        _, digest = self.cache.key({"vae_files": files})
        return self.cache.folder / f"vae-{digest}.json"

    def identity(self) -> dict:
        """``class_name``, ``config_sha256`` and ``weights_sha256`` of the VAE."""
        if self._identity is not None:
            return self._identity
        record = self._record() if self.cache is not None else None
        if record is not None and record.is_file():
            self._identity = json.loads(record.read_text(encoding="utf-8"))
            return self._identity
        model = self.model
        self._identity = {"class_name": type(model).__name__,
                          "config_sha256": config_sha256(model),
                          "weights_sha256": weights_hash(model)}
        if record is not None:
            write_json(record, self._identity)
        return self._identity

    def cache_key(self) -> str:
        """The ``vae`` part of a latent-cache key."""
        identity = self.identity()
        return f"{identity['weights_sha256']}+config:{identity['config_sha256']}"

    def release(self, device: torch.device) -> None:
        """Move a loaded VAE off ``device`` (back to the CPU)."""
        if self._model is not None:
            self._model.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()
