"""Strict float32: TensorFloat-32 and other reduced-precision float32 maths off, for a block.

On NVIDIA GPUs since Ampere, cuDNN runs float32 convolutions in TF32 by default (10-bit
mantissa inputs) and cuBLAS does the same for matmuls when
``torch.set_float32_matmul_precision("high")`` is set; oneDNN on CPU can be set to do
the same. The HDR VAE is float32 because 8-bit-like mantissas band smooth HDR gradients:
measured on an H200 with a production-width HDR VAE at 1024 x 1024, TF32 convolutions
moved the scene-linear decode by up to 0.48 stops. :func:`strict_fp32` switches every
such setting to IEEE float32 for the VAE's own work and restores the caller's settings
afterwards, on an exception too, so a sampler that wants TF32 keeps it.

The settings are torch's per-backend ``fp32_precision`` flags (torch 2.9+): reading and
writing them through the same API keeps them consistent with the legacy ``allow_tf32``
flags that ComfyUI's own code reads.

References
----------
PyTorch documentation, "CUDA semantics: TensorFloat-32 (TF32) on Ampere (and later)
devices" (``torch.backends.*.fp32_precision``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["FP32_PRECISION_FLAGS", "strict_fp32"]

FP32_PRECISION_FLAGS = (
    ("cuda", "matmul"),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)
"""(backend, operation) pairs whose ``fp32_precision`` :func:`strict_fp32` sets to IEEE."""


def _flag(backend: str, operation: str):
    return getattr(getattr(torch.backends, backend), operation)


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """Run the block with IEEE float32 convolutions and matmuls on every backend.

    >>> import torch
    >>> with strict_fp32():
    ...     torch.backends.cudnn.conv.fp32_precision
    'ieee'
    """
    saved = [(backend, operation, _flag(backend, operation).fp32_precision)
             for backend, operation in FP32_PRECISION_FLAGS]
    try:
        for backend, operation, _ in saved:
            _flag(backend, operation).fp32_precision = "ieee"
        yield
    finally:
        for backend, operation, value in saved:
            _flag(backend, operation).fp32_precision = value
