"""Log Encode / Log Decode take log-gamma's gamma and M, defaulting to DiffHDR's 2.2 and 1000."""

from __future__ import annotations

import numpy as np
import torch

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
