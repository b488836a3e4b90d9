"""hdr.ocio against OpenColorIO's own processors (and colour-science for one conversion)."""

from __future__ import annotations

import colour
import numpy as np
import PyOpenColorIO as OCIO
import pytest
import torch

from comfyui_hdr.hdr import ocio

STUDIO = "ocio://studio-config-latest"
SDR_VIEW = ("sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")
LOSSLESS = OCIO.OptimizationFlags.OPTIMIZATION_LOSSLESS
# Both sides run OCIO's float32 CPU ops with the same lossless optimisation: bit-equal in
# practice; 1e-6 absolute leaves room for a different vectorised code path. (OCIO's default
# CPU processor also applies lossy optimisations, measured up to 2e-5 off on these views.)
TOLERANCE = 1e-6


def scene_linear(seed: int = 0) -> np.ndarray:
    """ACEScg pixels from 1e-3 to ~16 (four stops over diffuse white), plus a saturated red."""
    rng = np.random.default_rng(seed)
    pixels = (0.18 * 2.0 ** rng.uniform(-7, 6.5, (12, 16, 3))).astype(np.float32)
    pixels[0, 0] = (4.0, 0.01, 0.01)
    return pixels


def direct(config: OCIO.Config, transform: OCIO.Transform, pixels: np.ndarray) -> np.ndarray:
    result = np.ascontiguousarray(pixels, dtype=np.float32).copy()
    config.getProcessor(transform).getOptimizedCPUProcessor(LOSSLESS).applyRGB(result)
    return result


@pytest.mark.parametrize("display, view", [
    SDR_VIEW, ("sRGB - Display", "Un-tone-mapped"), ("Rec.2100-PQ - Display",
                                                     "ACES 2.0 - HDR 1000 nits (P3 D65)"),
    ("Display P3 - Display", "ACES 2.0 - SDR 100 nits (P3 D65)"),
])
def test_display_view_equals_a_directly_built_ocio_processor(display, view):
    config = OCIO.Config.CreateFromFile(STUDIO)
    pixels = scene_linear()
    expected = direct(config, OCIO.DisplayViewTransform(src="ACEScg", display=display,
                                                          view=view), pixels)
    result = ocio.display_view(pixels, "ACEScg", display, view)
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)
    assert result.dtype == np.float32 and result.shape == pixels.shape


def test_exposure_is_a_scene_linear_gain_of_two_to_the_stops():
    # The studio config's scene_linear role is ACEScg, so +1.5 stops of exposure on ACEScg
    # input must equal the view of the input multiplied by 2**1.5.
    pixels = scene_linear()
    brighter = ocio.display_view(pixels, "ACEScg", *SDR_VIEW, exposure_stops=1.5)
    expected = ocio.display_view(pixels * 2**1.5, "ACEScg", *SDR_VIEW)
    np.testing.assert_allclose(brighter, expected, rtol=0, atol=TOLERANCE)


def test_exposure_works_in_scene_linear_for_a_log_source():
    # For ACEScct input the gain still happens after decoding to scene-linear.
    config = OCIO.Config.CreateFromFile(STUDIO)
    linear = scene_linear()
    log = direct(config, OCIO.ColorSpaceTransform(src="ACEScg", dst="ACEScct"), linear)
    from_log = ocio.display_view(log, "ACEScct", *SDR_VIEW, exposure_stops=-2.0)
    from_linear = ocio.display_view(linear / 4, "ACEScg", *SDR_VIEW)
    np.testing.assert_allclose(from_log, from_linear, rtol=0, atol=1e-5)  # cct round trip


def test_look_equals_ocio_look_transform_before_the_view():
    config = OCIO.Config.CreateFromFile(STUDIO)
    look = "ACES 1.3 Reference Gamut Compression"
    pixels = scene_linear()
    pixels[1, 1] = (0.5, 2.0, -0.05)  # outside AP1's gamut hull: the look compresses it
    group = OCIO.GroupTransform([
        OCIO.LookTransform(src="ACEScg", dst="ACEScg", looks=look),
        OCIO.DisplayViewTransform(src="ACEScg", display=SDR_VIEW[0], view=SDR_VIEW[1])])
    result = ocio.display_view(pixels, "ACEScg", *SDR_VIEW, look=look)
    np.testing.assert_allclose(result, direct(config, group, pixels), rtol=0, atol=TOLERANCE)
    assert not np.allclose(result, ocio.display_view(pixels, "ACEScg", *SDR_VIEW))


def test_inverse_display_view_recovers_scene_linear_inside_the_sdr_range():
    pixels = scene_linear()[2:] * 0 + np.linspace(0.01, 1.0, 16, dtype=np.float32)[:, None]
    forward = ocio.display_view(pixels, "ACEScg", *SDR_VIEW, exposure_stops=1.0)
    inverse = ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=1.0,
                                          direction="inverse")
    np.testing.assert_allclose(ocio.apply_processor(inverse, forward), pixels, rtol=2e-3)


def test_convert_matches_ocio_and_colour_science():
    config = OCIO.Config.CreateFromFile(STUDIO)
    pixels = scene_linear()
    result = ocio.convert(pixels, "ACEScg", "ACES2065-1")
    expected = direct(config, OCIO.ColorSpaceTransform(src="ACEScg", dst="ACES2065-1"), pixels)
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)
    # colour-science's AP1 -> AP0 matrix in float64: float32 rounding of values up to ~16
    # bounds the difference at a few 1e-6 relative.
    reference = colour.RGB_to_RGB(pixels.astype(np.float64), "ACEScg", "ACES2065-1")
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)


def test_torch_tensors_keep_dtype_and_device_and_inputs_are_not_modified():
    pixels = torch.from_numpy(scene_linear()).to(torch.float64)
    before = pixels.clone()
    result = ocio.display_view(pixels, "ACEScg", *SDR_VIEW)
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float64
    assert result.device == pixels.device and torch.equal(pixels, before)
    expected = ocio.display_view(pixels.numpy().astype(np.float32), "ACEScg", *SDR_VIEW)
    np.testing.assert_array_equal(result.numpy().astype(np.float32), expected)


def test_alpha_passes_through_and_batches_keep_their_shape():
    rgba = np.concatenate([scene_linear(), np.full((12, 16, 1), 0.25, np.float32)], -1)
    batch = np.stack([rgba, rgba * 2])
    result = ocio.display_view(batch, "ACEScg", *SDR_VIEW)
    assert result.shape == batch.shape
    np.testing.assert_array_equal(result[..., 3], batch[..., 3])
    np.testing.assert_allclose(result[0, ..., :3],
                               ocio.display_view(rgba[..., :3], "ACEScg", *SDR_VIEW),
                               rtol=0, atol=TOLERANCE)


def test_large_images_split_across_threads_equal_one_pass():
    # 512 x 256 pixels is over the 2**16-pixel threshold: split into row blocks.
    pixels = np.tile(scene_linear(), (22, 32, 1))[:256, :512]
    processor = ocio.display_view_processor("ACEScg", *SDR_VIEW)
    single = np.ascontiguousarray(pixels).copy()
    processor.apply(OCIO.PackedImageDesc(single, 512, 256, 3))
    np.testing.assert_array_equal(ocio.apply_processor(processor, pixels), single)


def test_processor_cache_returns_the_same_object_for_the_same_key(tmp_path):
    first = ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=0.5)
    assert ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=0.5) is first
    assert ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=1.0) is not first
    assert ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=0.5,
                                       config=STUDIO) is first
    cg = ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=0.5,
                                     config="ocio://cg-config-latest")
    assert cg is not first  # same names, another config: another key
    config_file = tmp_path / "studio.ocio"
    config_file.write_text(ocio.resolve_config(STUDIO).serialize())
    from_file = ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=0.5,
                                            config=config_file)
    assert from_file is not first  # keyed by path + cache id, not by content alone
    assert ocio.display_view_processor("ACEScg", *SDR_VIEW, exposure_stops=0.5,
                                       config=str(config_file)) is from_file
    assert ocio.colourspace_processor("ACEScg", "ACEScct") is \
        ocio.colourspace_processor("ACEScg", "ACEScct")


def test_resolve_config_prefers_path_then_ocio_env_then_studio(tmp_path, monkeypatch):
    cg_file = tmp_path / "cg.ocio"
    cg_file.write_text(ocio.resolve_config("ocio://cg-config-latest").serialize())
    monkeypatch.delenv("OCIO", raising=False)
    assert ocio.resolve_config().getName().startswith("studio-config")
    monkeypatch.setenv("OCIO", str(cg_file))
    assert ocio.resolve_config().getName().startswith("cg-config")
    assert ocio.resolve_config(STUDIO).getName().startswith("studio-config")
    assert ocio.resolve_config() is ocio.resolve_config(cg_file)  # one load, cached
    monkeypatch.setenv("OCIO", str(tmp_path / "missing.ocio"))
    with pytest.raises(ValueError, match=r"missing\.ocio \(from \$OCIO\) is not a file"):
        ocio.resolve_config()


def test_bad_configs_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.ocio \(from path\) is not a file"):
        ocio.resolve_config(tmp_path / "nope.ocio")
    with pytest.raises(ValueError, match="built-in configs: ocio://default"):
        ocio.resolve_config("ocio://no-such-config")
    broken = tmp_path / "broken.ocio"
    broken.write_text("ocio_profile_version: 2\nroles: [\n")
    with pytest.raises(ValueError, match=r"broken\.ocio could not be loaded"):
        ocio.resolve_config(broken)


def test_listings_match_the_config():
    config = OCIO.Config.CreateFromFile(STUDIO)
    assert ocio.list_colourspaces() == list(config.getColorSpaceNames())
    assert ocio.list_displays()[0] == config.getDefaultDisplay() == "sRGB - Display"
    assert ocio.list_views("Rec.2100-PQ - Display") == list(
        config.getViews("Rec.2100-PQ - Display"))
    assert ocio.list_looks() == ["ACES 1.3 Reference Gamut Compression"]
    assert STUDIO in ocio.builtin_configs()
    assert ocio.interop_id("Linear Rec.709 (sRGB)") == "lin_rec709_scene"
    assert ocio.interop_id("lin_ap1") == "lin_ap1_scene"  # aliases resolve


@pytest.mark.parametrize("arguments, message", [
    (("Linear sRGB", *SDR_VIEW), "src 'Linear sRGB' is not in the OCIO config; valid "
                                 "colourspaces: sRGB - Display, .*ACEScg, .*Raw"),
    (("ACEScg", "sRGB", SDR_VIEW[1]), "display 'sRGB' is not in the OCIO config; valid "
                                      "displays: sRGB - Display, Display P3 - Display"),
    (("ACEScg", SDR_VIEW[0], "Filmic"), "view 'Filmic' is not a view of display 'sRGB - "
                                        "Display'; valid views: ACES 2.0 - SDR 100 nits"),
])
def test_unknown_names_list_the_valid_ones(arguments, message):
    with pytest.raises(ValueError, match=message):
        ocio.display_view(scene_linear(), *arguments)


def test_unknown_look_direction_and_shapes_are_refused():
    with pytest.raises(ValueError, match="look 'Kodak' is not in the OCIO config; valid "
                                         "looks: ACES 1.3 Reference Gamut Compression"):
        ocio.display_view(scene_linear(), "ACEScg", *SDR_VIEW, look="Kodak")
    with pytest.raises(ValueError, match="direction 'backward' is unknown"):
        ocio.display_view_processor("ACEScg", *SDR_VIEW, direction="backward")
    with pytest.raises(ValueError, match="exposure_stops=nan"):
        ocio.display_view(scene_linear(), "ACEScg", *SDR_VIEW, exposure_stops=float("nan"))
    with pytest.raises(ValueError, match=r"shape \(4, 4, 2\); pass \[\.\.\., 3\] RGB"):
        ocio.convert(np.zeros((4, 4, 2)), "ACEScg", "ACEScct")
    with pytest.raises(ValueError, match="dst 'LogC9' is not in the OCIO config"):
        ocio.convert(scene_linear(), "ACEScg", "LogC9")
