"""Training crops from equirectangular HDR environment maps: real captured light, with
random yaw, scale, exposure and mirroring.

A captured HDRI holds what a scene-linear model must learn and procedural scenes only
imitate: real skies, suns tens of thousands of times diffuse white, interiors with lamps
and windows. Eight CC0 ones ship in Debian's ``blender-data`` (:data:`BLENDER_HDRIS`,
1024x512, peaks up to ~34,000); :func:`blender_hdris` lists them, split into training
and held-out maps.

Each item is a crop of one map (drawn from ``(seed, epoch, index)`` like every dataset
of :mod:`.data`):

- **yaw**: any column offset. An equirectangular map is periodic in longitude, so a crop
  may straddle the seam (the map's left and right edges are neighbours).
- **latitude**: rows within ``latitude_limit`` degrees of the horizon, where the
  projection stretches least (at 60 degrees a row is stretched 2x horizontally).
- **scale**: the map box-filtered by an integer factor first (wider field of view).
- **exposure**: times ``2 ** stops``, ``stops`` uniform in ``+-exposure_stops``: the
  model sees the same light at several camera exposures, as photographers bracket.
- **mirror**: left-right with probability 1/2.

Items have :class:`~.data.ProceduralScenes`' keys (``hdr`` ``[1, H, W, 3]``, ``prompt``,
``crop`` ...) plus ``view`` (map, yaw column, scale, stops, mirrored); ``prompt`` is the
map's name (``"forest"``), a fixed caption per map.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..hdr.preview import area_downsample
from .data import _ClipDataset, read_hdr_image

__all__ = ["BLENDER_HDRIS", "BLENDER_HELD_OUT", "HdriCrops", "blender_hdris"]

BLENDER_HDRIS = Path("/usr/share/blender/datafiles/studiolights/world")
"""Debian ``blender-data``'s studio-light worlds: city, courtyard, forest, interior, night,
studio, sunrise, sunset (CC0; ``dpkg -L blender-data``)."""
BLENDER_HELD_OUT = ("courtyard", "sunrise")
"""Maps kept out of training: a daylit exterior and a low sun; their neighbours in kind
(city, sunset) train."""


def blender_hdris(folder: str | os.PathLike = BLENDER_HDRIS,
                  held_out: tuple[str, ...] = BLENDER_HELD_OUT) -> tuple[list[Path], list[Path]]:
    """``(training maps, held-out maps)`` of ``folder``'s ``*.exr``, by name."""
    folder = Path(folder)
    maps = sorted(folder.glob("*.exr"))
    if not maps:
        raise ValueError(f"no .exr environment maps in {folder}; install Debian's blender-data "
                         "(apt-get install blender-data) or pass the folder of your HDRIs")
    names = {path.stem for path in maps}
    missing = sorted(set(held_out) - names)
    if missing:
        raise ValueError(f"held-out maps {missing} are not in {folder} (it has "
                         f"{sorted(names)}); name maps that exist")
    return ([path for path in maps if path.stem not in held_out],
            [path for path in maps if path.stem in held_out])


class HdriCrops(_ClipDataset):
    """``count`` random crops of the equirectangular maps ``paths`` (see the module).

    Parameters
    ----------
    paths
        Equirectangular EXR / Radiance maps, width = 2 x height, scene-linear Rec.709.
    count
        Items per epoch.
    crop
        Crop side in pixels (or ``(height, width)``).
    seed
        Seed of every random choice, with the epoch and the item's index.
    scales
        Integer box-filter factors to draw from (1: the map's own pixels).
    exposure_stops
        Exposure shifts are uniform in ``[-exposure_stops, +exposure_stops]`` stops.
    latitude_limit
        Degrees from the horizon that a crop may reach, in (0, 90].
    mirror
        Mirror left-right with probability 1/2.
    """

    def __init__(self, paths, count: int, crop: int | tuple[int, int] = 256, seed: int = 0,
                 *, scales: tuple[int, ...] = (1,), exposure_stops: float = 2.0,
                 latitude_limit: float = 60.0, mirror: bool = True, degradation=None):
        super().__init__(crop, True, seed, degradation)
        self.paths = [Path(path) for path in paths]
        if count < 1 or not self.paths:
            raise ValueError(f"HdriCrops needs count >= 1 ({count}) and at least one map "
                             f"({len(self.paths)}); pass the maps' paths")
        if not 0 < latitude_limit <= 90:
            raise ValueError(f"latitude_limit must be in (0, 90] degrees, got {latitude_limit}")
        if not exposure_stops >= 0 or not scales or any(
                int(s) != s or s < 1 for s in scales):
            raise ValueError(f"exposure_stops ({exposure_stops}) must be >= 0 and scales "
                             f"({scales}) positive integers, e.g. (1, 2)")
        self.count, self.scales = count, tuple(int(s) for s in scales)
        self.exposure_stops, self.latitude_limit = float(exposure_stops), float(latitude_limit)
        self.mirror = mirror
        self._maps: dict[tuple[int, int], torch.Tensor] = {}
        for index in range(len(self.paths)):  # read and check every map once, up front
            for scale in self.scales:
                self._rows(index, scale)

    def __len__(self) -> int:
        return self.count

    def _map(self, index: int, scale: int) -> torch.Tensor:
        key = (index, scale)
        if key not in self._maps:
            path = self.paths[index]
            pixels = torch.from_numpy(read_hdr_image(path)[..., :3].copy())
            height, width = pixels.shape[:2]
            if width != 2 * height:
                raise ValueError(f"{path} is {width}x{height}; an equirectangular map is twice "
                                 "as wide as high: pass a 2:1 latitude-longitude map")
            if not bool(torch.isfinite(pixels).all()):
                raise ValueError(f"{path} holds NaN or Inf pixels; repair the map first")
            if height % scale:
                raise ValueError(f"{path}: height {height} is not divisible by scale {scale}; "
                                 "use scales that divide it")
            if scale > 1:
                pixels = area_downsample(pixels, height // scale, width // scale)
            self._maps[key] = pixels
        return self._maps[key]

    def _rows(self, index: int, scale: int) -> tuple[int, int]:
        """First and last allowed crop top row of map ``index`` at ``scale``."""
        height = self._map(index, scale).shape[0]
        band = self.latitude_limit / 180.0 * height  # rows from the horizon to the limit
        first = int(np.ceil(height / 2 - band))
        last = int(np.floor(height / 2 + band)) - self.crop[0]
        if last < first or self.crop[1] > 2 * height:
            raise ValueError(f"crop {self.crop} does not fit {self.paths[index].name} at scale "
                             f"{scale} within {self.latitude_limit} degrees of the horizon "
                             f"({last - first + self.crop[0]} rows); lower crop or scale, "
                             "or raise latitude_limit")
        return first, last

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"item {index} is out of range 0..{self.count - 1}")
        rng = self._rng(index, 2)
        which = int(rng.integers(len(self.paths)))
        scale = self.scales[int(rng.integers(len(self.scales)))]
        pixels = self._map(which, scale)
        first, last = self._rows(which, scale)
        top = int(rng.integers(first, last + 1))
        yaw = int(rng.integers(pixels.shape[1]))
        stops = float(rng.uniform(-self.exposure_stops, self.exposure_stops))
        mirrored = bool(self.mirror and rng.integers(2))
        height, width = self.crop
        columns = (yaw + torch.arange(width)) % pixels.shape[1]  # wraps across the seam
        view = pixels[top:top + height].index_select(1, columns) * 2.0**stops
        if mirrored:
            view = view.flip(1)
        path = self.paths[which]
        return self._finish(index, view[None].contiguous(), caption=None, prompt=path.stem,
                            paths=(path,), crop=(top, yaw, height, width),
                            view={"map": path.stem, "yaw": yaw, "scale": scale,
                                  "stops": stops, "mirrored": mirrored})
