"""``train-lora``'s items with DiffHDR's two augmentations: every temporal offset of a clip
(``--all-starts``) and horizontal mirroring (``--flip``).

DiffHDR (Eyeline-Labs, the seed's implementation) caches a latent for every start frame
of its training sequences, so each step can draw any window of a shot, and mirrors
frames left to right. Both are done here on the dataset's own items, so the latent cache
stores one latent per (clip start, crop, mirror) like any other item.

The held-out items stay the last ``holdout`` clips of the plain dataset (consecutive,
non-overlapping clips, as without augmentation) and are never mirrored; with
``--all-starts`` a training clip that shares a frame with a held-out clip is left out,
so the held-out loss never scores frames the LoRA trained on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .data import ExrFolderDataset

__all__ = ["AugmentedClips", "mirrored"]


def mirrored(item: dict) -> dict:
    """A dataset item mirrored left to right: ``hdr`` and ``sdr_reference`` ``[T, H, W, C]``
    flipped along W; ``flipped`` is set so caches and logs can tell the copies apart."""
    out = dict(item)
    for key in ("hdr", "sdr_reference"):
        if key in out:
            out[key] = out[key].flip(-2).contiguous()
    out["flipped"] = True
    return out


class AugmentedClips(torch.utils.data.Dataset):
    """Training items (every start with ``all_starts``, each also mirrored with ``flip``),
    then the ``holdout`` held-out items of the plain dataset.

    ``make`` builds the underlying dataset for a clip stride (None: the dataset's default,
    consecutive clips; 1: every start frame). :meth:`origin` names the underlying item of
    each index: ``(dataset, index, flipped)``.
    """

    def __init__(self, make: Callable[[int | None], torch.utils.data.Dataset], holdout: int,
                 all_starts: bool = False, flip: bool = False):
        plain = make(None)
        if holdout < 0 or holdout >= len(plain):
            raise ValueError(f"the data has {len(plain)} items; --holdout {holdout} leaves "
                             "none to train on (or is negative)")
        kept = len(plain) - holdout
        if all_starts and not isinstance(plain, ExrFolderDataset):
            raise ValueError("--all-starts takes every start frame of EXR sequences; "
                             "procedural scenes are single frames: drop --all-starts")
        heldout = [(plain, index, False) for index in range(kept, len(plain))]
        if all_starts:
            every = make(1)
            taken = _frames(plain, range(kept, len(plain)))
            training = [(every, index, False) for index in range(len(every))
                        if not _frames(every, [index]) & taken]
        else:
            training = [(plain, index, False) for index in range(kept)]
        if flip:
            training += [(dataset, index, True) for dataset, index, _ in training]
        self.entries = training + heldout
        self.holdout = holdout
        self._datasets = list({id(d): d for d, _, _ in self.entries}.values())

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        for dataset in self._datasets:
            dataset.set_epoch(epoch)

    def origin(self, index: int) -> tuple[torch.utils.data.Dataset, int, bool]:
        return self.entries[index]

    def __getitem__(self, index: int) -> dict:
        dataset, inner, flipped = self.entries[index]
        item = dataset[inner]
        return mirrored(item) if flipped else item


def _frames(dataset: ExrFolderDataset, indices) -> set[tuple[str, int]]:
    """(source name, frame number) of every frame the clips ``indices`` cover."""
    frames = set()
    for index in indices:
        source, start = dataset.clips[index]
        frames.update((source.name, start + offset)
                      for offset in range(dataset.frames_per_clip))
    return frames
