"""Call recipes for the file formats, OCIO, generators and helpers of ``hdr/``.

Writers are called through a wrapper that picks a fresh file name on every call (the
contract calls each function three times) and the comparison reads the file back, so a
bf16/fp16 image must write the same file contents as its float32 widening, to half's
rounding.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import PIL.ImageCms
from _contract import call, expect, scene

from comfyui_hdr.hdr import (
    atomic,
    charts,
    exr,
    exr_checks,
    exr_sequence,
    gainmap_metadata,
    jpeg_markers,
    ocio,
    prompts,
    radiance,
    scenes,
    ultrahdr,
    windows,
)
from comfyui_hdr.hdr.gainmap_metadata import GainMapMetadata

_NAMES = itertools.count()
_METADATA = GainMapMetadata(gain_map_min=-0.5, gain_map_max=3.0, alternate_hdr_headroom=3.0)
_ACES_VIEW = ("sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")


def _fresh(folder: Path, suffix: str) -> Path:
    return folder / f"file_{next(_NAMES)}{suffix}"


def _atomic_write(path: Path) -> bytes:
    with atomic.atomic_path(path) as temporary:
        temporary.write_bytes(b"scene-linear")
    return path.read_bytes()


def _write_exr(folder: Path, image):
    return exr.write_exr(_fresh(folder, ".exr"), image, pixel_type="float")


def _write_sequence(folder: Path, frames):
    return exr_sequence.write_exr_sequence(folder, f"seq{next(_NAMES)}", frames,
                                           pixel_type="float")


def _sequence_pixels(paths) -> np.ndarray:
    return np.stack([exr.read_exr(path).pixels for path in paths])


def _write_hdr(folder: Path, image):
    return radiance.write_hdr(_fresh(folder, ".hdr"), image)


def _write_ultrahdr(folder: Path, image):
    return ultrahdr.write_ultrahdr(_fresh(folder, ".jpg"), image)


@functools.cache
def _ultrahdr_bytes() -> bytes:
    return ultrahdr.encode_ultrahdr(scene("cpu", (16, 16, 3), low=-2, high=3)[..., :3])


def _segments():
    return jpeg_markers.read_segments(_ultrahdr_bytes())


def _mpf_body() -> bytes:
    found = jpeg_markers.app_payload(_segments()[0], jpeg_markers.MARKERS.app2,
                                     jpeg_markers.SIGNATURES.mpf)
    return found.payload


def _srgb_icc() -> bytes:
    return PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("sRGB")).tobytes()


def _saved(tmp: Path, writer, image):
    """A file written once (for the readers' recipes)."""
    path = _fresh(tmp, writer)
    {".exr": lambda: exr.write_exr(path, image),
     ".hdr": lambda: radiance.write_hdr(path, image),
     ".jpg": lambda: path.write_bytes(_ultrahdr_bytes())}[writer]()
    return path


def _exr_back(path: Path) -> np.ndarray:
    return exr.read_exr(path).pixels


def _hdr_back(path: Path) -> np.ndarray:
    return radiance.read_hdr(path).pixels


def _ultrahdr_back(path: Path) -> np.ndarray:
    return ultrahdr.read_ultrahdr(path).hdr

RECIPES = {
    "exr_checks.non_finite_message": lambda d, t: expect(
        call(exr_checks.non_finite_message, scene(d).log2() - 7.0, "half", "images"),
        half="none"),
    "atomic.atomic_path": lambda d, t: expect(call(_atomic_write, _fresh(t, ".bin")),
                                              half="none"),
    # EXR: writers take tensors on any device, in any float dtype
    "exr.write_exr": lambda d, t: expect(call(_write_exr, t, scene(d)[0]), compare=_exr_back),
    "exr.list_layers": lambda d, t: expect(call(exr.list_layers, _saved(t, ".exr", scene(d)[0])),
                                           half="none"),
    "exr.read_exr": lambda d, t: expect(call(exr.read_exr, _saved(t, ".exr", scene(d)[0])),
                                        half="none"),
    "exr_sequence.sequence_paths": lambda d, t: expect(
        call(exr_sequence.sequence_paths, t, "shot", 3), half="none"),
    "exr_sequence.next_free_sequence": lambda d, t: expect(
        call(exr_sequence.next_free_sequence, t, "shot", 3), half="none"),
    "exr_sequence.write_exr_sequence": lambda d, t: expect(
        call(_write_sequence, t, scene(d)), compare=_sequence_pixels),
    "exr_sequence.read_exr_sequence": lambda d, t: expect(
        call(exr_sequence.read_exr_sequence,
             exr_sequence.write_exr_sequence(t, "read", scene(d))[0].parent / "read_*.exr"),
        half="none"),
    # Radiance: numpy in the module, torch tensors accepted from any device
    "radiance.decode_rgbe": lambda d, t: expect(
        call(radiance.decode_rgbe, np.array([[128, 64, 32, 129]], np.uint8)), half="none"),
    "radiance.encode_rgbe": lambda d, t: expect(call(radiance.encode_rgbe, scene(d)),
                                                output="cpu"),
    "radiance.read_hdr": lambda d, t: expect(call(radiance.read_hdr,
                                                  _saved(t, ".hdr", scene(d)[0])), half="none"),
    "radiance.write_hdr": lambda d, t: expect(call(_write_hdr, t, scene(d)[0]),
                                              compare=_hdr_back),
    # Ultra HDR: the encoder works in float32 on the CPU (JPEG pixels go through Pillow)
    "ultrahdr.encode_ultrahdr": lambda d, t: expect(
        call(ultrahdr.encode_ultrahdr, scene(d, low=-2, high=3)[0]),
        compare=lambda data: ultrahdr.decode_ultrahdr(data).hdr),
    "ultrahdr.write_ultrahdr": lambda d, t: expect(
        call(_write_ultrahdr, t, scene(d, low=-2, high=3)[0]), compare=_ultrahdr_back),
    "ultrahdr.decode_ultrahdr": lambda d, t: expect(call(ultrahdr.decode_ultrahdr,
                                                         _ultrahdr_bytes()), half="none"),
    "ultrahdr.read_ultrahdr": lambda d, t: expect(call(ultrahdr.read_ultrahdr,
                                                       _saved(t, ".jpg", None)), half="none"),
    # JPEG containers and gain map metadata: bytes and strings only
    "jpeg_markers.segment": lambda d, t: expect(call(jpeg_markers.segment, 0xE2, b"x"),
                                                half="none"),
    "jpeg_markers.read_segments": lambda d, t: expect(
        call(jpeg_markers.read_segments, _ultrahdr_bytes()), half="none"),
    "jpeg_markers.app_payload": lambda d, t: expect(
        call(jpeg_markers.app_payload, _segments()[0], jpeg_markers.MARKERS.app2,
             jpeg_markers.SIGNATURES.mpf), half="none"),
    "jpeg_markers.icc_profile": lambda d, t: expect(
        call(jpeg_markers.icc_profile, _segments()[0]), half="none"),
    "jpeg_markers.insertion_point": lambda d, t: expect(
        call(jpeg_markers.insertion_point, _ultrahdr_bytes()), half="none"),
    "jpeg_markers.insert_segments": lambda d, t: expect(
        call(jpeg_markers.insert_segments, _ultrahdr_bytes(),
             [jpeg_markers.segment(0xE3, b"note")]), half="none"),
    "jpeg_markers.mpf_payload": lambda d, t: expect(call(jpeg_markers.mpf_payload, 10, 5, 20),
                                                    half="none"),
    "jpeg_markers.parse_mpf": lambda d, t: expect(call(jpeg_markers.parse_mpf, _mpf_body()),
                                                  half="none"),
    "jpeg_markers.container_xmp": lambda d, t: expect(call(jpeg_markers.container_xmp, 1234),
                                                      half="none"),
    "jpeg_markers.icc_colorants": lambda d, t: expect(call(jpeg_markers.icc_colorants,
                                                           _srgb_icc()), half="none"),
    "jpeg_markers.assemble": lambda d, t: expect(
        call(jpeg_markers.assemble, _ultrahdr_bytes(), _ultrahdr_bytes(),
             gainmap_metadata.to_xmp(_METADATA), gainmap_metadata.to_iso_box(_METADATA),
             b"\0\0\0\0"), half="none"),
    "jpeg_markers.locate_gain_map": lambda d, t: expect(
        call(jpeg_markers.locate_gain_map, _ultrahdr_bytes(), *_segments()), half="none"),
    "gainmap_metadata.to_iso_box": lambda d, t: expect(
        call(gainmap_metadata.to_iso_box, _METADATA), half="none"),
    "gainmap_metadata.from_iso_box": lambda d, t: expect(
        call(gainmap_metadata.from_iso_box, gainmap_metadata.to_iso_box(_METADATA)),
        half="none"),
    "gainmap_metadata.to_xmp": lambda d, t: expect(call(gainmap_metadata.to_xmp, _METADATA),
                                                   half="none"),
    "gainmap_metadata.from_xmp": lambda d, t: expect(
        call(gainmap_metadata.from_xmp, gainmap_metadata.to_xmp(_METADATA)), half="none"),
    # OCIO: CPU processors; tensors come back on their device in their dtype
    "ocio.builtin_configs": lambda d, t: expect(call(ocio.builtin_configs), half="none"),
    "ocio.resolve_config": lambda d, t: expect(call(ocio.resolve_config), half="none"),
    "ocio.list_colourspaces": lambda d, t: expect(call(ocio.list_colourspaces), half="none"),
    "ocio.list_displays": lambda d, t: expect(call(ocio.list_displays), half="none"),
    "ocio.list_views": lambda d, t: expect(call(ocio.list_views, _ACES_VIEW[0]), half="none"),
    "ocio.list_looks": lambda d, t: expect(call(ocio.list_looks), half="none"),
    "ocio.interop_id": lambda d, t: expect(call(ocio.interop_id, "ACEScg"), half="none"),
    "ocio.display_view_processor": lambda d, t: expect(
        call(ocio.display_view_processor, "ACEScg", *_ACES_VIEW), half="none"),
    "ocio.colourspace_processor": lambda d, t: expect(
        call(ocio.colourspace_processor, "ACEScg", "ACES2065-1"), half="none"),
    "ocio.apply_processor": lambda d, t: call(
        ocio.apply_processor, ocio.colourspace_processor("ACEScg", "ACES2065-1"), scene(d)),
    "ocio.display_view": lambda d, t: call(ocio.display_view, scene(d), "ACEScg", *_ACES_VIEW),
    "ocio.convert": lambda d, t: call(ocio.convert, scene(d), "ACEScg", "ACES2065-1"),
    # generators: no input, float32 on the CPU (ComfyUI's IMAGE convention)
    "charts.colorchecker_24": lambda d, t: expect(call(charts.colorchecker_24, "ap1"),
                                                  half="none"),
    "charts.stop_ramp": lambda d, t: expect(call(charts.stop_ramp, 64, 8), half="none"),
    "charts.sun_disk": lambda d, t: expect(call(charts.sun_disk, 64, 64), half="none"),
    "charts.chart_layout": lambda d, t: expect(call(charts.chart_layout, 128, 72), half="none"),
    "charts.test_chart": lambda d, t: expect(call(charts.test_chart, 128, 72), half="none"),
    "scenes.hdr_scene": lambda d, t: expect(call(scenes.hdr_scene, 3, 16), half="none"),
    "scenes.hdr_scenes": lambda d, t: expect(call(scenes.hdr_scenes, [3, 4], 16), half="none"),
    "prompts.parse_exposure_prompt": lambda d, t: expect(
        call(prompts.parse_exposure_prompt, "[Overexposed: sky]; [Underexposed: trees]"),
        half="none"),
    # sampling windows: weights made on the device that blends with them
    "windows.window_starts": lambda d, t: expect(call(windows.window_starts, 20, 9, 4),
                                                 half="none"),
    "windows.blend_weights": lambda d, t: expect(
        call(windows.blend_weights, 20, [0, 4, 8, 11], 9, device=d), half="none", on=d,
        dtype="any"),
}
