"""Gain-map, tone-map and Ultra HDR nodes in the real server, over the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import charts, exr, merge, tonemap, transfer, ultrahdr

pytestmark = pytest.mark.comfy



def _api(name: str) -> dict:
    return load_workflow(name)


def _saved(comfy_server, entry: dict) -> Path:
    return comfy_server.output_dir / entry["subfolder"] / entry["filename"]


def test_chart_to_ultrahdr_jpeg_rebuilds_the_hdr(comfy_server, comfy_client):
    result = comfy_client.run(_api("chart_gain_map_ultrahdr"))
    (entry,) = result.outputs["3"]["images"]
    decoded = ultrahdr.read_ultrahdr(_saved(comfy_server, entry))
    chart = charts.test_chart(width=512, height=288, sun_stops=5.0).numpy()
    luminance = lambda rgb: rgb @ np.array([0.2126, 0.7152, 0.0722])  # noqa: E731
    bright = luminance(chart) > 2**-6
    error = np.abs(luminance(decoded.hdr) - luminance(chart))[bright] / luminance(chart)[bright]
    # 1-channel 8-bit map at JPEG quality 95, base at 95: luminance within a few percent.
    assert np.median(error) < 0.01
    assert decoded.hdr.max() > 5.0  # the sun (0.18 * 32 = 5.76) is above SDR white


def test_ultrahdr_to_exr_workflow(comfy_server, comfy_client, workflow_inputs):
    result = comfy_client.run(_api("ultrahdr_to_exr"))
    (entry,) = result.outputs["2"]["exr_files"]
    path = _saved(comfy_server, entry)
    expected = ultrahdr.read_ultrahdr(workflow_inputs["ultrahdr"])
    stored = exr.read_exr(path, layer="").pixels
    np.testing.assert_allclose(stored, expected.hdr, rtol=2**-11, atol=2**-24)  # half storage
    assert set(exr.list_layers(path)) == {"", "sdr_base", "hdr_2_stops", "tonemapped"}
    # Gain Map Merge for a 2-stop display: ISO 21496-1 weight W = 2 / alternate headroom.
    two_stops = exr.read_exr(path, layer="hdr_2_stops").pixels
    expected_two = ultrahdr.read_ultrahdr(workflow_inputs["ultrahdr"],
                                          display_hdr_headroom_log2=2.0).hdr
    np.testing.assert_allclose(two_stops, expected_two, rtol=2e-3, atol=2e-3)
    # A 2-stop display peaks at 4x SDR white, shifted by the 1/64 offsets:
    # (1 + 1/64) * 2**2 - 1/64 = 4.046875.
    assert 1.0 < two_stops.max() <= 4.046875 + 1e-3


def test_tone_map_and_bracket_merge_nodes(comfy_server, comfy_client):
    chart = charts.test_chart(width=96, height=64, sun_stops=4.0)
    brackets = torch.stack([transfer.srgb_encode((chart * 2.0**ev).clamp(0, 1))
                            for ev in (-2.0, 0.0, 2.0)])
    np.save(comfy_server.input_dir / "brackets.npy", brackets.numpy())
    np.save(comfy_server.input_dir / "chart96.npy", chart.numpy())
    prompt = {
        "1": {"class_type": "HDRLoadFloatArray", "inputs": {"array": "brackets.npy"}},
        "2": {"class_type": "HDRMergeBrackets", "inputs": {
            "brackets": ["1", 0], "evs": "-2, 0, 2", "encoding": "srgb", "weighting": "hat",
            "align": "none"}},
        "3": {"class_type": "HDRSaveFloatArray", "inputs": {"image": ["2", 0],
                                                           "filename_prefix": "test/merged"}},
        "4": {"class_type": "HDRLoadFloatArray", "inputs": {"array": "chart96.npy"}},
        "5": {"class_type": "HDRToneMap", "inputs": {"image": ["4", 0], "operator": "bt2390"}},
        "6": {"class_type": "HDRSaveFloatArray", "inputs": {"image": ["5", 0],
                                                           "filename_prefix": "test/tonemapped"}},
    }
    result = comfy_client.run(prompt)
    merged = np.load(_saved(comfy_server, result.outputs["3"]["hdr_arrays"][0]))[0]
    np.testing.assert_array_equal(
        merged, merge.merge_brackets(brackets, [-2.0, 0.0, 2.0]).numpy())
    tonemapped = np.load(_saved(comfy_server, result.outputs["6"]["hdr_arrays"][0]))[0]
    expected = transfer.srgb_encode(tonemap.get_tone_mapper("bt2390")(chart).clamp(0, 1))
    np.testing.assert_allclose(tonemapped, expected.numpy(), rtol=0, atol=1e-6)


def test_load_ultrahdr_refuses_a_plain_jpeg_unless_asked(comfy_server, comfy_client):
    from PIL import Image

    Image.new("RGB", (32, 16), (128, 64, 32)).save(comfy_server.input_dir / "plain.jpg")
    prompt = {"1": {"class_type": "HDRLoadUltraHDR", "inputs": {
                  "image": "plain.jpg", "display_headroom_stops": 16.0, "sdr_only_ok": False}},
              "2": {"class_type": "HDRSaveFloatArray", "inputs": {
                  "image": ["1", 0], "filename_prefix": "test/plain"}}}
    with pytest.raises(Exception, match="gain map"):
        comfy_client.run(prompt)
    prompt["1"]["inputs"]["sdr_only_ok"] = True
    result = comfy_client.run(prompt)
    assert result.outputs["2"]["hdr_arrays"]


def test_brackets_workflow_recovers_the_scene_within_the_covered_range(comfy_server,
                                                                       comfy_client):
    result = comfy_client.run(load_workflow("brackets_merge"))
    (entry,) = result.outputs["10"]["exr_files"]
    merged = exr.read_exr(_saved(comfy_server, entry)).pixels
    chart = charts.test_chart(width=256, height=144, sun_stops=6.0).numpy()
    # Brackets at -2/0/+2 stops, unquantised sRGB codes, clipped at code 0.98: values from
    # about 2^-8 up to 0.98 * 4 are covered by some bracket. Half-float storage: 2^-11.
    covered = (chart > 2**-8) & (chart < 3.5)
    error = np.abs(merged - chart)[covered] / chart[covered]
    assert np.median(error) < 1e-3 and error.max() < 0.02
