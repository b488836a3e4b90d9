"""Save EXR / Load EXR in process with ComfyUI's folder_paths (issue 15): core MASK polarity,
premultiplied alpha, refusals that name the input, Load EXR confined to its folders, one
answer for missing and unreadable files, IS_CHANGED that sees re-rendered frames."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
import torch

from comfyui_hdr.hdr import exr, exr_sequence
from comfyui_hdr.nodes._input_paths import ALLOW_LIST_KEY
from comfyui_hdr.nodes.exr_io import HDRLoadEXR, HDRSaveEXR


@pytest.fixture
def folders(tmp_path):
    """ComfyUI's input, output and temp folders moved into ``tmp_path`` for one test."""
    import folder_paths

    saved = (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
             folder_paths.get_temp_directory())
    for name in ("input", "output", "temp", "elsewhere"):
        (tmp_path / name).mkdir()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    folder_paths.set_temp_directory(str(tmp_path / "temp"))
    try:
        yield tmp_path
    finally:
        folder_paths.set_input_directory(saved[0])
        folder_paths.set_output_directory(saved[1])
        folder_paths.set_temp_directory(saved[2])
        folder_paths.folder_names_and_paths.pop(ALLOW_LIST_KEY, None)


def _save(folders, images, prefix="t/f", **options):
    options = {"pixel_type": "float", "compression": "zip", "colourspace":
               "Linear Rec.709 (sRGB)", "overwrite": False, **options}
    result = HDRSaveEXR().save(images, prefix, **options)
    return [folders / "output" / entry["subfolder"] / entry["filename"]
            for entry in result["ui"]["exr_files"]]


def _raw(path: Path) -> dict[str, np.ndarray]:
    return {name: channel.pixels for name, channel in
            OpenEXR.File(str(path), separate_channels=True).channels().items()}


def _straight_rgb_and_core_mask() -> tuple[torch.Tensor, torch.Tensor]:
    """Straight colour (up to 1e4 where nothing covers it) and a core MASK (1 = transparent)."""
    rgb = torch.linspace(0.05, 4.0, 2 * 4 * 6 * 3, dtype=torch.float32).reshape(2, 4, 6, 3)
    rgb[:, :, 0] = 1e4  # a bright straight colour under zero coverage
    mask = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0, 0.0]).expand(2, 4, 6).contiguous()
    return rgb, mask


def test_core_mask_is_stored_as_coverage_and_colour_premultiplied(folders):
    rgb, mask = _straight_rgb_and_core_mask()
    first = _save(folders, rgb, mask=mask)[0]
    channels = _raw(first)
    coverage = 1 - mask[0].numpy()
    np.testing.assert_array_equal(channels["A"], coverage)  # 1 - mask, exact in float32
    for index, name in enumerate("RGB"):  # RGB * A, as numpy multiplies float32
        np.testing.assert_array_equal(channels[name], rgb[0, ..., index].numpy() * coverage)
    assert channels["R"][:, 0].max() == 0  # no light added where nothing is covered
    straight = _raw(_save(folders, rgb, prefix="t/straight", mask=mask, premultiply=False)[0])
    np.testing.assert_array_equal(straight["R"], rgb[0, ..., 0].numpy())


def test_rgba_image_alpha_is_premultiplied_and_a_constant_mask_fits_any_size(folders):
    rgb, mask = _straight_rgb_and_core_mask()
    rgba = torch.cat([rgb, (1 - mask)[..., None]], -1)
    channels = _raw(_save(folders, rgba, prefix="t/rgba")[0])
    np.testing.assert_array_equal(channels["G"], rgb[0, ..., 1].numpy() * (1 - mask[0].numpy()))
    # Load Image's mask for a picture without alpha: 64 x 64 zeros, i.e. opaque everywhere.
    opaque = _raw(_save(folders, rgb, prefix="t/opaque", mask=torch.zeros(1, 64, 64))[0])
    assert (opaque["A"] == 1).all()
    np.testing.assert_array_equal(opaque["B"], rgb[0, ..., 2].numpy())


@pytest.mark.parametrize("mask, message", [
    (torch.full((2, 4, 6), 1.5), r"mask has values from 1\.5 to 1\.5, outside 0\.\.1"),
    (torch.rand(2, 3, 6), r"mask has shape \(2, 3, 6\) but images are \(2, 4, 6\)"),
])
def test_bad_masks_are_refused_with_the_fix(folders, mask, message):
    with pytest.raises(ValueError, match=message):
        _save(folders, _straight_rgb_and_core_mask()[0], mask=mask)
    assert not list((folders / "output").rglob("*.exr"))


def test_value_refusals_name_the_node_input_and_the_fix(folders):
    rgb = torch.full((1, 8, 8, 3), 0.18)
    rgb[0, 0, 0] = 1e6
    with pytest.raises(ValueError, match=r"^images \(layer ''\): compression 'dwaa' would change "
                       r"channel 'R' beyond quantisation \(its largest \|value\| 1e\+06 came "
                       r"back as 6[45]\d\d\d\); DWAA codes .* use compression zip or piz"):
        _save(folders, rgb, compression="dwaa")
    with pytest.raises(ValueError, match=r"^extra_layer_1 \(layer 'tonemapped'\) has 3 values "
                       r"beyond half's range.*use pixel_type='float'"):
        _save(folders, torch.full((1, 8, 8, 3), 0.18), pixel_type="half", extra_layer_1=rgb,
              extra_layer_1_name="tonemapped")
    assert not list((folders / "output").rglob("*.exr"))


def _load(**inputs):
    return HDRLoadEXR().load(inputs.pop("file", ""), **inputs)


def test_load_unpremultiplies_and_returns_the_core_mask(folders):
    rgb, mask = _straight_rgb_and_core_mask()
    path = _save(folders, rgb[:1], mask=mask[:1])[0]
    os.replace(path, folders / "input" / "rgba.exr")
    image, loaded_mask, header = _load(file="rgba.exr")
    np.testing.assert_allclose(loaded_mask, mask[:1], rtol=0, atol=2**-24)
    covered = mask[:1] < 1
    # (c * a) / a is c to float32 rounding; uncovered pixels keep the stored 0.
    np.testing.assert_allclose(image[covered], rgb[:1][covered], rtol=2**-22)
    assert (image[~covered] == 0).all()
    as_stored, _, _ = _load(file="rgba.exr", unpremultiply=False)
    np.testing.assert_array_equal(as_stored[0, ..., 0], _raw(folders / "input/rgba.exr")["R"])
    exr.write_exr(folders / "input" / "rgb.exr", rgb[0])
    _, opaque, _ = _load(file="rgb.exr")
    assert opaque.shape == (1, 4, 6) and (opaque == 0).all()  # no alpha: opaque (core: 0)


def test_chromaticities_name_the_colourspace_in_the_header_text(folders):
    (folders / "input" / "plates").mkdir()
    for frame in (1, 2):
        exr.write_exr(folders / "input" / "plates" / f"p_{frame:04d}.exr", np.ones((2, 2, 3)),
                      gamut="rec2020")
    for inputs in ({"file": "plates/p_0001.exr"}, {"path": "plates/p_%04d.exr"}):
        header = json.loads(_load(**inputs)[2])
        assert header["colourspace"] == "Linear Rec.2020"
        assert header["notes"][0].startswith("no colourspace attribute: read as 'Linear "
                                             "Rec.2020' (scene-linear assumed) because the "
                                             "chromaticities are ITU-R BT.2020-2")


@pytest.mark.parametrize("path, message", [
    ("../secret.exr", r"path '\.\./secret\.exr' contains '\.\.' or NUL"),
    ("plates/../../secret.exr", "contains '..'"),
    ("{elsewhere}/secret.exr", r"is outside ComfyUI's input folder and the folders listed "
                               r"under 'hdr_exr_inputs' in extra_model_paths\.yaml"),
    ("{elsewhere}/*.exr", "is outside ComfyUI's input folder"),
    ("{elsewhere}/missing_%05d.exr", "is outside ComfyUI's input folder"),
    ("link/secret.exr", "is outside ComfyUI's input folder"),  # a symlink leaving it
])
def test_paths_outside_the_input_folder_are_refused(folders, path, message):
    exr.write_exr(folders / "elsewhere" / "secret.exr", np.ones((2, 2, 3)))
    (folders / "input" / "link").symlink_to(folders / "elsewhere")
    with pytest.raises(ValueError, match=message):
        _load(path=path.format(elsewhere=folders / "elsewhere"))
    assert math.isnan(HDRLoadEXR.IS_CHANGED("", path=path.format(elsewhere=folders / "elsewhere")))


def test_a_listed_folder_is_readable_by_absolute_path(folders):
    import folder_paths

    exr.write_exr(folders / "elsewhere" / "plate.exr", np.full((2, 2, 3), 7.0, np.float32))
    folder_paths.add_model_folder_path(ALLOW_LIST_KEY, str(folders / "elsewhere"))
    image, _, _ = _load(path=str(folders / "elsewhere" / "plate.exr"))
    assert (image == 7.0).all()


def test_missing_unreadable_and_folder_names_get_one_answer(folders):
    good = exr.write_exr(folders / "input" / "good.exr", np.ones((16, 16, 3), np.float32))
    (folders / "input" / "broken.exr").write_bytes(good.read_bytes()[:200])
    (folders / "input" / "text.exr").write_text("not an image")
    (folders / "input" / "folder.exr").mkdir()
    answers = set()
    for name in ("missing.exr", "broken.exr", "text.exr", "folder.exr", "gone_%05d.exr"):
        with pytest.raises(ValueError) as error:
            _load(path=name)
        assert f"Load EXR cannot read {name!r}: no readable OpenEXR file" in str(error.value)
        answers.add(str(error.value).replace(repr(name), "NAME"))
    assert len(answers) == 1


def test_is_changed_follows_the_matched_files_names_sizes_and_times(folders):
    plates = folders / "input" / "plates"
    plates.mkdir()
    frames = np.ones((2, 4, 4, 3), np.float32)
    exr_sequence.write_exr_sequence(plates, "shot", frames)
    first = HDRLoadEXR.IS_CHANGED("", path="plates/shot_%05d_.exr")
    assert HDRLoadEXR.IS_CHANGED("", path="plates/shot_%05d_.exr") == first
    second = plates / "shot_00002_.exr"
    exr.write_exr(second, np.random.default_rng(0).random((4, 4, 3)), overwrite=True)
    os.utime(second, ns=(second.stat().st_atime_ns, second.stat().st_mtime_ns + 10**9))
    rerendered = HDRLoadEXR.IS_CHANGED("", path="plates/shot_%05d_.exr")
    assert rerendered != first
    exr_sequence.write_exr_sequence(plates, "shot", frames[:1])  # a third frame appears
    assert HDRLoadEXR.IS_CHANGED("", path="plates/shot_%05d_.exr") not in (first, rerendered)
    assert math.isnan(HDRLoadEXR.IS_CHANGED("", path="plates/none_%05d_.exr"))
