"""Every public ``hdr/`` function keeps the device and dtype it is given, takes bf16/fp16
(or refuses it clearly) and never modifies its input.

The public callables are enumerated from the modules themselves, and a test fails when
one has no call recipe (``_recipes_*.py``) and is not a plain data type listed below, so
coverage cannot silently drop when a function is added. The contract each recipe is
checked against, and its tolerances, are in ``tests/_contract.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pytest
import torch
from _contract import assert_unmodified, check_case, snapshot
from _devices import is_array_function
from _recipes_colour import RECIPES as COLOUR
from _recipes_geometry import RECIPES as GEOMETRY
from _recipes_io import RECIPES as IO
from _recipes_models import RECIPES as MODELS

import comfyui_hdr.hdr as hdr_package
import comfyui_hdr.hdr.models as models_package

RECIPES = {**COLOUR, **GEOMETRY, **IO, **MODELS}

DATA_TYPES = {
    # Frozen dataclasses and named tuples: values with no computation of their own (their
    # validation runs in the recipes of the functions that build them).
    "charts.ChartLayout", "degrade_config.AppliedDegradation", "degrade_config.Contrast",
    "degrade_config.DegradationConfig", "degrade_config.DegradedPair",
    "degrade_config.ExposureShift", "degrade_config.H264Compression",
    "degrade_config.JpegCompression", "degrade_config.Quantisation",
    "degrade_config.SelectiveBlur", "degrade_config.ShadowNoise",
    "degrade_config.WhiteBalance", "exposure.HDRStats", "exr.ExrImage", "exr.Layer",
    "exr_sequence.ExrSequence", "gainmap.GainMap", "gainmap_metadata.GainMapMetadata",
    "gamut.Gamut", "jpeg_markers.MpEntry", "jpeg_markers.Segment", "masks.ExposureMasks",
    "prompts.ExposurePrompt", "radiance.RadianceImage", "radiance.RgbeConstants",
    "transfer.Curve", "transfer_camera.LogC3Parameters", "ultrahdr.UltraHDRImage",
    "models.hdr_vae.HDRAutoencoderOutput", "models.hdr_vae.HDRDecoderOutput",
    "models.hdr_vae.HDRVAELoss", "models.widen.ProjectionLayout",
    "jpeg_markers.FrameHeader", "ultrahdr_container.UltraHDRContainer",
    "exr.UnreadableExrError", "models.tone_field.ToneFieldOutput",
    "models.lumaflux.LumaFluxSwitches", "models.lumaflux_loss.LumaFluxLoss",
    "models.lumaflux_folder.LumaFluxAdapterSet",
    "camera_path.CameraPath",
}

# Functions that take no image or tensor (bytes, names, paths, header values; verify_lossy
# the float32 numpy of a file being written): there is no device or dtype to keep. Each is
# covered where its input is: the fuzz targets (tests/fuzz: decode_hdr, read_container,
# icc_gamut, frame_header) and the EXR checks' own tests (test_exr_value_safety.py,
# test_exr.py).
NO_ARRAY_INPUT = {
    "exr_checks.check_channel_names", "exr_checks.colourspace_note",
    "exr_checks.valid_name", "exr_checks.verify_lossy",
    "exr_sequence.match_sequence", "gamut.match_chromaticities", "jpeg_markers.frame_header",
    "radiance.decode_hdr", "ultrahdr_container.icc_gamut", "ultrahdr_container.read_container",
    "transfer.parse_curve", "transfer.lora_curve",  # a spec string, a JSON mapping
    "windows.stride_for_overlap",  # frame counts
    "transfer_fused.mode", "transfer_fused.failure",  # settings: an env variable, a device name
    # latent statistics are Python floats; their JSON file is read and written by path
    "models.latent_stats.read_latent_stats", "models.latent_stats.write_latent_stats",
}


def _modules():
    for package, prefix in ((hdr_package, ""), (models_package, "models.")):
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_") and not info.ispkg:
                yield prefix + info.name, importlib.import_module(
                    f"{package.__name__}.{info.name}")


def public_callables() -> set[str]:
    """``module.name`` of every public function and class defined in ``hdr/``."""
    found = set()
    for name, module in _modules():
        for attribute, value in vars(module).items():
            if (not attribute.startswith("_") and getattr(value, "__module__", None)
                    == module.__name__ and (inspect.isfunction(value) or inspect.isclass(value))):
                found.add(f"{name}.{attribute}")
    return found


def test_every_public_function_and_class_has_a_recipe_or_is_plain_data():
    public = public_callables()
    assert len(public) > 150  # the enumeration itself works (187 when this was written)
    assert sorted(public - RECIPES.keys() - DATA_TYPES - NO_ARRAY_INPUT) == []
    assert sorted((RECIPES.keys() | DATA_TYPES | NO_ARRAY_INPUT) - public) == []  # no stale
    assert not RECIPES.keys() & DATA_TYPES and not RECIPES.keys() & NO_ARRAY_INPUT


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_keeps_device_and_dtype_takes_half_inputs_and_never_modifies_them(name, device,
                                                                         tmp_path):
    check_case(RECIPES[name](device, tmp_path), name)


def _as_numpy(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().cpu().numpy()
    return value


def _resolve(name: str):
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(f"comfyui_hdr.hdr.{module}"), attribute)


NUMPY_RECIPES = sorted(name for name in RECIPES if is_array_function(_resolve(name)))


@pytest.mark.parametrize("name", NUMPY_RECIPES)
def test_numpy_inputs_come_back_as_numpy_and_unmodified(name, tmp_path):
    """``array_function``s view numpy inputs as tensors without copying: they must not
    write through that view."""
    case = RECIPES[name](torch.device("cpu"), tmp_path)
    assert case.function is _resolve(name)
    values = {key: _as_numpy(value) for key, value in case.named().items()}
    before = snapshot(values)
    result = case.with_values(values).run()
    assert_unmodified(before, values, name)
    first = result[0] if isinstance(result, tuple) else result
    assert isinstance(first, (np.ndarray, float)), f"{name} returned {type(first).__name__}"


def test_numpy_recipes_cover_every_array_function():
    assert len(NUMPY_RECIPES) >= 40
