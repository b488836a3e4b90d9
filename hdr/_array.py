"""One implementation, two array types: torch tensors and numpy arrays.

Every colour function in ``hdr/`` is written once, in torch. :func:`array_function` lets
the same function take a numpy array (or a Python number) too: the array is viewed as a
tensor without copying, the torch code runs, and the result comes back as numpy with the
input's float dtype. numpy and torch therefore give bit-identical results, and torch
inputs stay differentiable.

Dtypes: float16/32/64 are kept; integers, bools and Python numbers are promoted to
float64 (numpy) or torch's default float dtype (torch), as colour-science does.
:func:`half_in_float32` lets a function whose maths loses too much in bfloat16/float16
(matrix inverses, cancelling sums, intermediates past half's range) compute in float32
and still return its input's dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])

_FLOAT_NUMPY = (np.float16, np.float32, np.float64)
_HALF = (torch.float16, torch.bfloat16)


def to_tensor(value: Any) -> torch.Tensor:
    """A float tensor viewing ``value`` (numpy arrays are shared, not copied)."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    array = np.asarray(value)
    if array.dtype.type not in _FLOAT_NUMPY:
        array = array.astype(np.float64)
    if not array.flags.writeable or not array.flags.c_contiguous and not array.flags.f_contiguous:
        array = np.array(array)
    return torch.from_numpy(array)


def _restore(result: Any, like: Any) -> Any:
    if isinstance(like, torch.Tensor) or not isinstance(result, torch.Tensor):
        return result
    array = result.detach().cpu().numpy()
    if np.ndim(like) == 0 and not isinstance(like, np.ndarray):
        return float(array)
    return array


def array_function(func: F) -> F:
    """Let a torch function accept numpy arrays and Python numbers in its first argument.

    The result has the first argument's array type; tuples of results are converted
    element by element.
    """

    @functools.wraps(func)
    def wrapper(value, *args, **kwargs):
        if isinstance(value, torch.Tensor):
            return func(to_tensor(value), *args, **kwargs)
        result = func(to_tensor(value), *args, **kwargs)
        if isinstance(result, tuple):
            return tuple(_restore(item, value) for item in result)
        return _restore(result, value)

    return wrapper  # type: ignore[return-value]


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for bfloat16/float16, else ``dtype``: the precision half inputs compute in."""
    return torch.float32 if dtype in _HALF else dtype


def half_in_float32(func: F) -> F:
    """Run ``func`` with its bfloat16/float16 tensor arguments widened to float32 and cast
    its tensor results back to the first argument's dtype (other inputs pass unchanged).

    For maths that half precision cannot carry: bfloat16 keeps 8 significant bits and
    float16 overflows above 65504, so matrix inverses, sums that cancel and absolute-nits
    intermediates are done in float32 and rounded once at the end.
    """

    @functools.wraps(func)
    def wrapper(value, *args, **kwargs):
        if not isinstance(value, torch.Tensor) or value.dtype not in _HALF:
            return func(value, *args, **kwargs)
        dtype = value.dtype

        def widen(item):
            return item.float() if isinstance(item, torch.Tensor) and item.dtype in _HALF \
                else item

        result = func(widen(value), *map(widen, args),
                      **{key: widen(item) for key, item in kwargs.items()})

        def narrow(item):
            return item.to(dtype) if isinstance(item, torch.Tensor) and \
                item.is_floating_point() else item

        return tuple(map(narrow, result)) if isinstance(result, tuple) else narrow(result)

    return wrapper  # type: ignore[return-value]
