"""EXR frame sequences: ComfyUI-style numbered names, writing a batch as frames, and reading
``name_%05d.exr`` / ``name_#####.exr`` / glob patterns back into one batch (gaps reported),
every header checked against the memory budget before any pixel is read."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .exr import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DIMENSION,
    Layer,
    _budget,
    _ensure_threads,
    _headers,
    _read,
    _select,
    write_exr,
)

__all__ = ["ExrSequence", "match_sequence", "next_free_sequence", "read_exr_sequence",
           "sequence_paths", "write_exr_sequence"]


@dataclass(frozen=True)
class ExrSequence:
    """Frames of an EXR sequence stacked as ``pixels [B, H, W, C]`` (and ``alpha [B, H, W]``).

    ``frames`` are the frame numbers read, in order; ``missing`` the numbers absent between
    the first and the last. ``header``, ``colourspace`` and ``notes`` are the first
    frame's.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    channels: tuple[str, ...]
    layer: str
    frames: tuple[int, ...]
    paths: tuple[Path, ...]
    missing: tuple[int, ...]
    colourspace: str | None
    header: dict[str, Any]
    notes: tuple[str, ...] = ()


def sequence_paths(folder: str | os.PathLike, prefix: str, count: int, *, padding: int = 5,
                   start_frame: int = 1, extension: str = ".exr") -> list[Path]:
    """Return ``count`` frame paths named as ComfyUI names saved images: ``prefix_00001_.exr``.

    >>> [p.name for p in sequence_paths("out", "shot", 2, start_frame=7)]
    ['shot_00007_.exr', 'shot_00008_.exr']
    """
    if not prefix or os.sep in prefix or "/" in prefix:
        raise ValueError(f"prefix {prefix!r} must be a file name without folders; put folders "
                         "in folder")
    if count < 1 or padding < 1 or start_frame < 0:
        raise ValueError(f"count={count}, padding={padding}, start_frame={start_frame}: count "
                         "and padding must be >= 1 and start_frame >= 0")
    return [Path(folder) / f"{prefix}_{frame:0{padding}d}_{extension}"
            for frame in range(start_frame, start_frame + count)]


def next_free_sequence(folder: str | os.PathLike, prefix: str, count: int, *, padding: int = 5,
                       extension: str = ".exr") -> list[Path]:
    """Return ``count`` new frame paths after every ``prefix_<number>`` file in ``folder``.

    ComfyUI's counter rule (``folder_paths.get_save_image_path``): the next counter is one
    more than the largest number following ``prefix_`` in any file name (any extension, so
    PNGs and EXRs of one prefix never collide; ``prefix_00003.exr`` counts too), or 1.
    """
    pattern = re.compile(re.escape(os.path.normcase(prefix)) + r"_(\d+)(?:[_.]|$)")
    folder = Path(folder)
    names = os.listdir(folder) if folder.is_dir() else []
    numbers = [int(m.group(1)) for name in names
               if (m := pattern.match(os.path.normcase(name)))]
    return sequence_paths(folder, prefix, count, padding=padding,
                          start_frame=max(numbers, default=0) + 1, extension=extension)


def write_exr_sequence(folder: str | os.PathLike, prefix: str, frames: Any, *,
                       start_frame: int | None = None, padding: int = 5,
                       **options: Any) -> list[Path]:
    """Write a ``[B, H, W, C]`` batch (or ``{layer: [B, H, W, C]}``) as one EXR per frame.

    ``start_frame`` None continues after the files already there (:func:`next_free_sequence`);
    ``options`` go to :func:`write_exr`. If a frame fails, the frames written by this call
    are removed and the error is raised.
    """
    layers = frames if isinstance(frames, Mapping) else {"": frames}
    layers = {name: value if isinstance(value, Layer) else Layer(value)
              for name, value in layers.items()}
    counts = {len(layer.pixels) if getattr(layer.pixels, "ndim", np.ndim(layer.pixels)) == 4
              else -1 for layer in layers.values()}
    if len(counts) != 1 or min(counts) < 1:
        raise ValueError("frames must be [B, H, W, C] (every layer with the same B >= 1); "
                         "a single image goes to write_exr")
    count = counts.pop()
    paths = (next_free_sequence(folder, prefix, count, padding=padding) if start_frame is None
             else sequence_paths(folder, prefix, count, padding=padding, start_frame=start_frame))
    written: list[Path] = []
    try:
        for index, path in enumerate(paths):
            frame = {name: Layer(layer.pixels[index], layer.channels, layer.pixel_type,
                                 layer.label)
                     for name, layer in layers.items()}
            written.append(write_exr(path, frame, **options))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def match_sequence(pattern: str | os.PathLike) -> list[tuple[int, Path]]:
    """(frame number, path) of every file matching ``pattern``, by frame number.

    ``name_%05d.exr`` and ``name_#####.exr`` match that many digits or more; a glob's frame
    number is the last number in the matched name. Only the file name is a pattern, the
    folder is taken literally. Raises ``ValueError`` when nothing matches.
    """
    pattern = os.fspath(pattern)
    folder, name = os.path.split(pattern)
    folder = Path(folder or ".")
    field = re.search(r"%(\d*)d|#+", name)
    if field:
        width = len(field.group()) if field.group().startswith("#") else int(field.group(1) or 1)
        regex = re.compile(re.escape(name[:field.start()]) + rf"(-?\d{{{width},}})"
                           + re.escape(name[field.end():]) + r"\Z")
    elif any(char in name for char in "*?["):
        regex = re.compile(fnmatch.translate(name))
    else:
        raise ValueError(f"pattern {pattern!r} has no frame field; use name_%05d.exr, "
                         "name_#####.exr or a glob like name_*.exr")
    found = []
    for entry in sorted(os.listdir(folder)) if folder.is_dir() else []:
        match = regex.match(entry)
        numbers = re.findall(r"-?\d+", match.group(1) if field else Path(entry).stem) if match \
            else []
        if numbers:
            found.append((int(numbers[-1]), folder / entry))
    if not found:
        raise ValueError(f"no file matches {pattern!r}; check the folder and the frame field")
    return sorted(found)


def read_exr_sequence(pattern: str | os.PathLike, *, layer: str | None = None,
                      part: int | str | None = None, dtype: Any = np.float32,
                      max_bytes: int = DEFAULT_MAX_BYTES,
                      max_dimension: int = DEFAULT_MAX_DIMENSION) -> ExrSequence:
    """Read the frames matching ``pattern`` (``name_%05d.exr``, ``name_#####.exr`` or a glob).

    Frames are ordered by frame number (the last number in a glob match); gaps are reported
    in ``missing``. Every header is checked against ``max_bytes`` (for the whole sequence)
    and ``max_dimension`` before any pixel is read.
    """
    _ensure_threads()
    files = match_sequence(pattern)
    headers = [_headers(path) for _, path in files]
    total = sum(_budget(path, header, _select(path, header, layer, part)[1], max_bytes,
                        max_dimension) for (_, path), header in zip(files, headers, strict=True))
    if total > max_bytes:
        raise ValueError(f"{pattern} needs about {total / 2**30:.2f} GiB to read, over "
                         f"max_bytes={max_bytes}; read fewer frames or raise max_bytes")
    first = _read(files[0][1], headers[0], layer, part, dtype)
    pixels = np.empty((len(files),) + first.pixels.shape, first.pixels.dtype)
    alpha = None if first.alpha is None else np.empty((len(files),) + first.alpha.shape,
                                                      first.alpha.dtype)
    for index, ((_, path), header) in enumerate(zip(files, headers, strict=True)):
        image = first if index == 0 else _read(path, header, layer, part, dtype)
        if image.pixels.shape != first.pixels.shape or image.channels != first.channels or (
                image.alpha is None) != (alpha is None):
            raise ValueError(f"{path} has channels {image.channels} {image.pixels.shape[:2]}, "
                             f"unlike the first frame's {first.channels} "
                             f"{first.pixels.shape[:2]}; a sequence needs matching frames")
        pixels[index] = image.pixels
        if alpha is not None:
            alpha[index] = image.alpha
    numbers = [number for number, _ in files]
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    return ExrSequence(pixels=pixels, alpha=alpha, channels=first.channels, layer=first.layer,
                       frames=tuple(numbers), paths=tuple(path for _, path in files),
                       missing=tuple(missing), colourspace=first.colourspace,
                       header=first.header, notes=first.notes)
