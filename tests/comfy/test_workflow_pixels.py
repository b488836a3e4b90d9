"""Every shipped workflow gives the same pixels on every supported bench.

Each API workflow runs in the bench's real server (the tiny models and example inputs of
``harness.example_inputs``) and every HDR deliverable it writes (EXR, .npy, and the HDR
rendition of an Ultra HDR JPEG) is reduced to a
digest: shape, finite share, peak and an 8x8 box-mean thumbnail per frame. The golden digests
were written on ComfyUI 0.33.0 + frontend 1.58.1 (``COMFYUI_HDR_UPDATE_GOLDEN=1`` rewrites
them there); scripts/test.sh runs this on 0.33.0 + 1.49.6 and 0.3.75 + 1.32.9 as well.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from comfyui_hdr.harness.benches import NEWEST
from comfyui_hdr.harness.workflow import load_workflow, shipped_workflows
from comfyui_hdr.hdr import exr, ultrahdr

pytestmark = [pytest.mark.comfy, pytest.mark.smoke]

GOLDEN = Path(__file__).parent / "golden" / "workflow_pixels.json"
THUMB = 8
# float32 pixels through the same graphs: across ComfyUI releases only kernel order may move
# the sampled workflows' values, by float rounding amplified by the log decodes (measured in
# the note); 1e-4 of each output's own peak is far below any visible or HDR-relevant change.
RELATIVE_TOLERANCE = 1e-4


def _digest(pixels: np.ndarray) -> dict:
    frames = pixels.reshape(-1, *pixels.shape[-3:]).astype(np.float64)
    _, height, width, channels = frames.shape
    rows, cols = np.array_split(np.arange(height), THUMB), np.array_split(np.arange(width), THUMB)
    finite = np.where(np.isfinite(frames), frames, 0.0)
    thumbs = [[[finite[f][r][:, c].mean(axis=(0, 1)).tolist() for c in cols if len(c)]
               for r in rows if len(r)] for f in range(frames.shape[0])]
    return {"shape": list(pixels.shape), "finite_share": float(np.isfinite(frames).mean()),
            "peak": float(np.abs(finite).max()), "thumbs": thumbs}


def _hdr_outputs(comfy_server, result) -> dict[str, np.ndarray]:
    """Each output node's HDR files, keyed ``node/n`` in the order the node reports them (a
    file listed under several UI keys counts once)."""
    outputs = {}
    for node, ui in sorted(result.outputs.items()):
        paths = []
        for entries in ui.values():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and entry.get("type") == "output":
                    path = comfy_server.output_dir / entry.get("subfolder", "") / entry["filename"]
                    if path.suffix in (".exr", ".npy", ".jpg") and path not in paths:
                        paths.append(path)
        for position, path in enumerate(paths):
            if path.suffix == ".exr":
                pixels = exr.read_exr(path).pixels
            elif path.suffix == ".npy":
                pixels = np.load(path, allow_pickle=False)
            else:  # Ultra HDR: the full HDR rendition it carries
                pixels = ultrahdr.read_ultrahdr(path).hdr
            outputs[f"{node}/{position}"] = pixels
    return outputs


def _run(comfy_server, comfy_client, name: str) -> dict:
    prompt = load_workflow(name)
    for node in prompt.values():  # a fresh prefix: never served from another test's cache
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = f"pixels/{name}"
    result = comfy_client.run(prompt)
    return {key: _digest(value) for key, value in _hdr_outputs(comfy_server, result).items()}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize("name", list(shipped_workflows()))
def test_the_workflow_gives_the_golden_pixels_on_this_bench(comfy_server, comfy_client,
                                                           workflow_inputs, golden, name):
    digests = _run(comfy_server, comfy_client, name)
    assert digests, f"{name} wrote no EXR, .npy or Ultra HDR JPEG"
    if os.environ.get("COMFYUI_HDR_UPDATE_GOLDEN") == "1" and comfy_server.bench == NEWEST:
        golden[name] = digests
        GOLDEN.write_text(json.dumps(golden, indent=0, sort_keys=True) + "\n")
    expected = golden[name]
    assert sorted(digests) == sorted(expected)
    for key, digest in digests.items():
        want = expected[key]
        assert digest["shape"] == want["shape"], key
        assert digest["finite_share"] == want["finite_share"], key
        scale = max(want["peak"], 1e-6)
        np.testing.assert_allclose(digest["peak"], want["peak"], rtol=RELATIVE_TOLERANCE,
                                   err_msg=key)
        np.testing.assert_allclose(np.array(digest["thumbs"]), np.array(want["thumbs"]),
                                   rtol=0, atol=RELATIVE_TOLERANCE * scale, err_msg=key)
