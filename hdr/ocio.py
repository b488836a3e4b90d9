"""OpenColorIO: configs, colourspace / display / view / look names, cached CPU processors.

A config is named by a ``.ocio`` file path, an ``ocio://`` built-in URI, or None: then
``$OCIO`` if set, else OCIO's built-in ACES studio config (``ocio://studio-config-latest``).
Every public function takes ``config`` as such a name or as an ``OCIO.Config``. Loaded configs
are cached by path (and file modification time) or URI; CPU processors are cached by the
config's identity (its path or URI plus OCIO's cache ID, which hashes its content and
context) and the transform's parameters, so a preview node never rebuilds one per frame.

Images are ``[..., 3]`` or ``[..., 4]`` numpy arrays or torch tensors; OCIO processes float32
on the CPU (alpha passes through). Results are new arrays: numpy comes back float32, torch in
the input's float dtype and device. Large images are split across CPU threads.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import PyOpenColorIO as OCIO
import torch

STUDIO_CONFIG = "ocio://studio-config-latest"
CG_CONFIG = "ocio://cg-config-latest"
_DIRECTIONS = {"forward": OCIO.TRANSFORM_DIR_FORWARD, "inverse": OCIO.TRANSFORM_DIR_INVERSE}
_PROCESSORS: OrderedDict[tuple, OCIO.CPUProcessor] = OrderedDict()
_PROCESSORS_LOCK = threading.Lock()
_PROCESSORS_MAX = 64
_PIXELS_PER_THREAD = 2**16


def builtin_configs() -> list[str]:
    """Return the ``ocio://`` URIs of the configs built into this OCIO.

    >>> "ocio://studio-config-latest" in builtin_configs()
    True
    """
    registry = OCIO.BuiltinConfigRegistry()
    names = [f"ocio://{name}" for name, *_ in registry.getBuiltinConfigs()]
    return ["ocio://default", CG_CONFIG, STUDIO_CONFIG] + names


@functools.lru_cache(maxsize=16)
def _load(source: str, stamp: tuple) -> OCIO.Config:
    try:
        return OCIO.Config.CreateFromFile(source)
    except OCIO.Exception as error:
        hint = f"; built-in configs: {', '.join(builtin_configs())}" * source.startswith("ocio:")
        raise ValueError(f"OCIO config {source} could not be loaded ({error}){hint}") from None


def _source(path: str | os.PathLike | None) -> str:
    origin = "path"
    if path is None:
        path, origin = os.environ.get("OCIO") or STUDIO_CONFIG, "$OCIO"
    path = os.fspath(path)
    if path.startswith("ocio://"):
        return path
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"OCIO config {path} (from {origin}) is not a file; pass a .ocio file, "
                         f"an ocio:// URI such as {STUDIO_CONFIG}, or None")
    return str(file.resolve())


def _config(config: Any) -> tuple[OCIO.Config, tuple[str, str]]:
    if isinstance(config, OCIO.Config):
        return config, ("<object>", config.getCacheID())
    source = _source(config)
    stamp = () if source.startswith("ocio://") else (os.stat(source).st_mtime_ns,)
    loaded = _load(source, stamp)
    return loaded, (source, loaded.getCacheID())


def resolve_config(path: str | os.PathLike | None = None) -> OCIO.Config:
    """Return the OCIO config: ``path`` (file or ``ocio://`` URI), else ``$OCIO``, else the
    built-in ACES studio config. Loaded configs are cached.

    >>> resolve_config("ocio://cg-config-latest").getName()[:9]
    'cg-config'
    """
    return _config(path)[0]


def list_colourspaces(config: Any = None) -> list[str]:
    """Return the colourspace names of ``config``, in the config's order.

    >>> list_colourspaces()[:2]
    ['sRGB - Display', 'Gamma 2.2 Rec.709 - Display']
    """
    return list(_config(config)[0].getColorSpaceNames())


def list_displays(config: Any = None) -> list[str]:
    """Return the display names of ``config``, the default display first."""
    return list(_config(config)[0].getDisplays())


def list_views(display: str, config: Any = None) -> list[str]:
    """Return the views of ``display``, its default view first.

    >>> list_views("sRGB - Display")[0]
    'ACES 2.0 - SDR 100 nits (Rec.709)'
    """
    loaded = _config(config)[0]
    _check_display(loaded, display)
    return list(loaded.getViews(display))


def list_looks(config: Any = None) -> list[str]:
    """Return the look names of ``config``."""
    return list(_config(config)[0].getLookNames())


def interop_id(colourspace: str, config: Any = None) -> str | None:
    """Return the Color Interop Forum ID of a colourspace (for EXR ``colorInteropID``), or None.

    >>> interop_id("ACEScg")
    'lin_ap1_scene'
    """
    loaded = _config(config)[0]
    _check_colourspace(loaded, colourspace, "colourspace")
    return loaded.getColorSpace(colourspace).getInteropID() or None


def _check_colourspace(config: OCIO.Config, name: str, argument: str) -> None:
    if not isinstance(name, str) or config.getColorSpace(name) is None:
        raise ValueError(f"{argument} {name!r} is not in the OCIO config; valid colourspaces: "
                         f"{', '.join(config.getColorSpaceNames())}")


def _check_display(config: OCIO.Config, display: str) -> None:
    if display not in config.getDisplays():
        raise ValueError(f"display {display!r} is not in the OCIO config; valid displays: "
                         f"{', '.join(config.getDisplays())}")


def _check_view(config: OCIO.Config, display: str, view: str) -> None:
    _check_display(config, display)
    if view not in config.getViews(display):
        raise ValueError(f"view {view!r} is not a view of display {display!r}; valid views: "
                         f"{', '.join(config.getViews(display))}")


def _check_looks(config: OCIO.Config, look: str) -> None:
    for name in (part.strip().lstrip("+-") for part in look.split(",")):
        if config.getLook(name) is None:
            raise ValueError(f"look {name!r} is not in the OCIO config; valid looks: "
                             f"{', '.join(config.getLookNames()) or '(none)'}")


def _cached(key: tuple, build: Any) -> OCIO.CPUProcessor:
    with _PROCESSORS_LOCK:
        if key in _PROCESSORS:
            _PROCESSORS.move_to_end(key)
            return _PROCESSORS[key]
    processor = build().getOptimizedCPUProcessor(OCIO.OptimizationFlags.OPTIMIZATION_LOSSLESS)
    with _PROCESSORS_LOCK:
        processor = _PROCESSORS.setdefault(key, processor)
        while len(_PROCESSORS) > _PROCESSORS_MAX:
            _PROCESSORS.popitem(last=False)
    return processor


def _direction(direction: str) -> OCIO.TransformDirection:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction {direction!r} is unknown; use 'forward' or 'inverse'")
    return _DIRECTIONS[direction]


def display_view_processor(src: str, display: str, view: str, look: str | None = None,
                           exposure_stops: float = 0.0, config: Any = None,
                           direction: str = "forward") -> OCIO.CPUProcessor:
    """Return the cached CPU processor of a display/view transform (see :func:`display_view`)."""
    loaded, identity = _config(config)
    _check_colourspace(loaded, src, "src")
    _check_view(loaded, display, view)
    if look:
        _check_looks(loaded, look)
    if not math.isfinite(exposure_stops):
        raise ValueError(f"exposure_stops={exposure_stops!r} must be a finite number of stops")
    key = (identity, "display_view", src, display, view, look or "", float(exposure_stops),
           direction)

    def build() -> OCIO.Processor:
        transform = OCIO.DisplayViewTransform(src=src, display=display, view=view)
        if not look and not exposure_stops:
            return loaded.getProcessor(transform, _direction(direction))
        pipeline = OCIO.LegacyViewingPipeline()
        pipeline.setDisplayViewTransform(transform)
        if look:
            pipeline.setLooksOverrideEnabled(True)
            pipeline.setLooksOverride(look)
        if exposure_stops:
            pipeline.setLinearCC(OCIO.ExposureContrastTransform(
                style=OCIO.EXPOSURE_CONTRAST_LINEAR, exposure=float(exposure_stops)))
        group = pipeline.getProcessor(loaded).createGroupTransform()
        return loaded.getProcessor(group, _direction(direction))

    return _cached(key, build)


def colourspace_processor(src: str, dst: str, config: Any = None) -> OCIO.CPUProcessor:
    """Return the cached CPU processor converting colourspace ``src`` to ``dst``."""
    loaded, identity = _config(config)
    _check_colourspace(loaded, src, "src")
    _check_colourspace(loaded, dst, "dst")
    return _cached((identity, "colourspace", src, dst),
                   lambda: loaded.getProcessor(src, dst))


def apply_processor(processor: OCIO.CPUProcessor, image: Any) -> Any:
    """Apply a CPU processor to a ``[..., 3]`` or ``[..., 4]`` array or tensor, returning a
    new one (numpy float32, or a tensor of the input's float dtype and device)."""
    is_tensor = isinstance(image, torch.Tensor)
    array = (image.detach().to("cpu", torch.float32 if image.is_floating_point() else None)
             .numpy() if is_tensor else np.asarray(image))
    if array.ndim == 0 or array.shape[-1] not in (3, 4):
        raise ValueError(f"image has shape {tuple(array.shape)}; pass [..., 3] RGB or "
                         "[..., 4] RGBA pixels")
    pixels = np.array(array, dtype=np.float32, order="C", copy=True)
    channels = pixels.shape[-1]
    rows = pixels.reshape(-1, pixels.shape[-2] if pixels.ndim > 1 else 1, channels)

    def run(block: np.ndarray) -> None:
        if block.size:
            processor.apply(OCIO.PackedImageDesc(block, block.shape[1], block.shape[0],
                                                 channels))

    threads = min(os.cpu_count() or 1, max(1, pixels.size // channels // _PIXELS_PER_THREAD))
    if threads > 1:  # OCIO's apply releases the GIL; its CPU path is single-threaded.
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, np.array_split(rows, threads)))
    else:
        run(rows)
    if is_tensor:
        dtype = image.dtype if image.is_floating_point() else torch.float32
        return torch.from_numpy(pixels).to(image.device, dtype)
    return pixels


def display_view(image: Any, src: str, display: str, view: str, look: str | None = None,
                 exposure_stops: float = 0.0, config: Any = None) -> Any:
    """Render scene-referred pixels for a display through an OCIO display/view transform.

    Parameters
    ----------
    image
        ``[..., 3]`` or ``[..., 4]`` pixels in colourspace ``src`` (numpy or torch).
    src, display, view, look
        OCIO names; unknown names raise ``ValueError`` listing the valid ones. ``look`` (one
        look or a comma-separated list) overrides the view's own looks.
    exposure_stops
        Exposure applied before the view as a scene-linear gain of ``2 ** exposure_stops``,
        in the config's ``scene_linear`` role (OCIO's viewing-pipeline linear CC, an
        ``ExposureContrastTransform``), so it also works for log sources.
    config
        Config file path, ``ocio://`` URI, ``OCIO.Config`` or None (``$OCIO``, else studio).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Display code values (e.g. sRGB-encoded for 'sRGB - Display').

    References
    ----------
    OpenColorIO 2.x documentation, "DisplayViewTransform", "LegacyViewingPipeline".

    >>> rgb = display_view(np.array([0.18, 0.18, 0.18], np.float32), "ACEScg",
    ...                    "sRGB - Display", "Un-tone-mapped")
    >>> rgb.round(4)
    array([0.4614, 0.4614, 0.4614], dtype=float32)
    """
    processor = display_view_processor(src, display, view, look, exposure_stops, config)
    return apply_processor(processor, image)


def convert(image: Any, src: str, dst: str, config: Any = None) -> Any:
    """Convert pixels from colourspace ``src`` to ``dst`` with OCIO (e.g. ACEScg to ACES2065-1).

    >>> convert(np.array([1.0, 0.0, 0.0], np.float32), "ACEScg", "ACES2065-1").round(4)
    array([ 0.6955,  0.0448, -0.0055], dtype=float32)
    """
    return apply_processor(colourspace_processor(src, dst, config), image)
