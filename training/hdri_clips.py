"""``python -m comfyui_hdr.training render-hdri-clips``: scene-linear EXR clips of a virtual
camera panning and tilting inside equirectangular HDR environment maps, as LumiVid made its
training data from HDRIs (seed 001: Korem et al. 2026, arXiv:2604.11788).

    python -m comfyui_hdr.training render-hdri-clips forest.exr studio.hdr --output clips/ \\
        --clips 4 --frames 17 --width 512 --height 288 --fov 60 --speed 1.5 --seed 0

Each map (an OpenEXR or Radiance ``.hdr`` file, or every such file in a folder given
instead) gives ``--clips`` folders ``OUTPUT/<map name>_<clip number>/`` holding
``frame_00001.exr ...`` and ``caption.txt``: the layout ``train-lora --data OUTPUT`` reads
(:func:`~.data.discover_sources`). Clip ``k`` follows :func:`~..hdr.camera_path.pan_tilt_path`
drawn from ``--seed + k``: a random start direction, then ``--speed`` degrees per frame
along a heading within ``--max-heading`` of horizontal, the view's centre within
``--max-pitch`` of the horizon. Frames are rendered by
:func:`~..hdr.equirect.render_view` (pinhole camera, horizontal ``--fov``, bilinear
sampling wrapped over the seam and the poles, values never clamped) and written as float
EXRs (``--pixel-type half`` halves the size but refuses values above 65504), atomically;
each frame records its camera angles in the header. The map's RGB is passed through: say
its gamut to ``train-lora --gamut``.

The caption is ``--caption`` (DiffHDR's ``[Overexposed: ...]; [Underexposed: ...]``) or,
without it, one made from the map's file name (:func:`name_caption`); the ``caption``
command can replace it with a vision-language model's (``caption --overwrite``).
Existing clip folders are never written into without ``--overwrite`` (which also removes
frames left from a longer earlier render).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..hdr.atomic import atomic_path
from ..hdr.camera_path import CameraPath, pan_tilt_path
from ..hdr.equirect import render_view
from ..hdr.exr import write_exr
from .data import CAPTION_FILE, HDR_IMAGE_SUFFIXES, parse_caption, read_hdr_image

__all__ = ["ClipSettings", "environment_maps", "main", "name_caption", "render_clips"]

FRAME_NAME = "frame_{:05d}.exr"
_FRAME_FILE = re.compile(r"^frame_(\d+)\.exr$")


@dataclass(frozen=True)
class ClipSettings:
    """What each clip looks like (the CLI flags are these names with dashes)."""

    width: int = 512
    height: int = 288
    fov: float = 60.0
    frames: int = 17
    speed: float = 1.0
    clips: int = 4
    seed: int = 0
    max_pitch: float = 30.0
    max_heading: float = 30.0
    supersample: int = 2
    pixel_type: str = "float"

    def check(self) -> None:
        """Raise ``ValueError`` naming the flag of the first bad setting."""
        for flag, value in (("--width", self.width), ("--height", self.height),
                            ("--frames", self.frames), ("--clips", self.clips),
                            ("--supersample", self.supersample)):
            if value <= 0:
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if not 0.0 < self.fov < 180.0:
            raise ValueError(f"--fov must lie strictly between 0 and 180 degrees (a pinhole "
                             f"camera cannot see a half-space), got {self.fov}")
        if self.pixel_type not in ("half", "float"):
            raise ValueError(f"--pixel-type must be 'half' or 'float', got {self.pixel_type!r}")

    def path(self, clip: int) -> CameraPath:
        """The camera path of clip number ``clip`` (seed ``seed + clip``)."""
        return pan_tilt_path(self.frames, self.speed, self.seed + clip,
                             max_pitch=self.max_pitch, max_heading=self.max_heading)


def name_caption(map_path: str | os.PathLike) -> str:
    """A DiffHDR caption made from a map's file name (``_`` and ``-`` read as spaces).

    >>> name_caption("/maps/dry-forest.exr")
    '[Overexposed: sky and lights, dry forest]; [Underexposed: shadows, dry forest]'
    """
    words = " ".join(re.split(r"[_\-\s]+", Path(map_path).stem)).strip()
    return (f"[Overexposed: sky and lights, {words}]; "
            f"[Underexposed: shadows, {words}]")


def environment_maps(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The map files named by ``inputs``: files as given, folders as their EXR/.hdr files."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(path for path in item.iterdir()
                            if path.suffix.lower() in HDR_IMAGE_SUFFIXES and path.is_file())
        elif item.is_file() and item.suffix.lower() in HDR_IMAGE_SUFFIXES:
            found.append(item)
        else:
            raise ValueError(f"environment map {item} is not an .exr/.hdr file or a folder of "
                             "them; check the path")
    if not found:
        raise ValueError(f"no .exr/.hdr files in {', '.join(map(str, inputs))}; point at "
                         "equirectangular HDR maps")
    return found


def _load(map_path: Path, device: str) -> torch.Tensor:
    pixels = read_hdr_image(map_path)
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        raise ValueError(f"environment map {map_path} has shape {pixels.shape}; it needs RGB")
    return torch.from_numpy(pixels[..., :3].copy()).to(device)


def _check_folder(folder: Path, frames: int, overwrite: bool) -> list[Path]:
    """Frames of an earlier render in ``folder`` that this one would not replace."""
    existing = sorted(folder.iterdir()) if folder.is_dir() else []
    taken = [path for path in existing if _FRAME_FILE.match(path.name) or path.name == CAPTION_FILE]
    if taken and not overwrite:
        raise FileExistsError(f"{folder} already holds {taken[0].name} (and {len(taken) - 1} "
                              "more); pass --overwrite or pick another --output")
    return [path for path in taken if path.name != CAPTION_FILE
            and int(_FRAME_FILE.match(path.name).group(1)) > frames]


def render_clips(map_path: str | os.PathLike, output: str | os.PathLike,
                 settings: ClipSettings, *, caption: str | None = None, overwrite: bool = False,
                 device: str = "cpu") -> list[Path]:
    """Render ``settings.clips`` clips of one map into ``output``; return their folders.

    Everything is checked (settings, the map's shape and values, the caption, existing
    folders) before the first file is written. Raises ``ValueError`` (bad input, naming
    it and the fix) or ``FileExistsError`` (a clip folder in use, without ``overwrite``).
    """
    settings.check()
    map_path, output = Path(map_path), Path(output)
    text = name_caption(map_path) if caption is None else caption
    try:
        parse_caption(text)
    except ValueError as error:
        raise ValueError(f"--caption: {error}") from None
    environment = _load(map_path, device)
    paths = [settings.path(clip) for clip in range(settings.clips)]
    try:
        first = render_view(environment, settings.height, settings.width, settings.fov,
                            paths[0].yaw[0], paths[0].pitch[0], paths[0].roll[0],
                            supersample=settings.supersample)
    except ValueError as error:
        raise ValueError(f"{map_path}: {error}") from None
    folders = [output / f"{map_path.stem}_{clip:03d}" for clip in range(settings.clips)]
    stale = [path for folder in folders
             for path in _check_folder(folder, settings.frames, overwrite)]
    for path in stale:
        path.unlink()
    for folder, path in zip(folders, paths, strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        for index, angles in enumerate(zip(path.yaw, path.pitch, path.roll, strict=True)):
            frame = first if folder == folders[0] and index == 0 else render_view(
                environment, settings.height, settings.width, settings.fov, *angles,
                supersample=settings.supersample)
            write_exr(folder / FRAME_NAME.format(index + 1), frame.cpu(),
                      pixel_type=settings.pixel_type, overwrite=overwrite,
                      metadata={"hdriMap": map_path.name, "cameraFovDegrees": settings.fov,
                                "cameraYawPitchRollDegrees": list(angles)})
        with atomic_path(folder / CAPTION_FILE, overwrite=overwrite) as temporary:
            temporary.write_text(text + "\n", encoding="utf-8")
    return folders


def build_parser() -> argparse.ArgumentParser:
    """The ``render-hdri-clips`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m comfyui_hdr.training render-hdri-clips",
        description="Render scene-linear EXR clips of a camera panning and tilting inside "
                    "equirectangular HDR maps, in the folder layout train-lora reads.")
    parser.add_argument("maps", nargs="+", type=Path,
                        help="equirectangular (2:1) .exr/.hdr maps, or folders of them")
    parser.add_argument("--output", required=True, type=Path, help="folder for the clips")
    helps = {"width": "frame width in pixels", "height": "frame height in pixels",
             "fov": "horizontal field of view in degrees, in (0, 180)",
             "frames": "frames per clip (Wan and LTX-Video: 1 + 4k or 1 + 8k)",
             "speed": "angular speed in degrees per frame",
             "clips": "clips per map", "seed": "clip k's path is drawn from seed + k",
             "max_pitch": "the view's centre stays within this many degrees of the horizon",
             "max_heading": "largest angle of the move above/below horizontal (0: pure pans)",
             "supersample": "n: average n x n samples per pixel; raise it when the map has "
                            "several texels per frame pixel (a point-sampled sun aliases)",
             "pixel_type": "EXR pixel type (half refuses values above 65504)"}
    for name, default in vars(ClipSettings()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                            help=f"{helps[name]} (default {default})",
                            **({"choices": ("half", "float")} if name == "pixel_type" else {}))
    parser.add_argument("--caption", help="DiffHDR caption for every clip (default: made "
                        "from the map's file name)")
    parser.add_argument("--device", default="cpu", help="torch device to render on")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the frames and caption of existing clip folders")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``render-hdri-clips`` CLI; return the exit code (0, or 2 on bad input)."""
    arguments = build_parser().parse_args(argv)
    settings = ClipSettings(**{name: getattr(arguments, name) for name in vars(ClipSettings())})
    try:
        for map_path in environment_maps(arguments.maps):
            folders = render_clips(map_path, arguments.output, settings,
                                   caption=arguments.caption, overwrite=arguments.overwrite,
                                   device=arguments.device)
            print(f"{map_path.name}: {len(folders)} clips of {settings.frames} frames "
                  f"in {arguments.output}")
    except (ValueError, FileExistsError) as error:
        print(f"render-hdri-clips: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
