"""Training data: EXR sequences and images, procedural scenes, captions, crops, a latent cache.

- :func:`discover_sources` finds EXR sequences (``frame_00001.exr``, ComfyUI's
  ``name_00001_.exr``) and single EXR or Radiance ``.hdr`` images under a folder (HDRIs;
  their pixels as stored, as OpenImageIO reads them: :mod:`hdr.radiance`), checks them
  (frame gaps and mixed sizes are errors naming the files; frames with NaN/Inf are
  skipped with a warning or refused) and reads each folder's optional ``caption.txt``.
- :class:`ExrFolderDataset` and :class:`ProceduralScenes` are torch datasets of clips
  ``[T, H, W, 3]`` in scene-linear Rec.709, random or centre cropped (deterministic by
  seed and epoch), optionally paired with a degraded SDR reference (:mod:`hdr.degrade`);
  :func:`collate` batches them.
- :class:`LatentCache` keeps VAE latents as safetensors, keyed by the source files (path,
  mtime, size), the crop, the curve and the VAE's weights hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..hdr.atomic import atomic_path
from ..hdr.degrade import DegradationConfig, degrade_pair
from ..hdr.exr import read_exr
from ..hdr.gamut import convert_gamut, get_gamut
from ..hdr.radiance import read_hdr
from ..hdr.scenes import hdr_scene

__all__ = [
    "HDR_IMAGE_SUFFIXES",
    "Caption",
    "ExrFolderDataset",
    "LatentCache",
    "ProceduralScenes",
    "Source",
    "collate",
    "discover_sources",
    "parse_caption",
    "read_hdr_image",
    "weights_hash",
]

CAPTION_FILE = "caption.txt"
# A frame number ends the stem, optionally followed by ComfyUI's trailing underscore.
_FRAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)_?$")
_SEGMENT = re.compile(r"\[\s*(overexposed|underexposed)\s*:\s*([^\[\]]*?)\s*\]", re.IGNORECASE)


@dataclass(frozen=True)
class Caption:
    """A DiffHDR caption: what is lost in the over- and in the under-exposed regions."""

    overexposed: str | None
    underexposed: str | None

    @property
    def prompt(self) -> str:
        """The caption in DiffHDR's format: ``[Overexposed: ...]; [Underexposed: ...]``."""
        parts = [f"[{label}: {text}]" for label, text in
                 (("Overexposed", self.overexposed), ("Underexposed", self.underexposed))
                 if text is not None]
        return "; ".join(parts)


def parse_caption(text: str) -> Caption:
    """Parse DiffHDR's ``[Overexposed: ...]; [Underexposed: ...]`` caption (any case).

    Either part may be missing, each may appear once, parts are separated by ``;`` and
    nothing else may stand outside the brackets; anything else raises ``ValueError``.

    References
    ----------
    Seed 004 (Eyeline DiffHDR), exposure-region captions.

    >>> parse_caption("[overexposed: the sun and sky]; [UNDEREXPOSED: tree bark]").prompt
    '[Overexposed: the sun and sky]; [Underexposed: tree bark]'
    """
    found: dict[str, str] = {}
    for match in _SEGMENT.finditer(text):
        label = match.group(1).lower()
        if label in found:
            raise ValueError(f"caption repeats [{label}: ...]; keep one of each")
        found[label] = match.group(2)
    rest = _SEGMENT.sub("", text)
    if not found or rest.strip(" \t\r\n;"):
        raise ValueError(f"caption {text.strip()[:80]!r} is not '[Overexposed: ...]; "
                         "[Underexposed: ...]'")
    return Caption(found.get("overexposed"), found.get("underexposed"))


def _read_caption(folder: Path) -> Caption | None:
    path = folder / CAPTION_FILE
    if not path.is_file():
        return None
    try:
        return parse_caption(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        warnings.warn(f"{path}: {error}; using no caption for this folder", stacklevel=3)
        return None


@dataclass(frozen=True)
class Source:
    """One EXR sequence or image: its frames in order, their size, caption and bad frames.

    ``usable[i]`` is False for a frame holding NaN/Inf (skipped); clips never span one.
    """

    name: str
    paths: tuple[Path, ...]
    height: int
    width: int
    caption: Caption | None
    usable: tuple[bool, ...]


def _group(folder: Path, names: list[str]) -> list[tuple[str, list[tuple[int, Path]]]]:
    sequences: dict[str, list[tuple[int, Path]]] = {}
    singles = []
    for name in names:
        match = _FRAME.match(Path(name).stem)
        if match:
            sequences.setdefault(match.group("prefix"), []).append(
                (int(match.group("number")), folder / name))
        else:
            singles.append((Path(name).stem, [(0, folder / name)]))
    for frames in sequences.values():
        frames.sort()
        for (number, path), (following, next_path) in zip(frames, frames[1:], strict=False):
            if following == number:
                raise ValueError(f"{path} and {next_path} are both frame {number}; rename one")
            if following != number + 1:
                raise ValueError(f"frame gap in {folder}: {path.name} is followed by "
                                 f"{next_path.name} (frames {number + 1}..{following - 1} "
                                 "missing); render them or split the sequence into folders")
    return sorted(sequences.items()) + singles


HDR_IMAGE_SUFFIXES = (".exr", ".hdr", ".pic")
"""Files a dataset reads: OpenEXR and Radiance RGBE."""


def read_hdr_image(path: Path) -> np.ndarray:
    """Scene-linear pixels ``[H, W, C]`` float32 of an EXR or Radiance file."""
    if path.suffix.lower() == ".exr":
        return read_exr(path).pixels
    return read_hdr(path).pixels


def _check_frames(name: str, paths: list[Path], nan_frames: str) -> tuple[int, int, list[bool]]:
    size, usable = None, []
    for path in paths:
        pixels = read_hdr_image(path)
        if pixels.ndim != 3 or pixels.shape[2] < 3:
            raise ValueError(f"{path} has channels {pixels.shape[2:]}; training needs RGB")
        if size is None:
            size, first = pixels.shape[:2], path
        elif pixels.shape[:2] != size:
            raise ValueError(f"mixed frame sizes in {name}: {path.name} is "
                             f"{pixels.shape[1]}x{pixels.shape[0]} but {first.name} is "
                             f"{size[1]}x{size[0]}; every frame of a sequence needs one size")
        bad = int((~np.isfinite(pixels[..., :3])).any(-1).sum())
        if bad and nan_frames == "error":
            raise ValueError(f"{path} has {bad} NaN/Inf pixels; fix the render or pass "
                             "nan_frames='skip'")
        usable.append(not bad)
    return size[0], size[1], usable


def discover_sources(root: str | os.PathLike, nan_frames: str = "skip") -> list[Source]:
    """Find and check the EXR sequences and images under ``root`` (recursively).

    In each folder, ``.exr`` (or ``.hdr``) files whose name ends in a frame number
    (``shot_00001.exr``, ``shot_00001_.exr``, ``shot.0001.exr``) form one sequence per
    prefix; other files are single images. Every frame is decoded once to check it.

    Parameters
    ----------
    root
        Folder to search.
    nan_frames
        ``'skip'``: frames with NaN/Inf pixels are left out, with one warning giving the
        count; ``'error'``: they raise ``ValueError``.

    Returns
    -------
    The sources, in folder and name order, each with its folder's ``caption.txt`` parsed
    (an unparseable caption warns and gives None).
    """
    if nan_frames not in ("skip", "error"):
        raise ValueError(f"nan_frames must be 'skip' or 'error', got {nan_frames!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root {root} is not a folder; point it at the folder of EXRs")
    sources, skipped = [], 0
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        folder = Path(folder)
        names = sorted(name for name in files if name.lower().endswith(HDR_IMAGE_SUFFIXES))
        if not names:
            continue
        caption = _read_caption(folder)
        for prefix, frames in _group(folder, names):
            paths = [path for _, path in frames]
            name = str(folder.relative_to(root) / prefix)
            height, width, usable = _check_frames(name, paths, nan_frames)
            skipped += usable.count(False)
            sources.append(Source(name, tuple(paths), height, width, caption, tuple(usable)))
    if skipped:
        warnings.warn(f"skipped {skipped} frames with NaN/Inf pixels under {root}",
                      stacklevel=2)
    if not sources:
        raise ValueError(f"no .exr or .hdr files under {root}; check the folder")
    return sources


def _crop_size(crop: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if crop is None:
        return None
    height, width = (crop, crop) if isinstance(crop, int) else crop
    if height < 1 or width < 1:
        raise ValueError(f"crop must be positive (height, width), got {crop}")
    return height, width


def _crop_box(height: int, width: int, crop: tuple[int, int] | None, random_crop: bool,
              rng: np.random.Generator) -> tuple[int, int, int, int]:
    if crop is None:
        return 0, 0, height, width
    crop_height, crop_width = crop
    if random_crop:
        return (int(rng.integers(height - crop_height + 1)),
                int(rng.integers(width - crop_width + 1)), crop_height, crop_width)
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


class _ClipDataset(torch.utils.data.Dataset):
    """Cropping, seeding and degradation shared by the datasets."""

    def __init__(self, crop, random_crop: bool, seed: int,
                 degradation: DegradationConfig | None):
        self.crop = _crop_size(crop)
        self.random_crop = random_crop
        self.seed = seed
        self.degradation = degradation
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new random crops and degradations for ``epoch`` (call once per epoch)."""
        self.epoch = epoch

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, stream])

    def _box(self, index: int, height: int, width: int) -> tuple[int, int, int, int]:
        return _crop_box(height, width, self.crop, self.random_crop, self._rng(index, 0))

    def _finish(self, index: int, clip: torch.Tensor, **item: Any) -> dict:
        """Add the (cropped) clip and, with a degradation config, its SDR reference."""
        item["hdr"] = clip.contiguous()
        if self.degradation is not None:
            seed = int(self._rng(index, 1).integers(2**62))
            pair = degrade_pair(item["hdr"], self.degradation, seed=seed)
            item.update(hdr=pair.hdr, sdr_reference=pair.sdr_reference,
                        degradations=pair.applied)
        return item


class ExrFolderDataset(_ClipDataset):
    """Clips of ``frames_per_clip`` frames from the EXR sequences and images under ``root``.

    Each item is a dict: ``hdr`` ``[T, H, W, 3]`` float32 scene-linear Rec.709 (converted
    from ``gamut``), ``caption`` (:class:`Caption` or None), ``prompt`` (its text, '' for
    none), ``paths`` (the frames' files), ``crop`` ``(top, left, height, width)``, and with
    ``degradation`` set ``sdr_reference`` and ``degradations`` from
    :func:`~comfyui_hdr.hdr.degrade.degrade_pair`. Crops and degradations are drawn from
    ``(seed, epoch, index)``.

    Parameters
    ----------
    root
        Folder of EXRs (see :func:`discover_sources`).
    frames_per_clip, stride
        Clip length and the step between clip starts (default: ``frames_per_clip``).
    crop
        Crop size ``(height, width)`` or a square side; None keeps the full frame.
    random_crop
        Random crop position (True) or the centre (False).
    gamut
        Gamut of the files' linear RGB (a :mod:`hdr.gamut` name), converted to Rec.709.
    nan_frames
        ``'skip'`` or ``'error'`` for frames holding NaN/Inf.
    """

    def __init__(self, root: str | os.PathLike, *, frames_per_clip: int = 1,
                 stride: int | None = None, crop: int | tuple[int, int] | None = None,
                 random_crop: bool = True, seed: int = 0, gamut: str = "rec709",
                 nan_frames: str = "skip", degradation: DegradationConfig | None = None):
        super().__init__(crop, random_crop, seed, degradation)
        if frames_per_clip < 1 or (stride is not None and stride < 1):
            raise ValueError(f"frames_per_clip ({frames_per_clip}) and stride ({stride}) must "
                             "be >= 1")
        self.gamut = get_gamut(gamut)
        self.frames_per_clip = frames_per_clip
        self.sources = discover_sources(root, nan_frames)
        self.clips: list[tuple[Source, int]] = []
        for source in self.sources:
            if self.crop and (self.crop[0] > source.height or self.crop[1] > source.width):
                raise ValueError(f"crop {self.crop} is larger than {source.name} "
                                 f"({source.height}x{source.width}); lower crop")
            for start in range(0, len(source.paths) - frames_per_clip + 1,
                               stride or frames_per_clip):
                if all(source.usable[start:start + frames_per_clip]):
                    self.clips.append((source, start))
        if not self.clips:
            raise ValueError(f"no clip of {frames_per_clip} usable frames under {root}; "
                             "lower frames_per_clip")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        source, start = self.clips[index]
        paths = source.paths[start:start + self.frames_per_clip]
        box = self._box(index, source.height, source.width)
        top, left, height, width = box
        clip = torch.stack([torch.from_numpy(read_hdr_image(path)[top:top + height,
                                                                   left:left + width, :3])
                            for path in paths])
        if self.gamut.name != "rec709":
            clip = convert_gamut(clip, self.gamut, "rec709")
        caption = source.caption
        return self._finish(index, clip, caption=caption,
                            prompt=caption.prompt if caption else "", paths=paths, crop=box)


class ProceduralScenes(_ClipDataset):
    """``count`` procedural HDR scenes (:func:`~comfyui_hdr.hdr.scenes.hdr_scene`) as a dataset.

    Scene ``index`` is rendered from seed ``seed + index`` at ``size`` (a side or
    ``(height, width)``); items have the same keys as :class:`ExrFolderDataset`'s, with
    ``T = 1``, no caption and no paths (``scene_seed`` instead).
    """

    def __init__(self, count: int, size: int | tuple[int, int] = 64, seed: int = 0, *,
                 crop: int | tuple[int, int] | None = None, random_crop: bool = True,
                 degradation: DegradationConfig | None = None):
        super().__init__(crop, random_crop, seed, degradation)
        if count < 1 or seed < 0:
            raise ValueError(f"count must be >= 1 and seed >= 0, got {count}, {seed}")
        self.count = count
        self.height, self.width = _crop_size(size)
        if self.crop and (self.crop[0] > self.height or self.crop[1] > self.width):
            raise ValueError(f"crop {self.crop} is larger than size {size}; lower crop")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"scene {index} is out of range 0..{self.count - 1}")
        top, left, height, width = box = self._box(index, self.height, self.width)
        scene = hdr_scene(self.seed + index, self.height, self.width)
        return self._finish(index, scene[None, top:top + height, left:left + width],
                            caption=None, prompt="", paths=(), crop=box,
                            scene_seed=self.seed + index)


def collate(items: Sequence[dict]) -> dict:
    """Batch dataset items: ``hdr`` (and ``sdr_reference``) stacked to ``[B, T, H, W, 3]``,
    every other key gathered into a list."""
    shapes = {tuple(item["hdr"].shape) for item in items}
    if len(shapes) != 1:
        raise ValueError(f"items have different shapes {sorted(shapes)}; set crop= (and one "
                         "frames_per_clip) so every item has the same size")
    batch = {key: [item[key] for item in items] for key in items[0]}
    for key in ("hdr", "sdr_reference"):
        if key in batch:
            batch[key] = torch.stack(batch[key])
    return batch


def weights_hash(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes and bytes), for cache keys."""
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON-ready form of a key part; files become (path, mtime in ns, size)."""
    if isinstance(value, os.PathLike):
        path = Path(value).resolve()
        stat = path.stat()
        return {"file": str(path), "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise ValueError(f"cache key part {value!r} ({type(value).__name__}) is not a path, "
                     "number, string or a list/dict of them")


class LatentCache:
    """Latents stored as safetensors in ``folder``, one file per key.

    A key is built from ``key_parts``, a dict such as ``{"files": item["paths"], "crop":
    item["crop"], "curve": "logc4", "vae": weights_hash(vae)}``: ``Path`` values stand for
    the file's path, modification time and size, so editing a file, or changing the crop,
    curve or VAE, gives a new key and the old latent is never returned again.
    ``hits`` and ``misses`` count lookups.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def key(self, key_parts: Mapping[str, Any]) -> tuple[str, str]:
        """The canonical JSON of ``key_parts`` and its SHA-256 (the file name)."""
        text = json.dumps(_canonical(key_parts), sort_keys=True, separators=(",", ":"))
        return text, hashlib.sha256(text.encode()).hexdigest()

    def get_or_compute(self, key_parts: Mapping[str, Any],
                       compute_fn: Callable[[], torch.Tensor | dict[str, torch.Tensor]]):
        """Return the cached latent for ``key_parts``, or compute, store and return it.

        ``compute_fn`` returns a tensor or a dict of tensors; the cache gives back the same
        kind (on the CPU). A cache file that fails to load is recomputed and replaced.
        """
        text, digest = self.key(key_parts)
        path = self.folder / f"{digest}.safetensors"
        if path.is_file():
            try:
                with safe_open(path, framework="pt") as stored:
                    metadata = stored.metadata() or {}
                    if metadata.get("key") == text:
                        tensors = {name: stored.get_tensor(name) for name in stored.keys()}
                        self.hits += 1
                        return tensors["latent"] if metadata["kind"] == "tensor" else tensors
            except (SafetensorError, OSError, KeyError):
                pass
        self.misses += 1
        result = compute_fn()
        tensors = {"latent": result} if isinstance(result, torch.Tensor) else dict(result)
        with atomic_path(path, overwrite=True) as temporary:
            save_file({name: tensor.detach().cpu().contiguous()
                       for name, tensor in tensors.items()}, temporary,
                      metadata={"key": text, "kind": "tensor" if isinstance(
                          result, torch.Tensor) else "dict"})
        return result
