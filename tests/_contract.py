"""The device/dtype/no-mutation contract every public ``hdr/`` function and node keeps.

A *case* is one call with its arguments. :func:`check_case` runs it and asserts:

1. no argument is modified: every tensor, array, list and module state is compared bit
   for bit with a copy taken before the call (NaN included); only the arguments named in
   ``mutates`` (a function documented as working in place, such as widening a model) may
   change;
2. output tensors stay on the device of the inputs (``output="device"``; ``on`` for a
   function that takes a device instead of a tensor), or on the CPU where the function's
   docstring says so (``output="cpu"``);
3. floating output tensors keep the inputs' float dtype (``dtype="input"``), or are
   float32 where the docstring says so (``dtype="float32"``);
4. bfloat16 and float16 inputs (every floating tensor argument, or those in ``half_args``)
   either give finite results within :func:`half_tolerance` of the same call on those
   half values widened to float32 (``half="close"``; a value whose float32 result lies
   beyond the half type's range, such as 65536 in float16, must come back as +-inf),
   or raise a ``ValueError`` whose message names the input and the fix
   (``half="refuses"``, ``refuses`` = a pattern the message must match).

Tolerances (``half="close"``): the reference is the float32 call on the *rounded* half
inputs, so input rounding is not counted; what remains is the rounding of the result to
half (0.5 ulp) and any arithmetic done in half on the way. A result may differ by
``k * eps * (|reference| + max |reference|)``, eps being the dtype's machine epsilon
(2**-10 for float16, 2**-7 for bfloat16): the relative part covers the rounding of each
value, the part scaled by the largest value covers results that cancel to near zero (a
difference of two similar values keeps the absolute error of its terms). ``k = 4`` by
default: a function that computes in float32 and rounds once stays within 0.5 ulp;
4 leaves room for a few elementwise steps in half (a 3x3 matrix product in half: 3 products
and 2 sums). A case that needs more states its own ``k`` with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

HALF_DTYPES = (torch.bfloat16, torch.float16)
DEFAULT_K = 4.0

_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}


@dataclasses.dataclass
class Case:
    """One call: ``function(*args, **kwargs)`` and what the contract expects of it."""

    function: Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    half: str = "close"
    refuses: str = ""
    half_args: tuple[str, ...] | None = None
    output: str = "device"
    dtype: str = "input"
    k: float = DEFAULT_K
    compare: Callable[[Any], Any] | None = None
    mutates: tuple[str, ...] = ()
    on: torch.device | None = None

    def named(self) -> dict[str, Any]:
        names = {f"arg{index}": value for index, value in enumerate(self.args)}
        return {**names, **self.kwargs}

    def with_values(self, values: dict[str, Any]) -> Case:
        args = tuple(values[f"arg{index}"] for index in range(len(self.args)))
        kwargs = {name: values[name] for name in self.kwargs}
        return dataclasses.replace(self, args=args, kwargs=kwargs)

    def run(self) -> Any:
        return self.function(*self.args, **self.kwargs)


def call(function: Callable, *args, **kwargs) -> Case:
    """A :class:`Case` with default expectations; options are set with :func:`expect`."""
    return Case(function, args, kwargs)


def expect(case: Case, **options) -> Case:
    return dataclasses.replace(case, **options)


# --- walking values -----------------------------------------------------------------------

def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """``(path, leaf)`` for every tensor and numpy array inside ``value``."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return [(path, value)]
    if isinstance(value, torch.nn.Module):
        return leaves(dict(value.state_dict(keep_vars=False)), f"{path}.state_dict")
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in leaves(inner, f"{path}.{key}")]
    if isinstance(value, (list, tuple)):
        return [item for index, inner in enumerate(value)
                for item in leaves(inner, f"{path}[{index}]")]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [item for field in dataclasses.fields(value)
                for item in leaves(getattr(value, field.name), f"{path}.{field.name}")]
    return []


def snapshot(value: Any) -> Any:
    """A deep copy that shares no memory with ``value`` (tensors cloned on their device)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.nn.Module):
        return {key: tensor.detach().clone() for key, tensor in value.state_dict().items()}
    if isinstance(value, dict):
        return {key: snapshot(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [snapshot(inner) for inner in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(snapshot(inner) for inner in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: snapshot(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    return value  # immutable, or opaque (an OCIO processor): nothing to compare


def same_bits(before: Any, after: Any) -> bool:
    """True when two tensors or arrays hold the same bits (NaN payloads included)."""
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and before.dtype == after.dtype
                and before.shape == after.shape
                and before.tobytes() == np.ascontiguousarray(after).tobytes())
    if (before.dtype != after.dtype or before.shape != after.shape
            or before.device != after.device):
        return False
    if before.dtype in _BITS:
        return torch.equal(before.view(_BITS[before.dtype]), after.view(_BITS[after.dtype]))
    return torch.equal(before, after)


def assert_unmodified(before: dict[str, Any], after: dict[str, Any], where: str,
                      mutates: tuple[str, ...] = ()) -> None:
    for name, value in after.items():
        old = before[name]
        if name in mutates:
            continue
        if isinstance(value, (torch.Tensor, np.ndarray)):
            assert same_bits(old, value), f"{where} modified its input {name}"
        elif isinstance(value, (list, dict, tuple, torch.nn.Module)) or (
                dataclasses.is_dataclass(value) and not isinstance(value, type)):
            old_leaves, new_leaves = leaves(old), leaves(value)
            assert len(old_leaves) == len(new_leaves), f"{where} modified its input {name}"
            for (path, first), (_, second) in zip(old_leaves, new_leaves, strict=True):
                assert same_bits(first, second), f"{where} modified its input {name}{path}"
            if isinstance(value, list):
                assert len(value) == len(old), f"{where} changed the length of {name}"


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating tensor cast to ``dtype`` (containers rebuilt)."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: cast_floats(inner, dtype) for key, inner in value.items()}
    if isinstance(value, list):
        return [cast_floats(inner, dtype) for inner in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(cast_floats(inner, dtype) for inner in value)
    return value


def input_device(case: Case) -> torch.device | None:
    devices = {leaf.device for _, leaf in leaves(case.named()) if isinstance(leaf, torch.Tensor)}
    return next(iter(devices)) if len(devices) == 1 else None


# --- the contract -----------------------------------------------------------------------

def _check_outputs(case: Case, result: Any, device: torch.device | None,
                   dtype: torch.dtype, where: str) -> None:
    for path, leaf in leaves(result):
        if not isinstance(leaf, torch.Tensor):
            continue
        if device is not None:
            wanted = torch.device("cpu") if case.output == "cpu" else device
            assert leaf.device.type == wanted.type, (
                f"{where}: output{path} is on {leaf.device}, expected {wanted}")
        if leaf.is_floating_point() and case.dtype != "any":
            wanted_dtype = dtype if case.dtype == "input" else torch.float32
            assert leaf.dtype == wanted_dtype, (
                f"{where}: output{path} is {leaf.dtype}, expected {wanted_dtype}")


def _as_float64(leaf: Any) -> torch.Tensor:
    if isinstance(leaf, np.ndarray):
        return torch.from_numpy(np.asarray(leaf, dtype=np.float64))
    return leaf.detach().to("cpu", torch.float64)


def half_tolerance(reference: torch.Tensor, dtype: torch.dtype, k: float) -> torch.Tensor:
    """The allowed difference per value; see the module docstring."""
    eps = torch.finfo(dtype).eps
    finite = reference[reference.isfinite()]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return k * eps * (reference.abs() + scale)


def _compare_half(case: Case, half_result: Any, reference: Any, dtype: torch.dtype,
                  where: str) -> None:
    if case.compare is not None:
        half_result, reference = case.compare(half_result), case.compare(reference)
    if isinstance(reference, float):
        half_result, reference = torch.tensor([half_result]), torch.tensor([reference])
    pairs = list(zip(leaves(half_result), leaves(reference), strict=True))
    assert pairs or isinstance(reference, (str, bytes, int, type(None))), (
        f"{where}: nothing to compare")
    for (path, got), (_, want) in pairs:
        if want.dtype in (torch.bool, np.bool_):
            assert same_bits(want, got), f"{where}: output{path} differs from float32"
            continue
        got64, want64 = _as_float64(got), _as_float64(want)
        assert got64.shape == want64.shape, f"{where}: output{path} changed shape"
        # A value past the half type's range can only be infinite there: it must overflow
        # with the right sign; every other finite value must stay finite.
        beyond = want64.abs() > torch.finfo(dtype).max
        if isinstance(got, torch.Tensor) and got.dtype == dtype and bool(beyond.any()):
            assert bool((got64[beyond] == want64[beyond].sign() * torch.inf).all()), (
                f"{where}: output{path} beyond {dtype}'s range is not +-inf")
        finite = want64.isfinite() & ~beyond
        assert bool(got64[finite].isfinite().all()), (
            f"{where}: output{path} has {int((~got64[finite].isfinite()).sum())} non-finite "
            "values where float32 is finite")
        error = (got64 - want64).abs()[finite]
        allowed = half_tolerance(want64, dtype, case.k)[finite]
        worst = float((error - allowed).max()) if error.numel() else 0.0
        assert worst <= 0, (
            f"{where}: output{path} differs from float32 by up to {float(error.max()):.3g} "
            f"(allowed {case.k} eps of {dtype})")


def check_case(case: Case, where: str) -> None:
    """Run ``case`` in float32, then with bfloat16 and float16 inputs (see the module)."""
    device = case.on or input_device(case)
    values = case.named()
    before = snapshot(values)
    result = case.run()
    assert_unmodified(before, values, where, case.mutates)
    _check_outputs(case, result, device, torch.float32, where)
    if case.half == "none":
        return
    for dtype in HALF_DTYPES:
        label = f"{where} [{str(dtype).removeprefix('torch.')}]"
        half_values = {name: cast_floats(value, dtype)
                       if case.half_args is None or name in case.half_args else value
                       for name, value in values.items()}
        half_case = case.with_values(half_values)
        half_before = snapshot(half_values)
        if case.half == "refuses":
            with pytest.raises(ValueError, match=case.refuses):
                half_case.run()
            continue
        half_result = half_case.run()
        assert_unmodified(half_before, half_values, label, case.mutates)
        _check_outputs(case, half_result, device, dtype, label)
        widened = case.with_values({name: cast_floats(value, torch.float32)
                                    if case.half_args is None or name in case.half_args
                                    else value for name, value in half_values.items()})
        _compare_half(case, half_result, widened.run(), dtype, label)


# --- inputs -------------------------------------------------------------------------------

def scene(device, shape=(2, 16, 16, 3), low: float = -6.0, high: float = 6.0,
          seed: int = 0) -> torch.Tensor:
    """Positive scene-linear RGB, log-uniform from ``2**low`` to ``2**high``, on ``device``
    (drawn on the CPU, so every device gets the same values)."""
    generator = torch.Generator().manual_seed(seed)
    stops = low + (high - low) * torch.rand(shape, generator=generator)
    return torch.exp2(stops).to(device)


def codes(device, shape=(2, 16, 16, 3), seed: int = 1) -> torch.Tensor:
    """Code values in [0, 1], with exact 0.0 and 1.0 in the first pixels, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(shape, generator=generator)
    values.view(-1, shape[-1])[0] = 0.0
    values.view(-1, shape[-1])[1] = 1.0
    return values.to(device)
