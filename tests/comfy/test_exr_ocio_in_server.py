"""EXR and OCIO nodes in the real server: the shipped workflows over the API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import charts, exr, ocio

pytestmark = pytest.mark.comfy

ACES_SDR = ("sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")


def _api(name: str) -> dict:
    return load_workflow(name)


def _save_float(node: str, prefix: str) -> dict:
    return {"class_type": "HDRSaveFloatArray",
            "inputs": {"image": [node, 0], "filename_prefix": prefix}}


def _exr_paths(comfy_server, outputs: dict, node_id: str) -> list[Path]:
    return [comfy_server.output_dir / entry["subfolder"] / entry["filename"]
            for entry in outputs[node_id]["exr_files"]]


def test_chart_preview_and_save_exr_workflow_writes_the_chart_above_1(comfy_server,
                                                                      comfy_client):
    prompt = _api("chart_ocio_preview_save_exr")
    prompt["9"] = _save_float("2", "test/ocio_display")
    result = comfy_client.run(prompt)

    (path,) = _exr_paths(comfy_server, result.outputs, "3")
    chart = charts.test_chart(width=512, height=288, gamut="rec709", sun_stops=10.0).numpy()
    image = exr.read_exr(path, dtype=None)
    # Stored as half: exactly the chart rounded to the nearest half float, sun 184.32 -> 184.25.
    np.testing.assert_array_equal(image.pixels, chart.astype(np.float16))
    assert image.pixels.max() > 100
    assert image.colourspace == "Linear Rec.709 (sRGB)"
    assert image.header["chromaticities"][:2] == pytest.approx((0.64, 0.33))
    assert json.loads(image.header["comfyui:prompt"])["3"]["class_type"] == "HDRSaveEXR"
    # /view serves the same bytes.
    entry = result.outputs["3"]["exr_files"][0]
    assert comfy_client.view(entry["filename"], entry["subfolder"]) == path.read_bytes()
    # The preview node's display image equals OCIO's own processor (lossless) to 1e-6.
    (array_entry,) = result.outputs["9"]["hdr_arrays"]
    display = np.load(comfy_server.output_dir / array_entry["subfolder"]
                      / array_entry["filename"])[0]
    expected = ocio.display_view(chart, "Linear Rec.709 (sRGB)", *ACES_SDR)
    np.testing.assert_allclose(display, expected, rtol=0, atol=1e-6)
    # It also sent the viewer its float proxy and SDR picture.
    (view,) = result.outputs["2"]["hdr_view"]
    assert view["dtype"] == "float16" and (view["width"], view["height"]) == (512, 288)


def test_exr_sequence_exposure_and_layers_workflow(comfy_server, comfy_client, chart_plates):
    frames = chart_plates
    prompt = _api("exr_sequence_exposure_layers")
    prompt["4"]["inputs"]["filename_prefix"] = "test/plates_plus1"  # fresh counter
    result = comfy_client.run(prompt)

    paths = _exr_paths(comfy_server, result.outputs, "4")
    assert [p.name for p in paths] == [f"plates_plus1_0000{i}_.exr" for i in (1, 2, 3)]
    assert exr.list_layers(paths[0]) == {"linear": ("R", "G", "B"),
                                         "tonemapped": ("R", "G", "B")}
    for frame, path in zip(frames, paths, strict=True):
        linear = exr.read_exr(path, layer="linear", dtype=None).pixels
        np.testing.assert_array_equal(linear, (frame * 2).astype(np.float16))  # +1 stop, exact
        tonemapped = exr.read_exr(path, layer="tonemapped").pixels
        expected = ocio.display_view(frame * 2, "Linear Rec.709 (sRGB)", *ACES_SDR)
        # half storage of display values in [0, 1]: <= 2^-11 relative rounding.
        np.testing.assert_allclose(tonemapped, expected, rtol=2**-11, atol=2**-14)


def test_save_exr_never_overwrites_a_fixed_frame_unless_asked(comfy_server, comfy_client):
    prompt = _api("chart_ocio_preview_save_exr")
    save = prompt["3"]["inputs"]
    save.update(filename_prefix="test/fixed", start_frame=7, pixel_type="float")
    first = comfy_client.run(prompt)
    (path,) = _exr_paths(comfy_server, first.outputs, "3")
    before = path.read_bytes()
    save["metadata"] = "take=2"  # a changed input, so the server really runs it again
    with pytest.raises(Exception, match="already exists"):
        comfy_client.run(prompt)
    assert path.read_bytes() == before
    save["overwrite"] = True
    comfy_client.run(prompt)
    assert exr.read_exr(path).header["take"] == "2"


def test_load_exr_refuses_a_corrupt_file_with_its_name_and_the_server_stays_up(comfy_server,
                                                                              comfy_client):
    good = exr.write_exr(comfy_server.input_dir / "good.exr", np.ones((16, 16, 3), np.float32))
    (comfy_server.input_dir / "broken.exr").write_bytes(good.read_bytes()[:200])
    prompt = {"1": {"class_type": "HDRLoadEXR", "inputs": {"file": "broken.exr"}},
              "2": _save_float("1", "test/broken")}
    with pytest.raises(Exception, match="broken.exr"):
        comfy_client.run(prompt)
    assert comfy_client.get_json("/system_stats")["system"]


def test_unknown_view_lists_the_valid_ones(comfy_server, comfy_client):
    prompt = _api("chart_ocio_preview_save_exr")
    prompt["2"]["inputs"]["display"] = "Rec.1886 Rec.709 - Display"
    prompt["2"]["inputs"]["view"] = "ACES 2.0 - HDR 1000 nits (P3 D65)"  # not on that display
    prompt["3"]["inputs"]["filename_prefix"] = "test/unknown_view"
    with pytest.raises(Exception, match="valid views") as error:
        comfy_client.run(prompt)
    assert "ACES 2.0 - SDR 100 nits (Rec.709)" in str(error.value)


def test_load_image_mask_into_save_exr_keeps_coverage_premultiplied(comfy_server, comfy_client):
    from PIL import Image

    # A straight-alpha PNG: colour everywhere, coverage from 0 (left) to 1 (right).
    rng = np.random.default_rng(15)
    rgb = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    coverage = np.tile(np.linspace(0, 255, 16).round().astype(np.uint8), (8, 1))
    Image.fromarray(np.dstack([rgb, coverage]), "RGBA").save(comfy_server.input_dir / "cut.png")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cut.png"}},
        "2": {"class_type": "HDRSaveEXR", "inputs": {
            "images": ["1", 0], "mask": ["1", 1], "filename_prefix": "test/coverage",
            "pixel_type": "float", "compression": "zip", "colourspace": "Linear Rec.709 (sRGB)",
            "overwrite": False}},
    }
    (path,) = _exr_paths(comfy_server, comfy_client.run(prompt).outputs, "2")
    image = exr.read_exr(path)
    # Load Image's MASK is 1 - A/255 (core polarity); Save EXR stores A = 1 - mask: the
    # PNG's coverage, to float32 rounding of the two subtractions.
    alpha = coverage.astype(np.float32) / 255
    np.testing.assert_allclose(image.alpha, alpha, rtol=0, atol=2**-24)
    # EXR colour is premultiplied: Load Image's straight colour times that alpha.
    np.testing.assert_allclose(image.pixels, rgb.astype(np.float32) / 255 * alpha[..., None],
                               rtol=2**-22, atol=0)
    assert image.pixels[:, 0].max() == 0  # fully transparent column adds no light
