"""Save EXR / Load EXR beside ComfyUI's own EXR support (ComfyUI 0.33: "Save Image
(Advanced)" writes 32-bit float EXR with chromaticities, "Load Image" decodes through PyAV).

The oracle is the HDR test chart (scene-linear, sun at 0.18 * 2**10 = 184.32, small negatives
in its wide-gamut patches) as NumPy computes it, each file read back with the value its pixel
type can hold.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from comfyui_hdr.harness.queue import output_entries
from comfyui_hdr.hdr import charts, exr

pytestmark = pytest.mark.comfy

CHART = {"class_type": "HDRTestChart",
         "inputs": {"width": 512, "height": 288, "gamut": "rec709", "sun_stops": 10.0,
                    "frames": 1}}
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)  # BT.709-6 1.3/1.4


def chart() -> np.ndarray:
    return charts.test_chart(width=512, height=288, gamut="rec709", sun_stops=10.0).numpy()


def save_exr(prefix: str, pixel_type: str = "half", compression: str = "zip") -> dict:
    return {"class_type": "HDRSaveEXR",
            "inputs": {"images": ["1", 0], "filename_prefix": prefix, "pixel_type": pixel_type,
                       "compression": compression, "colourspace": "Linear Rec.709 (sRGB)",
                       "overwrite": False}}


def save_float(node: str, prefix: str) -> dict:
    return {"class_type": "HDRSaveFloatArray",
            "inputs": {"image": [node, 0], "filename_prefix": prefix}}


def saved_array(comfy_server, outputs: dict, node: str) -> np.ndarray:
    (entry,) = outputs[node]["hdr_arrays"]
    return np.load(comfy_server.output_dir / entry["subfolder"] / entry["filename"])


def to_input(comfy_server, entry: dict, name: str) -> str:
    shutil.copy(comfy_server.output_dir / entry["subfolder"] / entry["filename"],
                comfy_server.input_dir / name)
    return name


@pytest.mark.smoke
def test_save_exr_reports_its_files_under_images_where_core_reports_its_exrs(comfy_client,
                                                                             object_info):
    result = comfy_client.run({"1": CHART, "2": save_exr("interop/reported")})
    ui = result.outputs["2"]
    (entry,) = ui["exr_files"]
    assert entry["filename"].endswith(".exr") and entry["type"] == "output"
    if "SaveImageAdvanced" in object_info:  # ComfyUI 0.33: the frontend lists EXR images
        assert ui["images"] == ui["exr_files"]
        # The job's preview (Media Assets' entry, /api/jobs) is the EXR itself.
        jobs = comfy_client.get_json("/api/jobs?status=completed&limit=50")["jobs"]
        (job,) = [job for job in jobs if job["id"] == result.prompt_id]
        assert {key: job["preview_output"][key] for key in entry} == entry
        assert job["preview_output"]["mediaType"] == "images"
    else:  # ComfyUI 0.3.75 and frontend 1.32.9: an .exr image would show as a broken picture
        assert "images" not in ui
    # Reported twice, downloaded once.
    assert [e["filename"] for e in output_entries(result.outputs)
            if e["type"] == "output"] == [entry["filename"]]


def test_core_save_image_advanced_exr_loads_through_load_exr_bit_exact(comfy_server,
                                                                       comfy_client):
    core = {"class_type": "SaveImageAdvanced",
            "inputs": {"images": ["1", 0], "filename_prefix": "interop/core",
                       "format": "exr", "format.bit_depth": "32-bit float",
                       "format.input_color_space": "linear"}}
    written = comfy_client.run({"1": CHART, "2": core}).outputs["2"]["images"]
    (entry,) = written
    path = comfy_server.output_dir / entry["subfolder"] / entry["filename"]
    header = exr.read_exr(path, dtype=None).header
    assert header["chromaticities"] == pytest.approx(REC709_CHROMATICITIES, abs=1e-6)
    name = to_input(comfy_server, entry, "interop_core.exr")

    loaded = comfy_client.run({
        "1": {"class_type": "HDRLoadEXR", "inputs": {"file": name}},
        "2": save_float("1", "interop/core_through_load_exr"),
    })
    pixels = saved_array(comfy_server, loaded.outputs, "2")
    # 32-bit float in, 32-bit float out: every value exactly, the sun at 184.32 and the
    # negative wide-gamut patches included.
    np.testing.assert_array_equal(pixels[0], chart())
    assert pixels.max() == pytest.approx(184.32, rel=1e-7) and pixels.min() < 0


@pytest.mark.parametrize("compression", ["zip", "piz", "none"])
def test_save_exr_float_file_loads_through_core_load_image_bit_exact(comfy_server,
                                                                     comfy_client, compression):
    written = comfy_client.run({"1": CHART,
                                "2": save_exr(f"interop/float_{compression}", "float",
                                              compression)})
    name = to_input(comfy_server, written.outputs["2"]["exr_files"][0],
                    f"interop_float_{compression}.exr")
    loaded = comfy_client.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                               "2": save_float("1", f"interop/load_image_{compression}")})
    pixels = saved_array(comfy_server, loaded.outputs, "2")
    # PyAV decodes 32-bit float EXR as gbrpf32le: nothing clamped, nothing rounded.
    np.testing.assert_array_equal(pixels[0], chart())
    assert pixels.max() == pytest.approx(184.32, rel=1e-7) and pixels.min() < 0


def test_core_load_image_clamps_half_exr_to_0_1(comfy_server, comfy_client):
    """Measured on ComfyUI 0.33.0 (PyAV 18.1, libavcodec 62): a half EXR decodes as
    gbrpf16le and Load Image's conversion to gbrpf32le goes through 16-bit integers, so
    values are clamped to [0, 1] (negatives read 3/65535) and values inside move by up to
    2.74e-4. Hand core's Load Image a float EXR (Save EXR pixel_type "float"); Load EXR keeps
    half files intact."""
    written = comfy_client.run({"1": CHART, "2": save_exr("interop/half_zip")})
    name = to_input(comfy_server, written.outputs["2"]["exr_files"][0], "interop_half.exr")
    loaded = comfy_client.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                               "2": save_float("1", "interop/load_image_half")})
    pixels = saved_array(comfy_server, loaded.outputs, "2")[0]
    stored = chart().astype(np.float16).astype(np.float64)
    assert stored.max() > 184 and stored.min() < 0
    # The oracle: the stored half value clipped to [0, 1]; 3e-4 covers the conversion's
    # measured 2.74e-4 (about 18 steps of 1/65535).
    np.testing.assert_allclose(pixels, np.clip(stored, 0.0, 1.0), rtol=0, atol=3e-4)
    assert pixels.max() == pytest.approx(1.0, abs=3e-4) and pixels.min() >= 0
