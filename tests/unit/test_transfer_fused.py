"""Fused (torch.compile) transfer-curve kernels against the eager formulas they replace.

The eager path is today's implementation, operation for operation; the fused kernel must
give the same float32 results within float32 rounding over a dense grid of every float32
magnitude (negatives, denormals, huge values, the toes and the branch points, NaN and
Inf), fall back to eager whenever it cannot compile, and keep every contract of the
curves: numpy in and out, dtypes, inference mode, threads, no recompiles per frame size.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from comfyui_hdr.hdr import transfer as tf
from comfyui_hdr.hdr import transfer_fused

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

_P3 = tf.logc3_parameters(800)
BRANCH_POINTS = (
    _P3.cut, _P3.e * _P3.cut + _P3.f, tf.LOGC4.t, 0.0, tf.ACESCCT.x_break, tf.ACESCCT.y_break,
    0.0031308, 0.04045, 1 / 12, 0.5, tf.PU21.min_nits, tf.PU21.max_nits, 1.0,
)


def _dense_grid() -> np.ndarray:
    """Every 2**18-th float32 bit pattern (both signs, denormals, huge values, +-Inf,
    NaN), linear and log sweeps, the 64 float32 neighbours either side of every branch
    point, and log-uniform random values from 1e-8 to 1e8 of both signs; a multiple of
    192 values, so that no SIMD remainder loop (whose scalar maths differs in the last
    bit) touches the eager reference."""
    rng = np.random.default_rng(15)
    bits = np.arange(0, 2**32, 2**18, dtype=np.uint64).astype(np.uint32).view(np.float32)
    sweep = np.geomspace(1e-6, 1e6, 2000)
    near = [
        (np.float32(sign * point).view(np.int32) + np.arange(-64, 65)).astype(np.int32)
        .view(np.float32)
        for point in BRANCH_POINTS for sign in (1, -1)
    ]
    random = 10 ** rng.uniform(-8, 8, 2**17) * rng.choice([-1.0, 1.0], 2**17)
    sweeps = [np.linspace(-2, 2, 4001), sweep, -sweep, random, rng.uniform(-0.3, 1.5, 2**17)]
    values = np.concatenate([bits, *near, *(part.astype(np.float32) for part in sweeps)])
    return values[: values.size // 192 * 192]


GRID = _dense_grid()

PU21_TERMS_ULP_SCALE = 596.3148142 * 2.0**-29
"""A float32 value whose ulp is the float64 ulp of PU21's 596-unit terms (p6)."""

# name -> (function, keyword arguments, allowed ulps, absolute floor of the ulp scale).
# 2 ulp of the result by default. Where a curve reaches 0 by cancelling two terms (the
# log toes near code 0, PU21 near 0.005 nits), float32 rounding is that of the terms:
# the ulp is taken of |f(0)|, the curve's black level, or for PU21 of its float64 terms.
# LogC3 decode: the kernel's 10**t is correctly rounded, eager's within 1 ulp, and
# (10**t - b) / a can carry 1 ulp of 10**t into a finer binade: 3 ulp. HLG: eager takes
# exp and log from MKL, the kernel from SLEEF (each within 1 ulp); the inverse OETF's
# /12 and the OOTF's E**1.2 carry that into 3 and 8 ulp (scaled, for RGB, by how much
# the luminance sum cancels: see _luminance_condition).
CASES = {
    "logc3_encode": (tf.logc3_encode, {}, 2, "black"),
    "logc3_encode_ei1600": (tf.logc3_encode, {"exposure_index": 1600}, 2, "black"),
    "logc3_decode": (tf.logc3_decode, {}, 3, "black"),
    "logc3_decode_ei200": (tf.logc3_decode, {"exposure_index": 200}, 3, "black"),
    "logc4_encode": (tf.logc4_encode, {}, 2, "black"),
    "logc4_decode": (tf.logc4_decode, {}, 2, "black"),
    "acescct_encode": (tf.acescct_encode, {}, 2, "black"),
    "acescct_decode": (tf.acescct_decode, {}, 2, "black"),
    "pq_encode": (tf.pq_encode, {}, 2, None),
    "pq_encode_100_nits": (tf.pq_encode, {"nits_at_1": 100.0}, 2, None),
    "pq_decode": (tf.pq_decode, {}, 2, None),
    "pq_decode_100_nits": (tf.pq_decode, {"nits_at_1": 100.0}, 2, None),
    "pq_eotf": (tf.pq_eotf, {}, 2, None),
    "pq_inverse_eotf": (tf.pq_inverse_eotf, {}, 2, None),
    "hlg_oetf": (tf.hlg_oetf, {}, 2, None),
    "hlg_inverse_oetf": (tf.hlg_inverse_oetf, {}, 3, None),
    "hlg_encode": (tf.hlg_encode, {}, 3, None),
    "hlg_encode_2000_nits": (tf.hlg_encode, {"peak_nits": 2000.0}, 3, None),
    "hlg_decode": (tf.hlg_decode, {}, 8, None),
    "hlg_decode_2000_nits": (tf.hlg_decode, {"peak_nits": 2000.0}, 8, None),
    "hlg_ootf": (tf.hlg_ootf, {}, 3, None),
    "hlg_inverse_ootf": (tf.hlg_inverse_ootf, {}, 3, None),
    "hlg_eotf": (tf.hlg_eotf, {}, 8, None),
    "hlg_eotf_black_lift": (tf.hlg_eotf, {"black_nits": 0.005}, 8, None),
    "hlg_inverse_eotf": (tf.hlg_inverse_eotf, {}, 3, None),
    "srgb_encode": (tf.srgb_encode, {}, 2, None),
    "srgb_decode": (tf.srgb_decode, {}, 2, None),
    "loggamma_encode": (tf.loggamma_encode, {}, 2, None),
    "loggamma_encode_gamma_2_4": (tf.loggamma_encode, {"gamma": 2.4}, 2, None),
    "loggamma_decode": (tf.loggamma_decode, {}, 2, None),
    "loggamma_decode_gamma_2_4": (tf.loggamma_decode, {"gamma": 2.4}, 2, None),
    "mulaw_encode": (tf.mulaw_encode, {}, 2, None),
    "mulaw_encode_mu_100": (tf.mulaw_encode, {"mu": 100.0}, 2, None),
    "mulaw_decode": (tf.mulaw_decode, {}, 2, None),
    "pu21_encode": (tf.pu21_encode, {}, 2, PU21_TERMS_ULP_SCALE),
    "pu21_decode": (tf.pu21_decode, {}, 2, None),
}
GRID_CASES = [(name, False) for name in CASES] + [
    (name, True) for name in CASES if name.startswith(("hlg_encode", "hlg_decode", "hlg_ootf",
                                                       "hlg_inverse_ootf", "hlg_eotf",
                                                       "hlg_inverse_eotf"))
]
"""Every case on single values; the HLG functions that read RGB together also on pixels."""


@pytest.fixture
def always_fused(monkeypatch):
    """Fused kernels for every frame size; failures seen by this test stay in it."""
    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "always")
    monkeypatch.setattr(transfer_fused, "MIN_VALUES", 1)
    monkeypatch.setattr(transfer_fused, "_failed", {})


@pytest.fixture
def fresh_kernels(monkeypatch):
    """Compile state of this test only: no kernel, no counted values, no failure."""
    for name in ("_kernels", "_processed", "_failed"):
        monkeypatch.setattr(transfer_fused, name, {})
    monkeypatch.setattr(transfer_fused, "MIN_VALUES", 64)
    return transfer_fused._kernels


def _eager(function, value, **kwargs):
    """Today's eager result as one whole-tensor pass on one thread (recording autograd
    takes that path): no block or thread boundary puts a value in a scalar remainder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return function(value.clone().requires_grad_(), **kwargs).detach()
    finally:
        torch.set_num_threads(threads)


def _luminance_condition(rgb: np.ndarray) -> np.ndarray:
    """sum |w_i c_i| / |sum w_i c_i| per pixel: how much a last-bit change of a channel
    can move the BT.2100 luminance relative to its size (1 when no channel cancels)."""
    weighted = rgb * np.asarray(tf.HLG.luminance_weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        condition = np.abs(weighted).sum(-1) / np.abs(weighted.sum(-1))
    return np.nan_to_num(condition, nan=1.0, posinf=1.0)[..., None]


def _ulps(fused: np.ndarray, eager: np.ndarray, floor: float) -> np.ndarray:
    scale = np.maximum(np.abs(eager), np.float32(floor))
    return np.abs(fused.astype(np.float64) - eager) / np.spacing(scale).astype(np.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "rgb"), GRID_CASES,
                         ids=[name + ("_rgb" if rgb else "") for name, rgb in GRID_CASES])
def test_fused_kernel_equals_eager_within_float32_rounding_on_a_dense_grid(
    always_fused, name, rgb, device
):
    function, kwargs, allowed, floor = CASES[name]
    value = torch.from_numpy(GRID.reshape((-1, 3) if rgb else (-1,))).to(device)
    eager = _eager(function, value, **kwargs).cpu().numpy()
    fused = function(value, **kwargs).cpu().numpy()
    assert transfer_fused.failure(device) is None
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(eager))
    infinite = np.isinf(eager)
    np.testing.assert_array_equal(fused[infinite], eager[infinite])
    finite = np.isfinite(eager)  # NaN and Inf compared above
    black = abs(float(function(torch.zeros(3), **kwargs)[0])) if floor == "black" else floor
    ulps = _ulps(np.where(finite, fused, 0), np.where(finite, eager, 0), black or 0.0)
    if rgb and allowed == 8:  # E**1.2 through a luminance sum that may cancel
        ulps = ulps / (1 + 0.2 * _luminance_condition(np.where(finite, eager, 0)))
    worst = np.argmax(ulps)
    assert ulps.max() <= allowed, (
        f"{ulps.max():.1f} ulp at {value.cpu().numpy().flat[worst]!r}: "
        f"fused {fused.flat[worst]!r}, eager {eager.flat[worst]!r}"
    )


def _frame(values: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-0.05, 20.0, values)
                            .astype(np.float32))


def _compiled_formulas(kernels) -> list[str]:
    return sorted(key[0].__name__ for key, kernel in kernels.items() if kernel.ready)


def test_auto_compiles_a_parameter_set_once_it_has_processed_payback_values(
    fresh_kernels, monkeypatch
):
    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "auto")
    monkeypatch.setattr(transfer_fused, "PAYBACK_VALUES", 4 * 4096)
    frame = _frame(4096)
    expected = _eager(tf.logc3_encode, frame)
    for _ in range(3):
        np.testing.assert_array_equal(tf.logc3_encode(frame), expected)  # eager: exact
    assert _compiled_formulas(fresh_kernels) == []
    tf.logc3_encode(frame)  # the fourth frame reaches 4 x 4096 values: compiled
    assert _compiled_formulas(fresh_kernels) == ["_logc3_encode"]
    tf.logc3_encode(frame, exposure_index=1600)  # another EI starts its own count
    assert len(fresh_kernels) == 1


def test_small_float64_recorded_and_never_mode_frames_stay_eager(fresh_kernels, monkeypatch):
    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "always")
    tf.logc4_encode(_frame(63))  # below MIN_VALUES
    tf.logc4_encode(_frame(4096).double())
    tracked = _frame(4096).requires_grad_()
    (slope,) = torch.autograd.grad(tf.logc4_encode(tracked).sum(), tracked)
    assert bool(torch.isfinite(slope).all())
    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "never")
    tf.logc4_encode(_frame(4096))
    assert fresh_kernels == {}


def test_an_unknown_compile_mode_is_a_value_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "sometimes")
    monkeypatch.setattr(transfer_fused, "MIN_VALUES", 1)
    with pytest.raises(ValueError, match="^COMFYUI_HDR_COMPILE must be one of auto, always"):
        tf.logc4_encode(_frame(64))


def test_a_failed_compile_is_logged_once_and_every_call_runs_eagerly(
    fresh_kernels, monkeypatch, caplog
):
    def no_compiler(formula, args, work):
        def kernel(rows):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\ndetails")
        return kernel

    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "always")
    monkeypatch.setattr(transfer_fused, "_compiled", no_compiler)
    frame = _frame(4096)
    with caplog.at_level(logging.WARNING, logger=transfer_fused.__name__):
        first, second = tf.pq_encode(frame), tf.srgb_decode(frame)
    np.testing.assert_array_equal(first, _eager(tf.pq_encode, frame))
    np.testing.assert_array_equal(second, _eager(tf.srgb_decode, frame))
    assert transfer_fused.failure("cpu") == (
        "RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    )
    assert [r.getMessage() for r in caplog.records] == [
        "transfer curves run eagerly on cpu: torch.compile failed (RuntimeError: "
        "InvalidCxxCompiler: No working C++ compiler found); set COMFYUI_HDR_COMPILE=never "
        "to skip the attempt"
    ]


def test_one_kernel_serves_every_frame_size_without_recompiling(fresh_kernels, monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setenv(transfer_fused.ENVIRONMENT, "always")
    tf.mulaw_decode(_frame(4096))
    compiled_frames = counters["frames"]["ok"]
    for values in (64, 4099, 3 * 2**15 + 1, 10**6):
        frame = _frame(values, seed=values)
        np.testing.assert_allclose(tf.mulaw_decode(frame), _eager(tf.mulaw_decode, frame),
                                   rtol=2**-22, atol=0)
    assert counters["frames"]["ok"] == compiled_frames
    assert len(fresh_kernels) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_frames_are_computed_in_float32_and_come_back_in_their_dtype(
    always_fused, dtype
):
    frame = _frame(4096).to(dtype)
    fused, eager = tf.hlg_encode(frame), _eager(tf.hlg_encode, frame)
    assert fused.dtype == dtype
    # float32 results 3 ulp apart round to the same half value but next to a tie.
    steps = (fused.float() - eager.float()).abs() / torch.finfo(dtype).eps
    assert float((steps / eager.float().abs().clamp_min(1e-3)).max()) <= 1.0


def test_numpy_in_numpy_out_equals_the_fused_tensor_result_bit_for_bit(always_fused):
    frame = _frame(4096)
    array = frame.numpy().copy()
    from_numpy = tf.pq_decode(array)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float32
    np.testing.assert_array_equal(from_numpy, tf.pq_decode(frame).numpy())
    np.testing.assert_array_equal(array, frame.numpy())  # input untouched


def test_threads_under_inference_mode_share_one_kernel_and_agree(always_fused):
    frame = _frame(3 * 2**15) / 16  # LogC4 code values, -0.003 to 1.25
    expected = _eager(tf.logc4_decode, frame)
    results: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with torch.inference_mode():
                for _ in range(5):
                    results.append(tf.logc4_decode(frame))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 20
    assert all(result.is_inference() for result in results)
    for result in results:  # eager (while another thread compiled) or fused: within 2 ulp
        np.testing.assert_array_less(_ulps(result.numpy(), expected.numpy(), 0.0), 2.5)


def test_curves_stay_eager_unless_compiling_is_asked_for(fresh_kernels, monkeypatch):
    monkeypatch.delenv(transfer_fused.ENVIRONMENT, raising=False)
    assert transfer_fused.mode() == "never"
    frame = _frame(4096)
    for _ in range(3):
        np.testing.assert_array_equal(tf.logc3_encode(frame), _eager(tf.logc3_encode, frame))
    assert _compiled_formulas(fresh_kernels) == []
