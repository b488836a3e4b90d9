"""ComfyUI runs every node under ``torch.inference_mode()``: the library must work there.

Worker threads do not inherit inference mode, so a threaded kernel that writes into a
tensor made by the caller fails only inside ComfyUI; these tests catch that in-process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr import charts, exposure, gamut, preview, transfer


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    # Large enough (1024 x 576 x 3 values) for the threaded, blockwise path.
    return charts.test_chart(width=1024, height=576)[None]


@pytest.mark.parametrize("curve", list(transfer.CURVES))
def test_every_curve_runs_under_inference_mode_and_matches_the_grad_mode_result(frame, curve):
    chosen = transfer.get_curve(curve)
    expected = chosen.encode(frame)
    with torch.inference_mode():
        encoded = chosen.encode(frame)
        decoded = chosen.decode(encoded)
    assert torch.equal(encoded, expected)
    assert decoded.shape == frame.shape


def test_stats_gamut_and_preview_run_under_inference_mode(frame):
    with torch.inference_mode():
        stats = exposure.hdr_stats(frame)
        converted = gamut.convert_gamut(frame, "rec709", "rec2020")
        proxy = preview.float_proxy(frame[0])
        picture = preview.srgb_picture(frame[0])
    assert stats.peak_luminance == pytest.approx(0.18 * 2**10)
    assert converted.shape == frame.shape
    assert proxy.dtype == np.float16 and picture.dtype == np.uint8
