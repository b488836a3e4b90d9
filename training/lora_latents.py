"""What a ``train-lora`` step consumes: the dataset an option set names, and its items as
VAE latents (the log-encoded target, the SDR reference, the highlight weights), through
the latent cache (:class:`~.data.LatentCache`) when one is given."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..hdr.degrade import DegradationConfig, downscale_reference
from ..hdr.gamut import luminance
from ..hdr.transfer import Curve
from .common import EpochItems, StepBatchSampler
from .data import ExrFolderDataset, LatentCache, ProceduralScenes, collate
from .lora_augment import AugmentedClips
from .lora_models import FAMILY_LAYOUTS, encode_latents

__all__ = ["LoraLatents", "highlight_share", "lora_dataset", "pool_to_latent", "still_as_clip"]


def still_as_clip(batch: dict, frames: int) -> dict:
    """A collated batch of stills (``hdr`` ``[B, 1, H, W, 3]``) as ``frames`` identical
    frames (``hdr`` and ``sdr_reference`` repeated; a camera that does not move), the way
    LumiVid runs images through its video model (seed 001: Korem et al. 2026,
    arXiv:2604.11788, images evaluated as 9-frame clips). Other batches pass unchanged."""
    if batch["hdr"].shape[1] != 1 or frames == 1:
        return batch
    return batch | {name: batch[name].repeat(1, frames, 1, 1, 1)
                    for name in ("hdr", "sdr_reference") if name in batch}


def pool_to_latent(per_pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """Area-average a per-pixel map ``[B, T, H, W]`` onto the latent grid, ``[B, 1, ...]``."""
    if latent.ndim == 5:  # Wan: latent frame 0 <- frame 0, frame i <- frames 4i-3 .. 4i
        rest = per_pixel[:, 1:].reshape(per_pixel.shape[0], latent.shape[2] - 1, 4,
                                        *per_pixel.shape[2:])
        per_pixel = torch.cat([per_pixel[:, :1], rest.mean(2)], 1)[:, None]
        return F.adaptive_avg_pool3d(per_pixel, latent.shape[2:])
    return F.adaptive_avg_pool2d(per_pixel[:, :1], latent.shape[2:])


def highlight_share(hdr: torch.Tensor, threshold: float, latent: torch.Tensor) -> torch.Tensor:
    """Share of pixels above ``threshold`` luminance under each latent pixel, ``[B, 1, ...]``."""
    return pool_to_latent((luminance(hdr) > threshold).float(), latent)


class LoraLatents:
    """Dataset items -> the latents a step needs, through a :class:`LatentCache` if set.

    ``options`` is the run's :class:`~.lora.LoraTrainingOptions`; ``vae`` a
    :class:`~.lora_vae.FrozenVae`, loaded and moved to ``device`` when an item is first
    encoded; with a cache holding every training item it leaves the device again
    (:meth:`release_vae_if_cached`), or never loads if every latent was cached before.
    """

    def __init__(self, dataset, vae, family: str, curve: Curve, options,
                 device: torch.device | str = "cpu"):
        self.dataset, self.vae, self.curve, self.options = dataset, vae, curve, options
        self.device = torch.device(device)
        self.items = EpochItems(dataset)
        self.layout = FAMILY_LAYOUTS[family]
        self.video = self.layout.video_latents
        self.cache = LatentCache(options.latent_cache) if options.latent_cache else None
        # Weights and config: the config's latent statistics normalise the latents too.
        self.vae_hash = vae.cache_key() if self.cache else None

    def encode(self, batch: dict) -> dict:
        """Latents of a collated batch: ``target``, and ``reference``/``highlights``; a video
        family's stills first become ``--still-frames`` clips (:func:`still_as_clip`)."""
        if self.layout.clips:
            batch = still_as_clip(batch, self.options.still_frames)
        options, hdr = self.options, batch["hdr"]
        if (hdr.shape[1] - 1) % 4 if self.layout.clips else hdr.shape[1] != 1:
            raise ValueError(f"--frames {hdr.shape[1]}: Wan clips have 1 + 4k frames, Flux "
                             "and Qwen-Image (image models) 1")
        vae = self.vae.model.to(self.device)
        codes = self.curve.encode(hdr, **self.curve.parameters)
        latents = {"target": encode_latents(vae, codes, self.video).cpu()}
        if options.mode == "reference":
            sdr = downscale_reference(batch["sdr_reference"], options.reference_downscale_factor)
            latents["reference"] = encode_latents(vae, sdr, self.video).cpu()
        if options.highlight_weight:
            latents["highlights"] = highlight_share(hdr, options.highlight_threshold,
                                                latents["target"])
        return latents | {"prompts": list(batch["prompt"])}

    def _origin(self, index: int) -> tuple:
        """``(dataset, index, flipped)`` of the underlying item (see :class:`AugmentedClips`)."""
        origin = getattr(self.dataset, "origin", None)
        return origin(index) if origin else (self.dataset, index, False)

    def _key(self, index: int) -> dict:
        options = self.options
        dataset, index, flipped = self._origin(index)
        if isinstance(dataset, ProceduralScenes):
            source = {"scene_seed": dataset.seed + index,
                      "size": [dataset.height, dataset.width]}
        else:
            clip, start = dataset.clips[index]
            source = {"files": list(clip.paths[start:start + dataset.frames_per_clip]),
                      "gamut": dataset.gamut.name}
        reference = ({"degradation": repr(dataset.degradation),
                      "downscale": options.reference_downscale_factor}
                     if options.mode == "reference" else None)
        if self.layout.clips and options.frames == 1 and options.still_frames != 1:
            source["still_frames"] = options.still_frames  # stills repeated as a clip
        key = {"source": source, "crop": dataset.crop, "random_crop": dataset.random_crop,
               "seed": dataset.seed, "index": index, "curve": self.curve.name,
               "curve_parameters": dict(self.curve.parameters), "vae": self.vae_hash,
               "reference": reference, "highlight_threshold": (
                   options.highlight_threshold if options.highlight_weight else None)}
        return key | {"mirrored": True} if flipped else key

    def _cached(self, index: int) -> dict:
        """One item's latents (no batch axis); crops and degradations of epoch 0."""
        def compute() -> dict:
            batch = self.encode(collate([self.items[(0, index)]]))
            return {name: tensor[0] for name, tensor in batch.items() if name != "prompts"}

        latents = self.cache.get_or_compute(self._key(index), compute)
        dataset, inner, _ = self._origin(index)
        clips = getattr(dataset, "clips", None)
        caption = clips[inner][0].caption if clips else None
        return latents | {"prompt": caption.prompt if caption else ""}

    def batch(self, indices: Sequence[int]) -> dict:
        """Latents of the items ``indices`` at epoch 0 (held-out set, cached steps)."""
        if self.cache is None:
            return self.encode(collate([self.items[(0, index)] for index in indices]))
        items = [self._cached(index) for index in indices]
        return {name: torch.stack([item[name] for item in items]) for name in items[0]
                if name != "prompt"} | {"prompts": [item["prompt"] for item in items]}

    def release_vae_if_cached(self, indices: Sequence[int]) -> None:
        """With a cache: encode the items ``indices`` not cached yet (their epoch-0 crops, as
        training will read them), then move the VAE off the device for the whole run."""
        if self.cache is None:
            return
        for index in indices:
            self._cached(index)
        self.vae.release(self.device)

    def batches(self, sampler: StepBatchSampler) -> Iterator[dict]:
        """The sampler's micro-batches, in order."""
        if self.cache is not None:
            return (self.batch([index for _, index in pairs]) for pairs in sampler)
        loader = torch.utils.data.DataLoader(self.items, batch_sampler=sampler,
                                             num_workers=self.options.num_workers,
                                             collate_fn=collate)
        return (self.encode(batch) for batch in loader)


def lora_dataset(options):
    degradation = None
    if options.mode == "reference":
        degradation = (DegradationConfig.clean() if options.degradations == "clean"
                       else DegradationConfig())
    crop = options.crop or None

    def make(stride: int | None):
        if options.data == "procedural":
            return ProceduralScenes(options.scenes, options.size, options.seed, crop=crop,
                                    random_crop=not options.centre_crop,
                                    degradation=degradation)
        return ExrFolderDataset(options.data, frames_per_clip=options.frames, stride=stride,
                                crop=crop, random_crop=not options.centre_crop,
                                seed=options.seed, gamut=options.gamut,
                                nan_frames=options.nan_frames, degradation=degradation)

    return AugmentedClips(make, options.holdout, options.all_starts, options.flip)
