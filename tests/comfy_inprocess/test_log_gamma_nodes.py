"""Log Encode / Log Decode take log-gamma's gamma and M, defaulting to DiffHDR's 2.2 and 1000;
"Log Decode (LoRA's curve)" reads them from a LoRA's metadata."""

from __future__ import annotations

import json

import folder_paths
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from comfyui_hdr.nodes import NODE_CLASS_MAPPINGS as NODES


def _diffhdr_lin_to_log(linear, gamma, m):
    """DiffHDR's Lin_to_Log, float64: (ln(gamma x + 1) / ln(gamma M + 1)) ** (1 / gamma)."""
    return (np.log(gamma * linear + 1) / np.log(gamma * m + 1)) ** (1 / gamma)


def test_log_encode_widgets_default_to_m_1000_and_set_m_and_gamma():
    optional = NODES["HDRLogEncode"].INPUT_TYPES()["optional"]
    assert optional["ceiling"][1]["default"] == 1000.0
    assert optional["gamma"][1]["default"] == 2.2
    assert optional["ceiling"][1]["max"] >= 65536.0
    linear = torch.exp2(torch.linspace(-10.0, 16.0, 2 * 8 * 8 * 3)).reshape(2, 8, 8, 3)
    encode, decode = NODES["HDRLogEncode"](), NODES["HDRLogDecode"]()
    for settings, m, gamma in (({}, 1000.0, 2.2), ({"ceiling": 65536.0}, 65536.0, 2.2),
                               ({"ceiling": 65536.0, "gamma": 2.4}, 65536.0, 2.4)):
        (codes,) = encode.encode(linear, "loggamma", **settings)
        # float32 against the float64 transcription: 4 ulp of codes near 1.
        np.testing.assert_allclose(codes.numpy(), _diffhdr_lin_to_log(
            linear.double().numpy(), gamma, m), rtol=5e-7, atol=5e-7)
        (back,) = decode.decode(codes, "loggamma", **settings)
        # float32 round trip: 2.2 * ln(gamma M + 1) (<= 26) times 2**-24 relative.
        torch.testing.assert_close(back, linear, rtol=26 * 2.2 * 2.0**-23, atol=0.0)
    # Other curves ignore the log-gamma widgets.
    (plain,) = encode.encode(linear, "logc4")
    (with_m,) = encode.encode(linear, "logc4", ceiling=65536.0, gamma=2.4)
    torch.testing.assert_close(plain, with_m, rtol=0.0, atol=0.0)


@pytest.fixture
def loras(tmp_path):
    """A ComfyUI loras folder with train-lora-style files; ``folder_paths`` restored after."""
    folder = tmp_path / "loras"
    folder.mkdir()
    saved = folder_paths.folder_names_and_paths.get("loras")
    folder_paths.folder_names_and_paths["loras"] = ([str(folder)], {".safetensors"})
    yield folder
    folder_paths.folder_names_and_paths["loras"] = saved


def _lora(folder, name: str, metadata: dict) -> str:
    save_file({"lora": torch.zeros(1)}, str(folder / name), metadata=metadata)
    return name


def test_lora_curve_node_decodes_with_the_m_in_the_loras_metadata(loras):
    node = NODES["HDRLoraLogDecode"]()
    codes = torch.linspace(0.0, 1.0, 4 * 4 * 3).reshape(1, 4, 4, 3)
    mapping = {"format": "comfyui-hdr-lora", "hdr_transform": "loggamma",
               "curve": {"name": "loggamma", "parameters": {"gamma": 2.2, "ceiling": 1000.0}}}
    new = _lora(loras, "new.safetensors", {"hdr_transform": "loggamma",
                                          "hdr_lora": json.dumps(mapping)})
    image, described = node.decode(codes, new)
    assert described == "loggamma (gamma 2.2, ceiling 1000)"
    torch.testing.assert_close(image, NODES["HDRLogDecode"]().decode(
        codes, "loggamma", ceiling=1000.0)[0], rtol=0.0, atol=0.0)
    assert float(image.max()) == pytest.approx(1000.0, rel=1e-5)  # code 1.0 = M (float32)
    # A LoRA from before M was a setting: loggamma with no M decodes with DiffHDR's 65536.
    for metadata in ({"hdr_transform": "loggamma"},
                     {"hdr_transform": "loggamma", "hdr_lora": json.dumps(
                         {"curve": {"name": "loggamma", "parameters": {"gamma": 2.2}}})}):
        old = _lora(loras, "old.safetensors", metadata)
        image, described = node.decode(codes, old)
        assert described == "loggamma (gamma 2.2, ceiling 65536)"
        assert float(image.max()) == pytest.approx(65536.0, rel=1e-5)
    plain = _lora(loras, "plain.safetensors", {"format": "pt"})
    with pytest.raises(ValueError, match=r"lora_name plain.safetensors: .*names no curve.*"
                                         r"Use Log Decode"):
        node.decode(codes, plain)
