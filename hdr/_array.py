"""One implementation, two array types: torch tensors and numpy arrays.

Every colour function in ``hdr/`` is written once, in torch. :func:`array_function` lets
the same function take a numpy array (or a Python number) too: the array is viewed as a
tensor without copying, the torch code runs, and the result comes back as numpy with the
input's float dtype. numpy and torch therefore give bit-identical results, and torch
inputs stay differentiable.

Dtypes: float16/32/64 are kept; integers, bools and Python numbers are promoted to
float64 (numpy) or torch's default float dtype (torch), as colour-science does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])

_FLOAT_NUMPY = (np.float16, np.float32, np.float64)


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
