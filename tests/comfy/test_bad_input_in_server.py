"""Bad input through the real server: a clear error naming the input, and the server stays up."""

from __future__ import annotations

import numpy as np
import pytest

from comfyui_hdr.harness.client import ComfyError

pytestmark = pytest.mark.comfy


def _load_then_encode(array_name: str) -> dict:
    return {
        "1": {"class_type": "HDRLoadFloatArray", "inputs": {"array": array_name}},
        "2": {"class_type": "HDRLogEncode", "inputs": {"image": ["1", 0], "curve": "logc4"}},
        "3": {"class_type": "HDRSaveFloatArray",
              "inputs": {"image": ["2", 0], "filename_prefix": "bad/out"}},
    }


def _write_input(comfy_server, name: str, array: np.ndarray) -> str:
    np.save(comfy_server.input_dir / name, array)
    return name


@pytest.mark.parametrize(("name", "array", "message"), [
    ("nan.npy", np.full((1, 8, 8, 3), np.nan, np.float32), "contains NaN at 192"),
    ("two_channels.npy", np.ones((1, 8, 8, 2), np.float32), "has 2 channels"),
    ("empty.npy", np.ones((0, 8, 8, 3), np.float32), "empty batch"),
])
def test_bad_image_gives_an_error_naming_the_input_and_the_server_stays_up(
        comfy_server, comfy_client, name, array, message):
    _write_input(comfy_server, name, array)
    with pytest.raises(ComfyError) as error:
        comfy_client.run(_load_then_encode(name))
    assert "image" in str(error.value) and message in str(error.value)
    assert not (comfy_server.output_dir / "bad").exists()
    assert comfy_client.get_json("/system_stats")["system"]


def test_unknown_curve_is_refused_before_running(comfy_client, comfy_server):
    name = _write_input(comfy_server, "ok.npy", np.ones((1, 8, 8, 3), np.float32))
    prompt = _load_then_encode(name)
    prompt["2"]["inputs"]["curve"] = "logc9"
    with pytest.raises(ComfyError) as error:
        comfy_client.queue(prompt)
    assert "curve" in str(error.value) and "logc4" in str(error.value)


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/escape", "C:/escape", "a/../../escape"])
def test_filename_prefix_outside_the_output_folder_is_refused(comfy_server, comfy_client, prefix):
    name = _write_input(comfy_server, "ok.npy", np.full((1, 8, 8, 3), 2.0, np.float32))
    prompt = _load_then_encode(name)
    prompt["3"]["inputs"]["filename_prefix"] = prefix
    with pytest.raises(ComfyError) as error:
        comfy_client.run(prompt)
    assert "filename_prefix" in str(error.value)
    assert not list(comfy_server.base.parent.glob("escape*"))
    assert not list(comfy_server.base.glob("escape*"))


def test_pickled_npy_is_refused_not_executed(comfy_server, comfy_client):
    np.save(comfy_server.input_dir / "pickled.npy", np.array([{"a": 1}], dtype=object),
            allow_pickle=True)
    with pytest.raises(ComfyError) as error:
        comfy_client.run(_load_then_encode("pickled.npy"))
    assert "not a plain numeric .npy" in str(error.value)
