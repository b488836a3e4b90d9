"""The pack inside a real ComfyUI 0.3.75 server: it loads, and its graphs run over the API."""

from __future__ import annotations

import io

import numpy as np
import pytest

import comfyui_hdr
from comfyui_hdr.harness.workflow import load_workflow
from comfyui_hdr.hdr import charts, transfer

pytestmark = [pytest.mark.comfy, pytest.mark.smoke]



def _load_api(name: str) -> dict:
    return load_workflow(name)


def test_pack_imports_without_errors_in_the_server_log(comfy_server, object_info):
    log = comfy_server.log()
    assert "comfyui_hdr" in log, "the server never tried to import the pack"
    import_lines = [line for line in log.splitlines() if "comfyui_hdr" in line]
    assert not any("IMPORT FAILED" in line or "Traceback" in line for line in import_lines), log


def test_every_node_of_the_pack_is_registered_with_tooltips(object_info):
    for key in comfyui_hdr.NODE_CLASS_MAPPINGS:
        assert key in object_info, f"{key} missing from /object_info"
        node = object_info[key]
        assert node["category"].startswith("HDR/"), (key, node["category"])
        assert node["display_name"] == comfyui_hdr.NODE_DISPLAY_NAME_MAPPINGS[key]
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{key}.{name} has no tooltip"


def test_every_node_has_search_aliases_where_the_server_reads_them(comfy_server, object_info):
    """0.33 lists a classic node's SEARCH_ALIASES in /object_info (the node search matches
    them); 0.3.75 has no such field, and the pack still loads there."""
    from comfyui_hdr.nodes.search_aliases import SEARCH_ALIASES

    assert set(SEARCH_ALIASES) == set(comfyui_hdr.NODE_CLASS_MAPPINGS)
    for key, aliases in SEARCH_ALIASES.items():
        if comfy_server.bench.comfyui == "0.3.75":
            assert "search_aliases" not in object_info[key]
        else:
            assert object_info[key]["search_aliases"] == aliases
    if comfy_server.bench.comfyui != "0.3.75":
        assert "exr" in object_info["HDRSaveEXR"]["search_aliases"]


def _saved_array(comfy_server, outputs: dict, node_id: str) -> np.ndarray:
    (entry,) = outputs[node_id]["hdr_arrays"]
    return np.load(comfy_server.output_dir / entry["subfolder"] / entry["filename"])


def test_logc4_round_trip_graph_returns_the_chart_above_1_unclamped(comfy_server, comfy_client):
    prompt = _load_api("logc4_round_trip")
    result = comfy_client.run(prompt)

    assert "execution_success" in result.event_types()
    chart_inputs = prompt["1"]["inputs"]
    expected = charts.test_chart(width=chart_inputs["width"], height=chart_inputs["height"],
                                 gamut=chart_inputs["gamut"], sun_stops=chart_inputs["sun_stops"])
    chart = _saved_array(comfy_server, result.outputs, "6")[0]
    decoded = _saved_array(comfy_server, result.outputs, "5")[0]
    encoded = _saved_array(comfy_server, result.outputs, "7")[0]

    # The chart node is deterministic: bit-identical to the library call.
    np.testing.assert_array_equal(chart, expected.numpy())
    # The sun and the ramp's top step (10 stops over 0.18 = 184.32) survive the trip.
    assert decoded.max() == pytest.approx(0.18 * 2**10, rel=2e-6)
    assert (decoded > 1.0).sum() > 100
    # The encoded image is in code values: LogC4 maps 184.32 below code 1.0 (max ~469.8);
    # the out-of-709 cyan patch's negative red goes below code 0 (the linear toe), unclamped.
    assert encoded.max() < 1.0
    assert chart.min() < 0 and encoded.min() < 0
    np.testing.assert_allclose(encoded, transfer.logc4_encode(chart), rtol=0, atol=0)
    # float32 encode + decode: <= 2e-6 relative (the curve's documented round-trip bound),
    # plus 1e-9 absolute for the black patches of the ramp.
    np.testing.assert_allclose(decoded, chart, rtol=2e-6, atol=1e-9)

    (stats_text,) = result.outputs["4"]["text"]
    assert "peak 184.3" in stats_text, stats_text


def test_identical_prompt_is_served_from_cache_and_a_changed_one_writes_anew(comfy_server,
                                                                           comfy_client):
    prompt = _load_api("logc4_round_trip")
    prompt["1"]["inputs"]["sun_stops"] = 6.0
    first = comfy_client.run(prompt)
    second = comfy_client.run(prompt)
    assert not second.outputs or second.outputs == first.outputs
    prompt["1"]["inputs"]["sun_stops"] = 7.0
    third = comfy_client.run(prompt)
    assert third.outputs != first.outputs
    expected = charts.test_chart(width=256, height=144, gamut="rec709", sun_stops=7.0)
    np.testing.assert_array_equal(_saved_array(comfy_server, third.outputs, "6")[0],
                                  expected.numpy())


def test_hdr_metrics_node_reports_the_library_numbers_as_strict_json(comfy_server,
                                                                     comfy_client):
    import json
    import math

    from comfyui_hdr.hdr import metrics

    chart = charts.test_chart(width=96, height=64).numpy()
    np.save(comfy_server.input_dir / "metrics_truth.npy", chart)
    np.save(comfy_server.input_dir / "metrics_test.npy", chart * 1.1)
    prompt = {
        "1": {"class_type": "HDRLoadFloatArray", "inputs": {"array": "metrics_test.npy"}},
        "2": {"class_type": "HDRLoadFloatArray", "inputs": {"array": "metrics_truth.npy"}},
        "3": {"class_type": "HDRMetrics", "inputs": {"image": ["1", 0], "reference": ["2", 0],
                                                     "nits_at_1": 100.0, "jod": False}},
        # The stock "Preview Any" shows the node's STRING output as the server received it.
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }
    outputs = comfy_client.run(prompt).outputs
    (text,) = outputs["3"]["text"]
    expected = metrics.hdr_metrics(chart * 1.1, chart, nits_at_1=100.0)
    assert f"pu21_psnr: {expected['pu21_psnr']:.4g}" in text
    assert f"pq_psnr: {expected['pq_psnr']:.4g}" in text

    def strict(constant):
        raise ValueError(f"{constant} is not JSON")

    (output,) = outputs["4"]["text"]
    reported = json.loads(output, parse_constant=strict)
    assert reported.keys() == expected.keys()
    for name, value in expected.items():
        # One frame has no flicker or frame-to-frame PSNR: null, not NaN.
        assert reported[name] == (value if math.isfinite(value) else None), name
    assert reported["flicker_test"] is None and reported["delta_e_itp"] > 0


def test_the_viewer_gets_the_first_48_frames_of_a_long_batch(comfy_server, comfy_client):
    from PIL import Image

    from comfyui_hdr.nodes._preview import MAX_FRAMES

    clip = (0.18 * 2.0 ** (np.arange(50, dtype=np.float32) / 4))[:, None, None, None]
    clip = np.broadcast_to(clip, (50, 8, 12, 3)).astype(np.float32)
    np.save(comfy_server.input_dir / "viewer_50_frames.npy", clip)
    result = comfy_client.run({
        "1": {"class_type": "HDRLoadFloatArray", "inputs": {"array": "viewer_50_frames.npy"}},
        "2": {"class_type": "HDRPreview", "inputs": {"image": ["1", 0]}}})
    (view,) = result.outputs["2"]["hdr_view"]
    assert (view["frames"], view["shown_frames"]) == (50, MAX_FRAMES) == (50, 48)
    proxy, strip = (comfy_client.view(view[key]["filename"], view[key]["subfolder"], "temp")
                    for key in ("float", "sdr"))
    proxy, strip = np.load(io.BytesIO(proxy)), np.asarray(Image.open(io.BytesIO(strip)))
    assert proxy.shape == (48, 8, 12, 3) and strip.shape == (48 * 8, 12, 3)
    # Each frame is its own half-float proxy (0.18 at +0.25 stop steps), in order.
    np.testing.assert_array_equal(proxy, clip[:48].astype(np.float16))
